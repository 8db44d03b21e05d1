// Package dns is the cluster DNS server: it answers service, task, pod and SRV
// names of the cluster domain from a Resolver and forwards every other name to
// the host's upstream resolvers.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Port is a service port as published in SRV records.
type Port struct {
	Name     string // may be ""
	Number   uint16
	Protocol string // "tcp" or "udp"; "" means "tcp"
}

// Resolver answers cluster names. It is implemented by the node from cluster
// state and must be safe for concurrent use: it is called on every query.
type Resolver interface {
	// ClientProject returns the project of the pod with this source IP ("", false for the host or unknown).
	ClientProject(client netip.Addr) (string, bool)
	// Service returns the VIP and ports of a service (or network alias) of project as seen by client;
	// ok=false: no such name visible to the client.
	Service(client netip.Addr, project, name string) (vip netip.Addr, ports []Port, ok bool)
	// Tasks returns the IPs of the ready pods of a service (visible to client); ok=false: no such service.
	Tasks(client netip.Addr, project, name string) ([]netip.Addr, bool)
	// Pod returns the IP of a pod by name.
	Pod(project, pod string) (netip.Addr, bool)
}

// Config configures a Server. Zero values take the documented defaults.
type Config struct {
	Addrs      []string      // listen addresses, e.g. "10.213.1.1:53", "127.0.0.1:1053"; each served on UDP and TCP
	Domain     string        // cluster domain, default "dev."
	TTL        uint32        // TTL of cluster answers, default 2
	Upstreams  []string      // "ip:port"; nil = the nameservers of ResolvConf
	ResolvConf string        // default /etc/resolv.conf
	Timeout    time.Duration // per-upstream timeout, default 2s
	// Allow, when set, says which sources are answered (the node's pods,
	// the node itself, its peers); others get REFUSED, so that the server
	// is nobody else's resolver.
	Allow func(netip.Addr) bool
	// MaxForwards caps the queries waiting on an upstream at once (default
	// 256); beyond it a query is answered SERVFAIL at once.
	MaxForwards int
	// Observe, when set, is told of every query once it is answered, by
	// how it was answered: one of the Result constants. It is called on
	// the query's goroutine and must not block.
	Observe func(result string)
	Log     *slog.Logger
}

// How a query was answered, as Config.Observe is told.
const (
	// ResultAnswered: a cluster name (or a bare service name) answered
	// from the Resolver, with records or without (NODATA).
	ResultAnswered = "answered"
	// ResultNXDomain: a name of the cluster domain that does not exist.
	ResultNXDomain = "nxdomain"
	// ResultForwarded: another name, answered by an upstream (whatever
	// its answer said).
	ResultForwarded = "forwarded"
	// ResultRefused: a source Config.Allow refuses, a class other than IN
	// in the cluster domain, or a query the server does not take (another
	// opcode, not one question, an EDNS version other than 0).
	ResultRefused = "refused"
	// ResultServFail: no upstream answered, or too many queries were
	// waiting on them (Config.MaxForwards).
	ResultServFail = "servfail"
)

// Results lists every Result constant, for a counter to start each at 0.
var Results = []string{ResultAnswered, ResultNXDomain, ResultForwarded, ResultRefused, ResultServFail}

const (
	defaultDomain     = "dev."
	defaultTTL        = 2
	defaultResolvConf = "/etc/resolv.conf"
	defaultTimeout    = 2 * time.Second
	defaultForwards   = 256

	// systemdResolvConf lists the real upstreams when /etc/resolv.conf only
	// points at the systemd-resolved stub (127.0.0.53), which we skip.
	systemdResolvConf = "/run/systemd/resolve/resolv.conf"

	// ednsSize is the UDP payload size we advertise and answer with
	// (the DNS flag day 2020 value: no IP fragmentation).
	ednsSize = 1232

	resolvConfPoll  = 5 * time.Second
	shutdownTimeout = 5 * time.Second
)

// Server is the cluster DNS server. Create it with New, start it with Run.
type Server struct {
	cfg    Config
	r      Resolver
	log    *slog.Logger
	domain string // lowercase FQDN, e.g. "dev."
	suffix string // "." + domain
	soa    *dns.SOA

	upstreams         atomic.Pointer[[]string] // nil until loaded
	loadUpstreamsOnce sync.Once
	resolvMod         time.Time // ResolvConf modification time of the loaded list

	forwards chan struct{} // a slot per query waiting on an upstream

	running atomic.Bool
	ready   chan struct{}
	mu      sync.Mutex
	addrs   []string // bound addresses, set before ready is closed
}

// New returns a Server answering from r. It starts nothing.
func New(cfg Config, r Resolver) *Server {
	if cfg.Domain == "" {
		cfg.Domain = defaultDomain
	}
	if cfg.TTL == 0 {
		cfg.TTL = defaultTTL
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = defaultResolvConf
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxForwards <= 0 {
		cfg.MaxForwards = defaultForwards
	}
	domain := strings.ToLower(dns.Fqdn(strings.TrimPrefix(cfg.Domain, ".")))
	s := &Server{
		cfg:    cfg,
		r:      r,
		log:    cfg.Log.With("component", "dns"),
		domain: domain,
		suffix: "." + domain,
		ready:  make(chan struct{}),

		forwards: make(chan struct{}, cfg.MaxForwards),
	}
	s.soa = &dns.SOA{
		Hdr:     dns.RR_Header{Name: domain, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: cfg.TTL},
		Ns:      "ns." + domain,
		Mbox:    "hostmaster." + domain,
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  cfg.TTL,
	}
	if cfg.Upstreams != nil {
		ups := append([]string(nil), cfg.Upstreams...)
		s.upstreams.Store(&ups)
	}
	return s
}

// Handler returns the query handler, for in-process tests and benchmarks. It
// does not need Run; with Config.Upstreams nil it reads ResolvConf on first use.
func (s *Server) Handler() dns.Handler {
	return &handler{s: s, ctx: context.Background()}
}

// Ready is closed once Run has bound every address and its servers accept
// queries; Addrs is valid from then on. It is never closed if Run fails to
// bind, so wait on it together with Run's result:
//
//	go func() { errc <- srv.Run(ctx) }()
//	select { case <-srv.Ready(): case err := <-errc: ... }
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addrs returns the addresses actually bound ("ip:port", one per
// Config.Addrs entry, serving UDP and TCP on the same port), or nil before
// Ready is closed.
func (s *Server) Addrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.addrs...)
}

// Run binds every address on UDP and TCP, serves until ctx ends, then shuts
// all servers down and returns nil. A bind failure is returned at once, naming
// the address. A Server runs at most once.
func (s *Server) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("run dns server: already started")
	}
	if len(s.cfg.Addrs) == 0 {
		return errors.New("run dns server: no listen address configured")
	}

	var (
		pcs   []net.PacketConn
		lns   []net.Listener
		bound []string
	)
	for _, addr := range s.cfg.Addrs {
		pc, ln, err := listenPair(ctx, addr)
		if err != nil {
			for i := range pcs {
				pcs[i].Close()
				lns[i].Close()
			}
			return fmt.Errorf("listen %s: %w", addr, err)
		}
		pcs, lns = append(pcs, pc), append(lns, ln)
		bound = append(bound, pc.LocalAddr().String())
	}

	if s.upstreams.Load() == nil {
		s.loadUpstreamsOnce.Do(func() { s.loadUpstreams(bound) })
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h := &handler{s: s, ctx: ctx}

	type running struct {
		addr    string
		srv     *dns.Server
		started chan struct{}
		done    chan struct{}
		err     error
	}
	var servers []*running
	for i := range pcs {
		for _, srv := range []*dns.Server{
			{PacketConn: pcs[i], Handler: h, UDPSize: ednsSize},
			{Listener: lns[i], Handler: h},
		} {
			rs := &running{addr: bound[i], srv: srv, started: make(chan struct{}), done: make(chan struct{})}
			srv.NotifyStartedFunc = sync.OnceFunc(func() { close(rs.started) })
			servers = append(servers, rs)
		}
	}
	failed := make(chan struct{}, len(servers))
	for _, rs := range servers {
		go func() {
			defer close(rs.done)
			if err := rs.srv.ActivateAndServe(); err != nil {
				rs.err = err
				failed <- struct{}{}
			}
		}()
	}
	allStarted := true
	for _, rs := range servers {
		select {
		case <-rs.started:
		case <-rs.done:
			allStarted = false
		}
	}
	if allStarted {
		s.mu.Lock()
		s.addrs = bound
		s.mu.Unlock()
		close(s.ready)
		s.log.Info("dns server started", "addrs", bound, "domain", s.domain)
	}

	var wg sync.WaitGroup
	if s.cfg.Upstreams == nil {
		wg.Go(func() { s.watchResolvConf(ctx, bound) })
	}

	stoppedEarly := false
	select {
	case <-ctx.Done():
	case <-failed:
		stoppedEarly = true
	}
	cancel() // also aborts in-flight upstream queries

	for _, rs := range servers {
		select {
		case <-rs.done: // stopped on its own (or never started)
		case <-rs.started:
			sctx, scancel := context.WithTimeout(context.Background(), shutdownTimeout)
			if err := rs.srv.ShutdownContext(sctx); err != nil {
				s.log.Warn("shut down dns server", "addr", rs.addr, "err", err)
			}
			scancel()
			<-rs.done
		}
	}
	var runErr error
	if stoppedEarly {
		for _, rs := range servers {
			if rs.err != nil {
				runErr = fmt.Errorf("serve dns on %s: %w", rs.addr, rs.err)
				break
			}
		}
	}
	// ActivateAndServe leaves the listener open on shutdown; close them all.
	for i := range pcs {
		pcs[i].Close()
		lns[i].Close()
	}
	wg.Wait()
	s.log.Info("dns server stopped")
	return runErr
}

// listenPair binds addr on UDP and TCP on the same port. With port 0 the UDP
// socket picks a port and TCP follows it, retrying if that TCP port is taken.
func listenPair(ctx context.Context, addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	var lc net.ListenConfig
	for attempt := 0; ; attempt++ {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return nil, nil, err
		}
		tcpAddr := addr
		if port == "0" {
			_, p, _ := net.SplitHostPort(pc.LocalAddr().String())
			tcpAddr = net.JoinHostPort(host, p)
		}
		ln, err := lc.Listen(ctx, "tcp", tcpAddr)
		if err != nil {
			pc.Close()
			if port == "0" && attempt < 10 {
				continue
			}
			return nil, nil, err
		}
		return pc, ln, nil
	}
}
