// Package proxy is the node proxy (kube-proxy's role): it listens on service
// virtual IPs and published ports and balances TCP and UDP across endpoints.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// Service is one frontend: a listening address and protocol with its backends.
type Service struct {
	Name      string           // for logs, e.g. "hello/web 80/tcp"
	Listen    netip.AddrPort   // a service VIP:port, or 0.0.0.0:published / host_ip:published
	Protocol  string           // "tcp" or "udp"
	Endpoints []netip.AddrPort // ready backends (pod IP:target port); may be empty
}

// Options configures a Proxy. Zero values take the defaults.
type Options struct {
	DialTimeout    time.Duration // per backend dial attempt; default 1s
	UDPIdleTimeout time.Duration // a UDP session without traffic expires; default 30s
	Log            *slog.Logger  // default slog.Default()
}

// Source is what Run consumes: the services this node must serve, and a
// signal that they changed. Changed is called again after every signal, so
// both a long-lived channel and a close-and-replace broadcast channel work.
type Source interface {
	Services() []Service
	Changed() <-chan struct{}
}

const (
	defaultDialTimeout    = time.Second
	defaultUDPIdleTimeout = 30 * time.Second
	defaultResync         = 10 * time.Second
	maxUDPSessions        = 4096 // per frontend
	tcpKeepAlive          = 15 * time.Second
)

// Proxy serves a set of frontends. Use Apply directly or Run with a Source.
type Proxy struct {
	opts   Options
	log    *slog.Logger
	resync time.Duration
	dialer net.Dialer

	// ctx bounds backend dials; cancelled on shutdown.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex // serialises Apply, Check and shutdown
	frontends map[frontendKey]frontend
	stopped   bool

	wg sync.WaitGroup // every goroutine the proxy starts

	connMu      sync.Mutex
	conns       map[*net.TCPConn]struct{} // established proxied connections, closed on shutdown
	connsClosed bool
}

// New returns a proxy serving nothing; it starts nothing.
func New(opts Options) *Proxy {
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = defaultDialTimeout
	}
	if opts.UDPIdleTimeout <= 0 {
		opts.UDPIdleTimeout = defaultUDPIdleTimeout
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Proxy{
		opts:   opts,
		log:    opts.Log.With("component", "proxy"),
		resync: defaultResync,
		dialer: net.Dialer{
			Timeout:         opts.DialTimeout,
			KeepAliveConfig: keepAlive(),
		},
		ctx:       ctx,
		cancel:    cancel,
		frontends: map[frontendKey]frontend{},
		conns:     map[*net.TCPConn]struct{}{},
	}
}

func keepAlive() net.KeepAliveConfig {
	return net.KeepAliveConfig{Enable: true, Idle: tcpKeepAlive, Interval: tcpKeepAlive, Count: 9}
}

// frontendKey identifies a listening socket.
type frontendKey struct {
	addr  netip.AddrPort
	proto string // "tcp" or "udp"
}

func (k frontendKey) String() string { return k.addr.String() + "/" + k.proto }

// network is the Go network name for the key's address family.
func (k frontendKey) network() string {
	if k.addr.Addr().Is4() {
		return k.proto + "4"
	}
	return k.proto + "6"
}

func makeKey(addr netip.AddrPort, proto string) (frontendKey, error) {
	proto = strings.ToLower(proto)
	if proto != "tcp" && proto != "udp" {
		return frontendKey{}, fmt.Errorf("unsupported protocol %q (want tcp or udp)", proto)
	}
	if !addr.IsValid() || addr.Port() == 0 {
		return frontendKey{}, fmt.Errorf("invalid listen address %q", addr)
	}
	return frontendKey{addr: netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port()), proto: proto}, nil
}

// frontend is one listening socket with its endpoint set.
type frontend interface {
	// update swaps in a new name and endpoint set; new flows use it.
	update(name string, eps []netip.AddrPort)
	// close stops listening; it does not wait for the frontend's goroutines.
	close()
}

// backendSet is what a frontend balances over; it is replaced atomically, never mutated.
type backendSet struct {
	name string
	eps  []netip.AddrPort
}

func newBackendSet(name string, eps []netip.AddrPort) *backendSet {
	return &backendSet{name: name, eps: slices.Clone(eps)}
}

func (b *backendSet) equal(name string, eps []netip.AddrPort) bool {
	return b.name == name && slices.Equal(b.eps, eps)
}

// Apply makes the proxy serve exactly desired: it opens listeners for new
// frontends, closes removed ones and swaps the endpoint sets of existing ones
// atomically. It is idempotent. A frontend that cannot be opened yields an
// error naming its address (all joined); the others are still applied.
// Established TCP connections are never dropped by an update, whether or not
// their endpoint remains (like kube-proxy); only new connections use the new
// set. UDP sessions whose endpoint left the set are dropped.
func (p *Proxy) Apply(desired []Service) error {
	type item struct {
		key frontendKey
		svc Service
	}
	var errs []error
	want := make([]item, 0, len(desired))
	seen := make(map[frontendKey]string, len(desired))
	for _, s := range desired {
		k, err := makeKey(s.Listen, s.Protocol)
		if err != nil {
			errs = append(errs, fmt.Errorf("apply frontend %q: %w", s.Name, err))
			continue
		}
		if other, dup := seen[k]; dup {
			errs = append(errs, fmt.Errorf("apply frontend %q: %s is already used by %q", s.Name, k, other))
			continue
		}
		seen[k] = s.Name
		want = append(want, item{k, s})
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return errors.New("apply frontends: proxy is stopped")
	}
	// Close first, so that an address moving between frontends (say
	// 0.0.0.0:80 to 10.0.0.1:80) can be bound again in the same pass.
	for k, f := range p.frontends {
		if _, ok := seen[k]; !ok {
			f.close()
			delete(p.frontends, k)
			p.log.Info("closed frontend", "listen", k.String())
		}
	}
	for _, it := range want {
		if f, ok := p.frontends[it.key]; ok {
			f.update(it.svc.Name, it.svc.Endpoints)
			continue
		}
		f, err := p.open(it.key, it.svc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.frontends[it.key] = f
		p.log.Info("opened frontend", "frontend", it.svc.Name, "listen", it.key.String(), "endpoints", len(it.svc.Endpoints))
	}
	return errors.Join(errs...)
}

// open binds a new frontend and starts serving it. Called with p.mu held.
func (p *Proxy) open(k frontendKey, s Service) (frontend, error) {
	var (
		f   frontend
		err error
	)
	switch k.proto {
	case "tcp":
		f, err = p.openTCP(k, s)
	case "udp":
		f, err = p.openUDP(k, s)
	}
	if err != nil {
		return nil, fmt.Errorf("listen %s (%s): %w", k, s.Name, bareNetError(err))
	}
	return f, nil
}

// bareNetError strips net.OpError's "listen tcp4 1.2.3.4:80:" prefix, which
// repeats what our own message already says.
func bareNetError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// Check reports whether addr/proto could be bound now: nil if it is free or
// already served by this proxy, otherwise an error naming the address.
func (p *Proxy) Check(addr netip.AddrPort, proto string) error {
	k, err := makeKey(addr, proto)
	if err != nil {
		return fmt.Errorf("check %s/%s: %w", addr, proto, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.frontends[k]; ok {
		return nil
	}
	// Bind the way frontends do (SO_REUSEPORT), so that our own sockets on
	// overlapping addresses do not count as conflicts but a foreign one does.
	lc := net.ListenConfig{Control: reusePort}
	switch k.proto {
	case "tcp":
		ln, err := lc.Listen(context.Background(), k.network(), k.addr.String())
		if err != nil {
			return fmt.Errorf("check %s: %w", k, bareNetError(err))
		}
		return ln.Close()
	default:
		c, err := lc.ListenPacket(context.Background(), k.network(), k.addr.String())
		if err != nil {
			return fmt.Errorf("check %s: %w", k, bareNetError(err))
		}
		return c.Close()
	}
}

// Run applies src's services now, on every Changed signal and every 10s (to
// retry frontends that failed to bind), until ctx ends; then it closes every
// listener and connection and waits for its goroutines. Apply errors are
// logged, not returned. A stopped Proxy cannot be run again.
func (p *Proxy) Run(ctx context.Context, src Source) error {
	defer p.shutdown()
	tick := time.NewTicker(p.resync)
	defer tick.Stop()

	var lastErr string
	apply := func() {
		err := p.Apply(src.Services())
		switch {
		case err == nil && lastErr != "":
			p.log.Info("all frontends applied")
			lastErr = ""
		case err != nil && err.Error() != lastErr:
			// Logged once per distinct failure, not on every resync.
			p.log.Warn("apply frontends", "err", err)
			lastErr = err.Error()
		}
	}
	// Fetch the channel before the services so that no change is missed.
	changed := src.Changed()
	apply()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-changed:
			next := src.Changed()
			if !ok && next == changed {
				next = nil // closed for good: rely on the resync
			}
			changed = next
			apply()
		case <-tick.C:
			apply()
		}
	}
}

// shutdown closes every frontend and proxied connection and waits for all
// goroutines. The proxy serves nothing afterwards.
func (p *Proxy) shutdown() {
	p.mu.Lock()
	p.stopped = true
	for k, f := range p.frontends {
		f.close()
		delete(p.frontends, k)
	}
	p.mu.Unlock()
	p.cancel() // abort dials in flight

	p.connMu.Lock()
	p.connsClosed = true
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.connMu.Unlock()

	p.wg.Wait()
	p.log.Debug("stopped")
}

// track registers an established pair for shutdown; false if shutting down.
func (p *Proxy) track(a, b *net.TCPConn) bool {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	if p.connsClosed {
		return false
	}
	p.conns[a] = struct{}{}
	p.conns[b] = struct{}{}
	return true
}

func (p *Proxy) untrack(a, b *net.TCPConn) {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	delete(p.conns, a)
	delete(p.conns, b)
}

// acceptBackoff returns the next delay after a failed accept or read, as
// net/http does: 5ms doubling up to 1s.
func acceptBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return 5 * time.Millisecond
	}
	return min(2*d, time.Second)
}

// pause waits d, or until done closes; it reports whether to go on.
func pause(done <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return false
	case <-t.C:
		return true
	}
}
