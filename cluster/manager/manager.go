// Package manager is the control plane of a node: it serves the agent API,
// runs the leader-only loops (controllers, scheduler, node monitor) while this
// node leads, and allocates pod subnets.
package manager

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/controller"
	"github.com/devhq/dev/cluster/raftstore"
	"github.com/devhq/dev/cluster/state"
)

// Raft is the replicated store as the manager uses it.
type Raft interface {
	Apply(ctx context.Context, cmd state.Command) (uint64, error)
	IsLeader() bool
	LeaderCh() <-chan bool
	Leader() string
	LeaderAddr() (addr, id string)
	State() *state.Store
	Servers() ([]raftstore.Server, error)
	AddServer(id, addr string, voter bool) error
	RemoveServer(id string) error
	// WaitReady returns once the store has caught up with the log it had
	// when the node started (and a leader is known).
	WaitReady(ctx context.Context) error
}

// Local is what this node's agent offers the API: container-level work that
// must happen on the node that runs the pod.
type Local interface {
	Logs(ctx context.Context, pod string, follow bool, tail int) (io.ReadCloser, error)
	RemoveVolumes(ctx context.Context, project string) error
	// CheckPort reports whether a published port can be served on this node:
	// nil when it is free or already served by dev.
	CheckPort(addr netip.AddrPort, proto string) error
	// SaveImage and LoadImage move images between engines (no registry).
	SaveImage(ctx context.Context, ref string) (io.ReadCloser, error)
	LoadImage(ctx context.Context, r io.Reader) error
	// Leave moves this node's pods away, leaves the cluster and stops the
	// agent.
	Leave(ctx context.Context) error

	// Exec, RunOneOff and PodAction serve `dev exec`, `dev run` and `dev
	// stop|start|restart` for pods of this node (see interactive.go).
	Exec(ctx context.Context, pod string, req api.ExecRequest, stdio api.IO) (int, error)
	RunOneOff(ctx context.Context, project, service string, req api.RunRequest, stdio api.IO) (int, error)
	PodAction(ctx context.Context, pod, action string, grace *time.Duration) (api.Pod, error)

	// CopyFiles extracts a tar archive into directory dir of the running
	// container of a pod of this node; RemoveFiles removes paths from it
	// (see files.go).
	CopyFiles(ctx context.Context, pod, dir string, archive io.Reader) error
	RemoveFiles(ctx context.Context, pod string, paths []string) error
}

// Options configure the manager.
type Options struct {
	Node        string
	ClusterCIDR string // pod network, split into one /24 per node
	ServiceCIDR string // virtual IPs of services
	Version     string
	Controller  controller.Options
	// PeerTLS is the client side of mutual TLS towards other nodes' APIs;
	// nil on a node that cannot reach peers (writes then only work on the
	// leader).
	PeerTLS *tls.Config
	// Membership is the gossip view the leader reconciles raft membership
	// and node status with; nil on a node without gossip.
	Membership Membership
	// FailedTimeout is how long a failed member stays a raft server.
	FailedTimeout time.Duration
	// Events serves GET /v1/events; nil: the node records none.
	Events Events
	// Dashboard tells where this node serves the dashboard and how to log
	// in (GET /v1/dashboard); nil: no dashboard.
	Dashboard func() (api.DashboardInfo, error)
}

// Events is the node's event log (cluster/events.Recorder).
type Events interface {
	// List returns the events after index.
	List(after uint64) api.EventList
	// Wait blocks until there are events after index or ctx ends.
	Wait(ctx context.Context, after uint64) api.EventList
}

// Manager serves the API and runs leader-only loops.
type Manager struct {
	r     Raft
	local Local
	opts  Options
	log   *slog.Logger

	allocMu sync.Mutex // serializes subnet allocation on the leader
	live    liveness   // agents' last reports, on the leader (liveness.go)
	peers   *peers
	ready   atomic.Bool // the store has caught up since the start (see awaitState)
}

// New returns a manager; it starts nothing.
func New(r Raft, local Local, opts Options, log *slog.Logger) *Manager {
	if opts.ClusterCIDR == "" {
		opts.ClusterCIDR = "10.213.0.0/16"
	}
	if opts.ServiceCIDR == "" {
		opts.ServiceCIDR = "10.214.0.0/16"
	}
	m := &Manager{r: r, local: local, opts: opts, log: log.With("component", "manager")}
	if opts.PeerTLS != nil {
		m.peers = newPeers(opts.PeerTLS)
	}
	return m
}

// Run starts the leader-only loops whenever this node leads and stops them
// when it loses leadership, until ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	var (
		cancel context.CancelFunc
		done   chan struct{}
	)
	stop := func() {
		if cancel != nil {
			cancel()
			<-done
			cancel = nil
		}
	}
	defer stop()
	start := func() {
		if cancel != nil {
			return
		}
		var lctx context.Context
		lctx, cancel = context.WithCancel(ctx)
		done = make(chan struct{})
		m.log.Info("leading: starting controllers")
		go func() {
			defer close(done)
			var wg sync.WaitGroup
			if m.opts.Membership != nil {
				wg.Go(func() { m.runMembership(lctx) })
			}
			m.live.reset(m.r.State().Nodes(), time.Now().UTC())
			copts := m.opts.Controller
			copts.LastSeen = m.live.get
			c := controller.New(m.r.State(), m.r, copts, m.log)
			_ = c.Run(lctx)
			wg.Wait()
		}()
	}
	if m.r.IsLeader() {
		start()
	}
	check := time.NewTicker(time.Second) // LeaderCh may drop signals; re-check
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-m.r.LeaderCh():
		case <-check.C:
		}
		if m.r.IsLeader() {
			start()
		} else if cancel != nil {
			m.log.Info("lost leadership: stopping controllers")
			stop()
		}
	}
}

// Apply proposes a command: on the leader directly, on a follower by
// forwarding it to the leader. While an election is under way (no leader
// yet) it waits for one, up to 10s.
//
// A write follows leadership: a forward to a leader that does not answer
// within forwardAttempt (its link cut: nothing answers, nothing refuses) is
// tried again against whoever leads then, until applyDeadline. So a write
// issued as the leader is lost is answered soon after the next election,
// not when the caller gives up. A forward that timed out may have been
// applied: commands are idempotent (they set records, not add to them), so
// applying one twice is harmless.
func (m *Manager) Apply(ctx context.Context, cmd state.Command) (uint64, error) {
	deadline := time.Now().Add(applyDeadline)
	for {
		idx, err := m.r.Apply(ctx, cmd)
		if errors.Is(err, raftstore.ErrNotLeader) && m.r.Leader() != "" {
			idx, err = m.forwardAttempt(ctx, cmd)
		}
		if !retryable(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return idx, err
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

const (
	// applyDeadline bounds a write's wait for a leader that takes it.
	applyDeadline = 30 * time.Second
	// forwardTimeout bounds one forward to the leader: raft applies in
	// milliseconds, so a leader silent this long is cut off or gone.
	forwardTimeout = 3 * time.Second
)

// forwardAttempt is one forward to the leader, bounded by forwardTimeout.
func (m *Manager) forwardAttempt(ctx context.Context, cmd state.Command) (uint64, error) {
	actx, cancel := context.WithTimeout(ctx, forwardTimeout)
	defer cancel()
	idx, err := m.forward(actx, cmd)
	if err != nil && actx.Err() != nil && ctx.Err() == nil {
		return idx, fmt.Errorf("%w: the leader did not answer within %s", errLeaderSilent, forwardTimeout)
	}
	return idx, err
}

// errLeaderSilent: a forward got no answer in time; the next attempt goes
// to whoever leads then.
var errLeaderSilent = errors.New("leader unreachable")

// retryable says whether a write may be tried again: no leader, or one
// that cannot be reached (a leader's answer, even an error, is final).
func retryable(err error) bool {
	return errors.Is(err, raftstore.ErrNotLeader) || errors.Is(err, errLeaderSilent) || errors.Is(err, api.ErrUnreachable)
}

// RegisterNode takes a node's report (its heartbeat): the leader notes it in
// memory and writes the node's record only when it changes (its first
// registration allocates its pod subnet).
func (m *Manager) RegisterNode(ctx context.Context, n api.Node) (api.Node, error) {
	if !m.r.IsLeader() && m.peers != nil {
		// One bounded attempt: the agent reports again at its next beat,
		// to whoever leads then.
		fctx, cancel := context.WithTimeout(ctx, forwardTimeout)
		defer cancel()
		return m.forwardRegister(fctx, n)
	}
	m.allocMu.Lock()
	defer m.allocMu.Unlock()
	st := m.r.State()
	if old, ok := st.Node(n.Name); ok {
		n.PodSubnet = old.PodSubnet
		if n.Labels == nil {
			n.Labels = old.Labels
		}
	}
	if n.PodSubnet == "" {
		sub, err := allocateSubnet(m.opts.ClusterCIDR, st.Nodes())
		if err != nil {
			return api.Node{}, err
		}
		n.PodSubnet = sub
	}
	n.Status = api.NodeReady
	old, known := st.Node(n.Name)
	if known && old.Status == api.NodeLeft {
		n.Status = api.NodeLeft // draining for `dev leave`: stays out of scheduling
	}
	n.DownSince = time.Time{}
	now := time.Now().UTC()
	m.live.mark(n.Name, now)
	if known && sameReport(old, n) {
		return old, nil // a heartbeat: answered from memory, nothing written
	}
	n.Heartbeat = now
	if _, err := m.Apply(ctx, &state.PutNode{Node: n}); err != nil {
		return api.Node{}, err
	}
	got, _ := st.Node(n.Name)
	return got, nil
}

// allocateSubnet returns the lowest /24 of cidr that no node holds. The first
// /24 (x.y.0.0) is skipped: it reads too much like the network itself.
func allocateSubnet(cidr string, nodes []api.Node) (string, error) {
	pfx, err := netip.ParsePrefix(cidr)
	if err != nil {
		return "", fmt.Errorf("parse cluster cidr %q: %w", cidr, err)
	}
	if !pfx.Addr().Is4() || pfx.Bits() > 23 {
		return "", fmt.Errorf("cluster cidr %s: want an IPv4 prefix of /23 or larger", cidr)
	}
	taken := map[string]bool{}
	for _, n := range nodes {
		taken[n.PodSubnet] = true
	}
	base := pfx.Masked().Addr().As4()
	count := 1 << (24 - pfx.Bits())
	for i := 1; i < count; i++ {
		a := base
		a[2] += byte(i & 0xff)
		a[1] += byte(i >> 8)
		sub := netip.PrefixFrom(netip.AddrFrom4(a), 24).String()
		if !taken[sub] {
			return sub, nil
		}
	}
	return "", errors.New("allocate pod subnet: cluster cidr exhausted")
}

// runMembership reconciles raft membership with gossip every second while
// this node leads.
func (m *Manager) runMembership(ctx context.Context) {
	timeout := m.opts.FailedTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	failedSince := map[string]time.Time{}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		m.reconcileMembers(ctx, m.opts.Membership.Members(), failedSince, timeout)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
