// Package apiserver is the node's HTTP API: the public routes the CLI, remote
// clients and the dashboard call, and the node-only routes other nodes call
// (cluster/peers). Every route has a role, checked from the caller's
// certificate (auth.go). Writes go to the manager, which applies them
// through raft; reads come from the replicated state. One file per resource.
package apiserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/peers"
	"github.com/devhq/dev/cluster/pki"
	"github.com/devhq/dev/cluster/state"
)

// Raft is the replicated store as the API reads it.
type Raft interface {
	// Apply applies a command on the leader (ErrNotLeader elsewhere): the
	// node-only apply route, which must not forward again.
	Apply(ctx context.Context, cmd state.Command) (uint64, error)
	IsLeader() bool
	Leader() string
	State() *state.Store
	// WaitReady returns once the store has caught up with the log it had
	// when the node started (and a leader is known).
	WaitReady(ctx context.Context) error
}

// Manager applies writes (forwarding them to the leader) and keeps the
// nodes' heartbeats (cluster/manager).
type Manager interface {
	Apply(ctx context.Context, cmd state.Command) (uint64, error)
	RegisterNode(ctx context.Context, n api.Node) (api.Node, error)
	// Nodes lists the nodes with their raft role, pods and reservations.
	Nodes() []api.Node
	LeaderAPI() (string, error)
}

// Local is this node's agent as the API uses it: container-level work that
// must happen on the node that runs the pod.
type Local interface {
	Logs(ctx context.Context, pod, container string, follow bool, tail int) (io.ReadCloser, error)
	RemoveVolumes(ctx context.Context, project string) error
	// CheckPort reports whether a published port can be served on this node:
	// nil when it is free or already served by dev.
	CheckPort(addr netip.AddrPort, proto string) error
	// SaveImage moves an image to another engine (no registry).
	SaveImage(ctx context.Context, ref string) (io.ReadCloser, error)
	// Leave moves this node's pods away, leaves the cluster and stops the
	// agent.
	Leave(ctx context.Context) error

	// Exec, RunOneOff and PodAction serve `dev exec`, `dev run` and `dev
	// stop|start|restart` for pods of this node (see interactive.go and
	// control.go).
	Exec(ctx context.Context, pod string, req api.ExecRequest, stdio api.IO) (int, error)
	RunOneOff(ctx context.Context, project, service string, req api.RunRequest, stdio api.IO) (int, error)
	PodAction(ctx context.Context, pod, action string, grace *time.Duration) (api.Pod, error)
	// KillPod, PausePod, TopPod and PodImages serve `dev kill`, `dev
	// pause|unpause`, `dev top` and `dev images` for pods of this node.
	KillPod(ctx context.Context, pod, signal string) (api.Pod, error)
	PausePod(ctx context.Context, pod string, pause bool) (api.Pod, error)
	TopPod(ctx context.Context, pod string) (api.PodTop, error)
	PodImages(ctx context.Context, pod string) (api.PodImages, error)

	// CopyFiles extracts a tar archive into directory dir of the running
	// container of a pod of this node; RemoveFiles removes paths from it
	// (see files.go).
	CopyFiles(ctx context.Context, pod, dir string, archive io.Reader) error
	RemoveFiles(ctx context.Context, pod string, paths []string) error
	// CopyFromPod archives path p of the running container of a pod of
	// this node, and says what p is; with stat, only says (no archive).
	CopyFromPod(ctx context.Context, pod, p string, stat bool) (io.ReadCloser, api.PathStat, error)
}

// Events is the node's event log (cluster/events.Recorder).
type Events interface {
	// List returns the events after index.
	List(after uint64) api.EventList
	// Wait blocks until there are events after index or ctx ends.
	Wait(ctx context.Context, after uint64) api.EventList
}

// Member is a gossip member, as the join answer lists them.
type Member struct {
	Status string // alive, leaving, left, failed
	Gossip string // its gossip address
}

// Options configure the API server.
type Options struct {
	Node        string
	ServiceCIDR string // virtual IPs of services
	Version     string
	// Peers reach other nodes' APIs (relays, volumes, joins); nil on a node
	// that cannot reach peers.
	Peers *peers.Peers
	// Members is the gossip view a join answer lists; nil: none.
	Members func() []Member
	// Events serves GET /v1/events; nil: the node records none.
	Events Events
	// Dashboard tells where this node serves the dashboard and how to log
	// in (GET /v1/dashboard); nil: no dashboard.
	Dashboard func() (api.DashboardInfo, error)
	// CertLifetime is how long the node certificates this node signs last
	// (join, renewal); 0: pki.DefaultNodeCertLifetime.
	CertLifetime time.Duration
	// DataKey opens the cluster's sealed secrets (the CA key, the join
	// secrets); nil on a worker, which then signs nothing and prints no
	// token.
	DataKey *pki.DataKey
	// CertState describes a tls: auto host's certificate (ServiceInfo.Certs);
	// nil: this node serves no ingress.
	CertState func(host string) string
	// Stats reads this node's pods' stats (GET /v1/stats); nil: none.
	Stats StatsReader
	// IngressLog is this node's ingress access log (GET /v1/ingress/log);
	// nil: none.
	IngressLog IngressLogReader
	// Metrics serves GET /metrics (Prometheus' text format); nil: 404.
	Metrics http.Handler
	// Observe, when set, is told of every request: the route's pattern
	// ("GET /v1/pods"; "" when none matched), the status and the time it
	// took.
	Observe func(route string, code int, took time.Duration)
	Log     *slog.Logger
}

func (srv *Server) certLifetime() time.Duration { return pki.NodeCertLifetime(srv.opts.CertLifetime) }

// Server is the HTTP API of one node.
type Server struct {
	r     Raft
	mgr   Manager
	local Local
	opts  Options
	log   *slog.Logger

	ready atomic.Bool // the store has caught up since the start (see awaitState)
}

// New returns the API server; it starts nothing (the node serves Handler on
// its listeners).
func New(r Raft, mgr Manager, local Local, opts Options) *Server {
	if opts.ServiceCIDR == "" {
		opts.ServiceCIDR = "10.214.0.0/16"
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Server{r: r, mgr: mgr, local: local, opts: opts, log: opts.Log.With("component", "apiserver")}
}

// maxWait bounds blocking queries.
const maxWait = 5 * time.Minute

// Handler returns the HTTP API (see cluster/api/requests.go for the routes)
// behind its authentication: on TLS connections, a client certificate of
// the cluster, whose role each route checks (auth.go).
func (srv *Server) Handler() http.Handler {
	return authenticate(srv.Routes(), srv.r.State().Revoked, srv.r.State().IsWorker)
}

// Routes is the HTTP API without authentication, for a front that
// authenticates its callers itself and says who they are (AsCaller: the
// dashboard). A request without a caller is refused.
//
// Two muxes: the public one (users' routes, each with its role) and the
// node-only one under /v1/internal/, which refuses every client role
// before a route is even matched.
func (srv *Server) Routes() http.Handler {
	public := http.NewServeMux()
	srv.registerStatus(public)      // status.go
	srv.registerProjects(public)    // projects.go
	srv.registerPods(public)        // pods.go
	srv.registerNodes(public)       // nodes.go
	srv.registerServices(public)    // services.go
	srv.registerEvents(public)      // events.go
	srv.registerCluster(public)     // cluster.go: token, join, dashboard link
	srv.registerIngress(public)     // ingress.go: the local HTTPS CA
	srv.registerCA(public)          // ca.go: the cluster CA and its rotation
	srv.registerInteractive(public) // interactive.go: exec, run, stop/start/restart
	srv.registerFiles(public)       // files.go: copy files into / remove files from pods
	srv.registerStats(public)       // stats.go: what the pods use
	srv.registerIngressLog(public)  // ingresslog.go: the ingress routers' access logs
	srv.registerControl(public)     // control.go: top, images

	internal := http.NewServeMux()
	srv.registerInternal(internal) // internal.go
	public.Handle("/v1/internal/", nodeOnly(internal))
	handle(public, "GET /metrics", roleRead, srv.handleMetrics)
	return srv.observed(srv.awaitState(public))
}

// handleMetrics serves the node's Prometheus metrics.
func (srv *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	if srv.opts.Metrics == nil {
		writeError(w, notFound("this node serves no metrics"))
		return
	}
	srv.opts.Metrics.ServeHTTP(w, r)
}

// observed tells Options.Observe of every request next serves.
func (srv *Server) observed(next http.Handler) http.Handler {
	if srv.opts.Observe == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r)
		srv.opts.Observe(r.Pattern, rec.code, time.Since(start)) // the mux that routed r set Pattern
	})
}

// statusRecorder keeps the status a handler answered; it passes flushes
// and hijacks (streams, exec sessions) through.
type statusRecorder struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wroteHeader && code >= 200 { // not an informational 1xx
		s.code, s.wroteHeader = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := s.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("hijack: not supported by this connection")
	}
	s.code, s.wroteHeader = http.StatusSwitchingProtocols, true
	return hj.Hijack()
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// passesStateWait reports the routes answered before the state caught up:
// node-to-node routes (a starting node's raft may need them; join waits in
// its handler, on the leader), the status, which says what is missing, and
// the metrics, which a scraper reads all along.
func passesStateWait(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, "/v1/internal/") || r.URL.Path == "/v1/join" ||
		(r.Method == http.MethodGet && (r.URL.Path == "/v1/status" || r.URL.Path == "/metrics"))
}

// stateWait bounds how long a request waits for a starting agent's state.
const stateWait = 30 * time.Second

// awaitState holds requests until the node's state has caught up with its
// raft log after a start: before that, the store is empty or partly
// replayed, and an answer from it would be wrong ("project not deployed"
// to a `dev down` right after an agent restart, which then did nothing).
// Node-to-node routes pass at once: a starting node's raft may need them.
func (srv *Server) awaitState(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !srv.ready.Load() && !passesStateWait(r) {
			ctx, cancel := context.WithTimeout(r.Context(), stateWait)
			err := srv.r.WaitReady(ctx)
			cancel()
			if err != nil {
				why := "the agent is still loading the cluster state"
				if srv.r.Leader() == "" {
					why = "the cluster has no leader (not enough managers reachable)"
				}
				writeError(w, &httpError{http.StatusServiceUnavailable, "unavailable",
					fmt.Errorf("%s (%v); try again in a moment, `dev nodes` or GET /v1/status tell more", why, err)})
				return
			}
			srv.ready.Store(true)
		}
		next.ServeHTTP(w, r)
	})
}
