// Package node is the composition root of `dev agent`: it wires the raft
// store, the manager (leader loops, writes), the API server and the node agent with its
// Docker driver, and supervises them with one errgroup.
package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/netutil"
	"golang.org/x/sync/errgroup"

	"github.com/devhq/dev/cluster/agent"
	"github.com/devhq/dev/cluster/agent/docker"
	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/apiserver"
	"github.com/devhq/dev/cluster/controller"
	"github.com/devhq/dev/cluster/dashboard"
	"github.com/devhq/dev/cluster/events"
	"github.com/devhq/dev/cluster/manager"
	"github.com/devhq/dev/cluster/overlay"
	"github.com/devhq/dev/cluster/peers"
	"github.com/devhq/dev/cluster/pki"
	"github.com/devhq/dev/cluster/raftstore"
	"github.com/devhq/dev/cluster/state"
	"github.com/devhq/dev/dns"
	"github.com/devhq/dev/gossip"
	"github.com/devhq/dev/proxy"
)

// Config configures a node.
type Config struct {
	DataDir string
	Name    string // node name; default: host name
	// AdvertiseAddr is the IP other nodes reach this one at; every listener
	// (gossip, raft, API) binds it.
	AdvertiseAddr string
	GossipPort    int // default 7946
	RaftPort      int // default 7947
	APIPort       int // default 7948
	// Join is the address (ip[:port] of the API) of a cluster node to join
	// with Token, on first start.
	Join        string
	Token       string
	ClusterCIDR string
	ServiceCIDR string // virtual IPs of services
	// DNSAddr is the host-side listen address of the cluster DNS server
	// (pods use the one on their gateway, port 53).
	DNSAddr string
	// IngressAddr is where the HTTP ingress router listens (":80"); empty:
	// no router. IngressTLSAddr is where it serves HTTPS (":443"); empty:
	// no HTTPS.
	IngressAddr    string
	IngressTLSAddr string
	// ACMECA is the ACME directory of tls: auto routes' certificates
	// (with ACMEEmail and no ACMECA, Let's Encrypt's; neither: none);
	// ACMECARoot a PEM file of the CAs to trust for its HTTPS (a test CA
	// such as Pebble); ACMEEmail the account's contact. The leader writes
	// its CA and email into the state, which every node then follows.
	ACMECA, ACMECARoot, ACMEEmail string
	// MetricsAddr, when set, serves the Prometheus metrics (also on the API
	// at GET /metrics, role read) on a plain address for a scraper.
	MetricsAddr string
	// DashboardAddr is where the web dashboard listens (a loopback address
	// serves HTTP, any other HTTPS); empty: no dashboard.
	DashboardAddr string
	Network       string // Docker network name of the pod network
	Bridge        string // its bridge device
	// VXLANDevice is the overlay device name (default devvx0).
	VXLANDevice string
	Labels      map[string]string
	Version     string
	// Socket is the API's unix socket (default <DataDir>/dev.sock).
	Socket string
	// SocketDockerGroup gives the socket the group of the Docker Engine's
	// socket (mode 0660): whoever may use the Engine may use the agent, the
	// same right (an agent in a container serves the docker group's users).
	SocketDockerGroup bool
	// SecretsDir holds the pods' secret files, bind-mounted into them: a
	// path on the host (default <DataDir>/secrets).
	SecretsDir string
	// SecretsTmpfs mounts a tmpfs at SecretsDir when it is not on one, so
	// that the pods' secret and config files stay off the disk (an agent in
	// a container sets it false: its mount would not reach the host).
	SecretsTmpfs bool
	// HostRoot is the host's root file system as the agent sees it: "" on the
	// host, "/host" in the agent's container, which binds the host's root there.
	HostRoot string
	// NodeGrace is how long a node may be down before its pods are
	// recreated elsewhere (default 10s).
	NodeGrace time.Duration
	// CertLifetime is how long the node certificates this node signs last
	// (default pki.DefaultNodeCertLifetime); every node renews its own at
	// 2/3 of its life.
	CertLifetime time.Duration
	// Fast shortens timers (tests).
	Fast bool
}

// SocketPath is where the API listens for a data dir.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, "dev.sock") }

func (c Config) socket() string {
	if c.Socket != "" {
		return c.Socket
	}
	return SocketPath(c.DataDir)
}

// Node is one `dev agent`.
type Node struct {
	cfg  Config
	log  *slog.Logger
	left atomic.Bool // set by a completed `dev leave`
	// pkiMu serializes what changes this node's identity files and
	// trusted CAs: a renewal, and following the state's CAs (followCA).
	pkiMu sync.Mutex
}

// New returns a node; it starts nothing.
func New(cfg Config, log *slog.Logger) *Node {
	if cfg.Name == "" {
		cfg.Name, _ = os.Hostname()
	}
	if cfg.AdvertiseAddr == "" {
		cfg.AdvertiseAddr = defaultAdvertiseAddr()
	}
	if cfg.GossipPort == 0 {
		cfg.GossipPort = 7946
	}
	if cfg.RaftPort == 0 {
		cfg.RaftPort = 7947
	}
	if cfg.APIPort == 0 {
		cfg.APIPort = 7948
	}
	return &Node{cfg: cfg, log: log}
}

func (n *Node) addr(port int) string {
	return net.JoinHostPort(n.cfg.AdvertiseAddr, strconv.Itoa(port))
}

// Run starts every component and blocks until ctx ends or one fails.
func (n *Node) Run(ctx context.Context) error {
	cfg := n.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	dcli, err := docker.NewClient()
	if err != nil {
		return err
	}
	defer dcli.Close()
	ln, err := listenSocket(cfg.socket())
	if err != nil {
		return err
	}
	defer ln.Close()
	if cfg.SocketDockerGroup {
		if err := shareWithDockerGroup(cfg.socket(), dcli.DaemonHost()); err != nil {
			return err
		}
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = dcli.Ping(pingCtx)
	cancel()
	if err != nil {
		return fmt.Errorf("reach docker engine at %s (is dockerd running? set DOCKER_HOST): %w", dcli.DaemonHost(), err)
	}
	overlay.SetHostRoot(cfg.HostRoot)

	creds, err := n.credentials(ctx)
	if err != nil {
		return err
	}
	tcpLn, err := net.Listen("tcp", n.addr(cfg.APIPort))
	if err != nil {
		return fmt.Errorf("listen api on %s (another agent? pick another --api-port): %w", n.addr(cfg.APIPort), err)
	}
	// At most maxAPIConns connections at once, counted before the TLS
	// handshake: a flood of idle connections waits in the kernel's backlog
	// instead of holding the agent's memory. One address holds at most
	// maxAPIConnsPerIP, and a handshake gets 10 s.
	apiLn := pki.NewHandshakeListener(netutil.LimitListener(tcpLn, maxAPIConns), creds.id.JoinServerTLS(),
		pki.HandshakeLimits{MaxPending: maxAPIConns, MaxPerIP: maxAPIConnsPerIP}, n.log.With("component", "apiserver"))
	defer apiLn.Close()

	raftTCP, err := net.Listen("tcp", n.addr(cfg.RaftPort))
	if err != nil {
		return fmt.Errorf("listen raft on %s (is another agent running? pick another --raft-port): %w", n.addr(cfg.RaftPort), err)
	}
	// Raft sees a connection only once its handshake proved a node
	// certificate (pki.HandshakeLimits' defaults).
	raftLn := pki.NewHandshakeListener(raftTCP, creds.id.NodeServerTLS(), pki.HandshakeLimits{}, n.log.With("component", "raft"))
	// The metrics the components' hooks feed exist before the components
	// (raft takes its hook when it opens); met.watch adds the rest below.
	met := newMetrics()
	r, err := raftstore.Open(raftstore.Config{
		DataDir: cfg.DataDir, NodeID: cfg.Name, BindAddr: n.addr(cfg.RaftPort),
		Bootstrap: creds.pending != nil, Fast: cfg.Fast, Log: n.log,
		Listener: raftLn, ClientTLS: creds.id.ClientTLS(), ObserveApply: met.observeRaftApply,
	})
	if err != nil {
		raftLn.Close()
		return err
	}
	// From here on every handshake of this node's TLS configs (raft, API,
	// peers), made before or after, checks the replicated revocation list.
	creds.id.SetRevoked(r.State().Revoked)
	defer r.Close()

	g, err := gossip.New(gossip.Config{
		NodeName: cfg.Name, BindAddr: cfg.AdvertiseAddr, BindPort: cfg.GossipPort,
		Key: creds.gossipKey, Fast: cfg.Fast, Log: n.log,
		Tags: map[string]string{
			manager.TagRaft: n.addr(cfg.RaftPort), manager.TagAPI: n.addr(cfg.APIPort),
			manager.TagIP: cfg.AdvertiseAddr, manager.TagGossip: n.addr(cfg.GossipPort),
		},
	})
	if err != nil {
		return err
	}

	self, _ := os.Executable() // the infra containers run it where no pause program is built in
	drv := docker.New(dcli, docker.Options{
		Binary:  self,
		Network: cfg.Network, Bridge: cfg.Bridge, Node: cfg.Name,
		SecretsDir: cmp.Or(cfg.SecretsDir, filepath.Join(cfg.DataDir, "secrets")), DNSDomain: clusterDomain,
		SecretsTmpfs: cfg.SecretsTmpfs,
		SpoolDir:     filepath.Join(cfg.DataDir, "spool"),
		HostRoot:     cfg.HostRoot,
		MTU:          podMTU(cfg.AdvertiseAddr), Cluster: clusterLabel(creds),
	})
	svcCIDR, err := netip.ParsePrefix(cfg.ServiceCIDR)
	if err != nil {
		return fmt.Errorf("parse service cidr %q: %w", cfg.ServiceCIDR, err)
	}
	clusterCIDR, err := netip.ParsePrefix(cfg.ClusterCIDR)
	if err != nil {
		return fmt.Errorf("parse cluster cidr %q: %w", cfg.ClusterCIDR, err)
	}
	vxlanDev := cfg.VXLANDevice
	if vxlanDev == "" {
		vxlanDev = overlay.DefaultVXLANDevice
	}
	// One table per pod network, so that agents of several networks on one
	// host (tests, benchmarks) keep out of each other's way.
	bridge := cfg.Bridge
	if bridge == "" {
		bridge = docker.DefaultBridge // as the driver resolves it
	}
	table := proxy.DefaultTable
	if bridge != docker.DefaultBridge {
		table += "-" + bridge
	}
	kern := proxy.NewNFTables(proxy.Config{Table: table, ClusterCIDR: clusterCIDR, Bridge: bridge, ServiceCIDR: svcCIDR,
		LocalnetDevices: []string{bridge, vxlanDev}, Command: overlay.HostCommand, Log: n.log})
	disc := newDiscovery(r.State(), cfg.Name, n.log)

	ctrlOpts := controller.Options{NodeGrace: cfg.NodeGrace}
	agentOpts := agent.Options{Node: cfg.Name, Address: cfg.AdvertiseAddr, APIAddr: n.addr(cfg.APIPort),
		Labels: cfg.Labels, Cluster: clusterLabel(creds)}
	failedTimeout := 30 * time.Second
	if cfg.Fast {
		ctrlOpts.Resync = time.Second
		agentOpts.Resync = 2 * time.Second
		agentOpts.Heartbeat = time.Second
		agentOpts.MaxBackoff = 2 * time.Second
		failedTimeout = 10 * time.Second
	}
	// Built in the order the data flows, nothing late-bound: the manager
	// (writes, leadership), the agent (which writes through the manager and
	// fetches images from peers), then the API server over both, then the
	// dashboard, which calls the API as a read client.
	rec := events.New(r.State(), n.log)
	pr := peers.New(creds.id.ClientTLS())
	mgr := manager.New(r, manager.Options{
		Node: cfg.Name, ClusterCIDR: cfg.ClusterCIDR, Controller: ctrlOpts, Peers: pr,
		Membership: gossipMembers{g}, FailedTimeout: failedTimeout,
	}, n.log)
	images := peers.Images{Peers: pr, Self: cfg.Name, Nodes: r.State().Nodes, Loader: drv, Log: n.log}
	ag := agent.New(r.State(), agentCluster{Manager: mgr, Images: images, st: r.State(), node: cfg.Name, key: creds.dataKey}, drv, agentOpts, n.log)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	dashLn, dashInfo := n.listenDashboard(creds)
	met.watch(cfg.Name, r, g, drv, n.log)
	accessLog := proxy.NewAccessLog(accessLogSize)
	var acme *acmeCerts
	var certState func(string) string
	if cfg.IngressAddr != "" {
		storage := &acmeStorage{st: r.State(), key: creds.dataKey, node: cfg.Name, challengeWait: 3 * time.Second, lockLease: 5 * time.Minute,
			apply: func(ctx context.Context, cmd state.Command) error { _, err := mgr.Apply(ctx, cmd); return err },
			openKey: func(ctx context.Context, key string) ([]byte, error) {
				addr, err := mgr.LeaderAPI()
				if err != nil {
					return nil, err
				}
				return pr.ACMEKey(ctx, addr, key)
			}}
		var err error
		if acme, err = newACMECerts(storage, cfg.ACMECA, cfg.ACMEEmail, cfg.ACMECARoot, addrPort(cfg.IngressAddr), addrPort(cfg.IngressTLSAddr), cfg.Fast, n.log); err != nil {
			return err
		}
		certState = acme.State
	}
	apiSrv := apiserver.New(r, mgr, nodeLocal{Agent: ag, leave: func(lctx context.Context) error {
		return n.leave(lctx, r, mgr, g, ag, stop)
	}}, apiserver.Options{
		Node: cfg.Name, ServiceCIDR: cfg.ServiceCIDR, Version: cfg.Version, Peers: pr,
		Members: gossipMembers{g}.apiMembers, Events: rec, Dashboard: dashInfo, Log: n.log,
		CertLifetime: cfg.CertLifetime, DataKey: creds.dataKey,
		Metrics: met.handler(), Observe: met.observeAPI, CertState: certState, Stats: drv,
		IngressLog: accessLog,
	})
	handler := apiSrv.Handler()
	var dash *dashboard.Server
	if dashLn != nil {
		src := dashboardSource{st: r.State(), r: r, mgr: mgr, api: apiSrv, events: rec, node: cfg.Name}
		d, err := dashboard.New(src, dashboard.Options{
			Listener: dashLn.Listener, Token: dashLn.token, Log: n.log,
			// The dashboard is read-only: its page calls the API as a read client.
			API: apiserver.AsCaller(apiSrv.Routes(), apiserver.Caller{Name: "dashboard", Role: pki.RoleRead}),
		})
		if err != nil {
			_ = dashLn.Close()
			return err
		}
		dash = d
	}
	// No write timeout: logs follow and blocking queries wait up to five
	// minutes, and exec sessions hijack the connection.
	unixSrv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	tcpSrv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	eg, ctx := errgroup.WithContext(runCtx)
	serve := func(srv *http.Server, l net.Listener, what string) func() error {
		return func() error {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve %s: %w", what, err)
			}
			return nil
		}
	}
	eg.Go(serve(unixSrv, ln, "api socket"))
	eg.Go(serve(tcpSrv, apiLn, "api"))
	eg.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = unixSrv.Shutdown(sctx)
		_ = tcpSrv.Shutdown(sctx)
		return nil
	})
	eg.Go(func() error { return g.Run(ctx) })
	raftHosts := func() []string {
		servers, _ := r.Servers()
		var out []string
		for _, s := range servers {
			out = append(out, s.Address)
		}
		return out
	}
	keys := newGossipKeys(g, r.State(), cfg.DataDir, creds.gossipKey, n.log,
		peerGossipKeys(r.State(), raftHosts, cfg.Name, n.addr(cfg.APIPort), n.joinAPIAddr(), cfg.APIPort, pr.GossipKey, n.log))
	eg.Go(func() error { return keys.Run(ctx) })
	eg.Go(func() error { return n.joinGossip(ctx, g, creds.gossipPeers, keys) })
	eg.Go(func() error { return mgr.Run(ctx) })
	eg.Go(func() error {
		// Record from the state the node has caught up to: replaying the
		// log after a restart is not news.
		wctx, cancel := context.WithTimeout(ctx, 120*time.Second)
		defer cancel()
		if err := r.WaitReady(wctx); err != nil && ctx.Err() != nil {
			return nil
		}
		return rec.Run(ctx)
	})
	if dash != nil {
		eg.Go(func() error {
			if err := dash.Run(ctx); err != nil {
				n.log.Warn("dashboard stopped", "err", err)
			}
			return nil
		})
	}
	if creds.pending != nil {
		eg.Go(func() error { return n.recordCluster(ctx, r, mgr, *creds.pending) })
	}
	overlayKick := make(chan struct{}, 1)
	eg.Go(func() error { return n.consumeGossip(ctx, g, overlayKick) })
	eg.Go(func() error { return afterReady(ctx, r, ag.Run) })
	eg.Go(func() error { return disc.Run(ctx) })
	// The kernel is programmed from the state this node has caught up to, not
	// from the empty one it starts with: after a restart the old rules go on
	// serving until then.
	eg.Go(func() error {
		return afterReady(ctx, r, func(ctx context.Context) error {
			disc.refresh() // from the caught-up state, whatever discovery's own loop has done yet
			return n.runDataPath(ctx, kern, disc, clusterCIDR, met.observeSync)
		})
	})
	eg.Go(func() error { return n.runDNS(ctx, r.State(), disc, met.observeDNS) })
	if cfg.MetricsAddr != "" {
		eg.Go(func() error { return met.serve(ctx, cfg.MetricsAddr) })
	}
	if cfg.IngressAddr != "" {
		eg.Go(func() error { return n.runIngress(ctx, r, disc, mgr, pr, met, accessLog, acme) })
		eg.Go(func() error {
			return afterReady(ctx, r, func(ctx context.Context) error {
				return acme.Run(ctx, r.IsLeader, func() []string { return autoHosts(disc.Routes()) }, disc.Changed)
			})
		})
	}
	renewNow := make(chan struct{}, 1)
	eg.Go(func() error { return n.renewCertificate(ctx, creds.id, mgr, pr, renewNow) })
	var finishCA func(context.Context) (bool, error)
	if creds.dataKey != nil {
		finishCA = apiSrv.FinishCARotation
	}
	recordMove := func(ctx context.Context, cmd state.Command) error { _, err := mgr.Apply(ctx, cmd); return err }
	eg.Go(func() error {
		return afterReady(ctx, r, func(ctx context.Context) error {
			return n.followCA(ctx, r.State(), creds.id, renewNow, recordMove, finishCA)
		})
	})
	eg.Go(func() error { return n.runOverlay(ctx, g, r.State(), overlayKick) })
	eg.Go(func() error {
		return n.closeRevoked(ctx, r.State(), map[string]*pki.HandshakeListener{"api": apiLn, "raft": raftLn})
	})
	defer func() {
		if n.left.Load() {
			// No longer a member: forget the cluster so that the data dir can
			// join again (`dev join`) or start a new cluster.
			_ = r.Close()
			for _, d := range []string{pkiDir, "raft"} {
				_ = os.RemoveAll(filepath.Join(cfg.DataDir, d))
			}
			if err := kern.Teardown(); err != nil {
				n.log.Warn("remove service rules", "err", err)
			}
			if err := overlay.RemoveServiceForwarding(clusterCIDR); err != nil {
				n.log.Warn("remove service forwarding rule", "err", err)
			}
		}
	}()
	n.log.Info("agent started", "node", cfg.Name, "version", cfg.Version, "socket", cfg.socket(),
		"api", n.addr(cfg.APIPort), "raft", n.addr(cfg.RaftPort), "gossip", n.addr(cfg.GossipPort))
	return eg.Wait()
}

// runIngress serves the ingress router on IngressAddr (HTTP) and
// IngressTLSAddr (HTTPS, with local certificates from the leader) from the
// caught-up state. An address it cannot listen on (the port taken, no
// right to bind it) leaves the node without it, said in the log, rather
// than stop the agent.
func (n *Node) runIngress(ctx context.Context, r *raftstore.Raft, disc *discovery, mgr *manager.Manager, pr *peers.Peers, met *metrics, accessLog *proxy.AccessLog, acme *acmeCerts) error {
	listen := func(addr, flag string) net.Listener {
		if addr == "" {
			return nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			n.log.Warn("the ingress router does not listen here: another server on the port? pick another address with --"+flag+", or none with --"+flag+"=\"\"",
				"addr", addr, "err", err)
			return nil
		}
		return ln
	}
	ln, tlsLn := listen(n.cfg.IngressAddr, "ingress-addr"), listen(n.cfg.IngressTLSAddr, "ingress-tls-addr")
	if ln == nil {
		if tlsLn != nil {
			tlsLn.Close()
		}
		return nil
	}
	certs := newLocalCerts(func(ctx context.Context, host string, csr []byte) (api.IngressCertResponse, error) {
		addr, err := mgr.LeaderAPI()
		if err != nil {
			return api.IngressCertResponse{}, err
		}
		return pr.IngressCert(ctx, addr, host, csr)
	})
	ran := false
	defer func() {
		if !ran { // stopped before the state was ready: the router closes them otherwise
			ln.Close()
			if tlsLn != nil {
				tlsLn.Close()
			}
		}
	}()
	return afterReady(ctx, r, func(ctx context.Context) error {
		ran = true
		return proxy.NewIngress(proxy.IngressConfig{Listener: ln, TLSListener: tlsLn, Certs: certs, ACME: acme, Source: disc,
			Observe: ingressObserver(n.cfg.Name, met, accessLog, disc.podOf), Log: n.log}).Run(ctx)
	})
}

// addrPort is the port of a listen address (":443"), 0 when there is none.
func addrPort(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// maxAPIConns caps the TCP API's connections (nodes, remote CLIs, their
// log follows and exec sessions).
const maxAPIConns = 512

// maxAPIConnsPerIP caps one address's share of them: a remote `dev logs
// -f` holds a connection per container it follows.
const maxAPIConnsPerIP = 128

// afterReady runs f once the raft store has replayed its log (within two
// minutes); a stop before then is no error.
func afterReady(ctx context.Context, r *raftstore.Raft, f func(context.Context) error) error {
	wctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	if err := r.WaitReady(wctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	return f(ctx)
}

// agentCluster is what the agent needs of the cluster: writes and
// heartbeats through the manager, images from peers.
type agentCluster struct {
	*manager.Manager
	peers.Images
	st   *state.Store
	node string
	key  *pki.DataKey // nil on a worker
}

var _ agent.Cluster = agentCluster{}

// OpenFiles implements agent.Cluster: a manager opens them itself, a
// worker asks the leader (a manager).
func (c agentCluster) OpenFiles(ctx context.Context, pod string) (map[string][]byte, error) {
	if c.key != nil {
		return apiserver.OpenPodFiles(c.st, c.key, c.node, pod)
	}
	addr, err := c.Manager.LeaderAPI()
	if err != nil {
		return nil, err
	}
	return c.Images.Peers.OpenFiles(ctx, addr, pod)
}

// nodeLocal is what the API needs of this node: the agent's container-level
// work and the port checks.
type nodeLocal struct {
	*agent.Agent
	leave func(ctx context.Context) error
}

func (l nodeLocal) Leave(ctx context.Context) error { return l.leave(ctx) }

func (l nodeLocal) CheckPort(addr netip.AddrPort, proto string) error {
	return proxy.CheckPort(addr, proto)
}

// runDataPath keeps the kernel's service rules in line with the state, and
// the rule that lets their traffic through Docker's FORWARD chain in place
// (re-asserted every resync: Docker re-creates its chains when it restarts).
// observe is told of every apply (the data path's metrics).
func (n *Node) runDataPath(ctx context.Context, kern proxy.Kernel, src proxy.Source, cluster netip.Prefix, observe func(proxy.Sync)) error {
	resync := 10 * time.Second
	if n.cfg.Fast {
		resync = 2 * time.Second
	}
	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error {
		return proxy.Run(ctx, kern, src, proxy.RunConfig{Resync: resync, Observe: observe, Log: n.log})
	})
	eg.Go(func() error {
		var lastErr string
		tick := time.NewTicker(resync)
		defer tick.Stop()
		for {
			if err := overlay.EnsureServiceForwarding(cluster); err != nil && err.Error() != lastErr {
				n.log.Warn("service forwarding rule", "err", err)
				lastErr = err.Error()
			} else if err == nil {
				lastErr = ""
			}
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
		}
	})
	err := eg.Wait()
	if len(src.Services()) == 0 {
		// Nothing served: the agent stops for good with nothing left behind
		// (after both loops: the one above must not put the rule back).
		if err := overlay.RemoveServiceForwarding(cluster); err != nil {
			n.log.Warn("remove service forwarding rule", "err", err)
		}
	}
	return err
}

// clusterDomain is the DNS zone of the cluster.
const clusterDomain = "dev."

// runDNS serves cluster DNS on the pod network's gateway (port 53) and on
// DNSAddr for the host, once this node has its pod subnet. A bind failure
// (the bridge not up yet) is retried. observe counts the queries (the
// metrics).
func (n *Node) runDNS(ctx context.Context, st *state.Store, r dns.Resolver, observe func(result string)) error {
	var gw netip.Addr
	for !gw.IsValid() {
		if nd, ok := st.Node(n.cfg.Name); ok && nd.PodSubnet != "" {
			pfx, err := netip.ParsePrefix(nd.PodSubnet)
			if err != nil {
				return fmt.Errorf("parse pod subnet %q: %w", nd.PodSubnet, err)
			}
			gw = pfx.Masked().Addr().Next()
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-st.Changed():
		case <-time.After(time.Second):
		}
	}
	// The agent creates the bridge that owns the gateway address; wait for it
	// rather than failing to bind.
	for !addrIsLocal(gw) {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
	addrs := []string{netip.AddrPortFrom(gw, 53).String()}
	if n.cfg.DNSAddr != "" {
		addrs = append(addrs, n.cfg.DNSAddr)
	}
	cidr, err := netip.ParsePrefix(n.cfg.ClusterCIDR)
	if err != nil {
		return fmt.Errorf("parse cluster cidr %q: %w", n.cfg.ClusterCIDR, err)
	}
	sources := newDNSSources(cidr, st)
	for {
		srv := dns.New(dns.Config{Addrs: addrs, Domain: clusterDomain, Allow: sources.Allow, Observe: observe, Log: n.log}, r)
		err := srv.Run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		n.log.Warn("cluster dns stopped; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
}

// listenSocket listens on a unix socket, replacing a stale socket file but
// refusing to steal one that an agent still answers on.
func listenSocket(path string) (net.Listener, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("listen on %s: an agent already runs with this data dir (stop it, or pass another --data-dir)", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return ln, nil
}

// shareWithDockerGroup gives the socket at path the group of the Docker
// Engine's unix socket (the docker group, when the CLI's user is in it).
func shareWithDockerGroup(path, dockerHost string) error {
	dockerSock, ok := strings.CutPrefix(dockerHost, "unix://")
	if !ok {
		return fmt.Errorf("share %s with the docker group: the engine at %s is not a unix socket", path, dockerHost)
	}
	fi, err := os.Stat(dockerSock)
	if err != nil {
		return fmt.Errorf("share %s with the docker group: %w", path, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("share %s with the docker group: no owner of %s", path, dockerSock)
	}
	if err := os.Chown(path, 0, int(st.Gid)); err != nil {
		return fmt.Errorf("share %s with the docker group: %w", path, err)
	}
	return nil
}

// addrIsLocal reports whether a is assigned on this host (a socket can bind it).
func addrIsLocal(a netip.Addr) bool {
	c, err := net.ListenPacket("udp", netip.AddrPortFrom(a, 0).String())
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// clusterLabel is the cluster's identity on containers: its CA fingerprint.
func clusterLabel(c *credentials) string { return c.label }
