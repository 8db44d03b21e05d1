package pki

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/devhq/dev/cluster/api"
)

// HandshakeLimits bound what peers that have not proven who they are can
// hold on a TLS listener: how long a handshake may take, how many may be
// in flight, and how many connections one source address may have open.
type HandshakeLimits struct {
	// Timeout is the deadline of a handshake (default 10s).
	Timeout time.Duration
	// MaxPending is the number of handshakes in flight (default 256);
	// connections beyond it are closed at once.
	MaxPending int
	// MaxPerIP is the number of connections one source address (an IPv6
	// /64) may hold, in handshake or accepted (default 32).
	MaxPerIP int
}

func (l HandshakeLimits) withDefaults() HandshakeLimits {
	if l.Timeout <= 0 {
		l.Timeout = 10 * time.Second
	}
	if l.MaxPending <= 0 {
		l.MaxPending = 256
	}
	if l.MaxPerIP <= 0 {
		l.MaxPerIP = 32
	}
	return l
}

// HandshakeListener is a TLS listener whose Accept returns only
// connections that completed the handshake (and so its certificate
// checks) within the limits. What the server above it allocates per
// connection (hashicorp/raft: a goroutine and 256 KiB of buffers, held
// until the peer speaks) is spent on authenticated peers only.
type HandshakeListener struct {
	inner net.Listener
	cfg   *tls.Config
	lim   HandshakeLimits
	log   *slog.Logger

	ready   chan net.Conn
	pending chan struct{} // a slot per handshake in flight
	ctx     context.Context
	stop    context.CancelFunc
	done    chan struct{}

	mu    sync.Mutex
	perIP map[netip.Addr]int
	open  map[*tls.Conn]struct{} // handed to Accept and not closed yet
}

var _ net.Listener = (*HandshakeListener)(nil)

// NewHandshakeListener wraps inner, whose connections are served TLS with
// cfg, and starts accepting from it; Close stops it.
func NewHandshakeListener(inner net.Listener, cfg *tls.Config, lim HandshakeLimits, log *slog.Logger) *HandshakeListener {
	lim = lim.withDefaults()
	ctx, stop := context.WithCancel(context.Background())
	l := &HandshakeListener{
		inner: inner, cfg: cfg, lim: lim, log: log,
		ready:   make(chan net.Conn),
		pending: make(chan struct{}, lim.MaxPending),
		ctx:     ctx, stop: stop, done: make(chan struct{}),
		perIP: map[netip.Addr]int{},
		open:  map[*tls.Conn]struct{}{},
	}
	go l.acceptLoop()
	return l
}

func (l *HandshakeListener) acceptLoop() {
	defer close(l.done)
	var backoff time.Duration
	for {
		c, err := l.inner.Accept()
		if err != nil {
			if l.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: shed load, then retry.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("accept", "err", err, "retry_in", backoff)
			select {
			case <-l.ctx.Done():
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		ip := sourceIP(c)
		if !l.take(ip) {
			c.Close() // this address holds its share already
			continue
		}
		select {
		case l.pending <- struct{}{}:
		default:
			l.release(ip, nil)
			c.Close() // too many handshakes in flight
			continue
		}
		tracked := &trackedConn{Conn: c}
		tracked.release = func() { l.release(ip, tracked.tls) }
		go l.handshake(tracked)
	}
}

// handshake completes the TLS handshake of c within the deadline and
// hands the connection to Accept, or closes it.
func (l *HandshakeListener) handshake(c *trackedConn) {
	tc := tls.Server(c, l.cfg)
	c.tls = tc
	ctx, cancel := context.WithTimeout(l.ctx, l.lim.Timeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	<-l.pending
	if err != nil {
		tc.Close()
		return
	}
	l.mu.Lock()
	l.open[tc] = struct{}{}
	l.mu.Unlock()
	select {
	case l.ready <- tc:
	case <-l.ctx.Done():
		tc.Close()
	}
}

func (l *HandshakeListener) take(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perIP[ip] >= l.lim.MaxPerIP {
		return false
	}
	l.perIP[ip]++
	return true
}

func (l *HandshakeListener) release(ip netip.Addr, tc *tls.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
	delete(l.open, tc)
}

// CloseRevoked closes every accepted connection whose peer's certificate
// revoked says is revoked, and returns how many: a revocation also ends
// what was opened before it (a raft stream, `dev logs -f`, `dev exec`).
func (l *HandshakeListener) CloseRevoked(revoked RevokedFunc) int {
	if revoked == nil {
		return 0
	}
	l.mu.Lock()
	var gone []*tls.Conn
	for tc := range l.open {
		cs := tc.ConnectionState()
		if len(cs.PeerCertificates) == 0 {
			continue
		}
		leaf := cs.PeerCertificates[0]
		if peer, err := PeerOf(leaf); err == nil && revoked.Of(peer, leaf) {
			gone = append(gone, tc)
		}
	}
	l.mu.Unlock()
	for _, tc := range gone {
		tc.Close() // its trackedConn takes it out of open
	}
	return len(gone)
}

// Accept returns the next connection whose handshake succeeded.
func (l *HandshakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.ctx.Done():
		return nil, net.ErrClosed
	}
}

// Close stops accepting; connections already accepted stay open.
func (l *HandshakeListener) Close() error {
	l.stop()
	err := l.inner.Close()
	<-l.done
	return err
}

// Addr is the inner listener's address.
func (l *HandshakeListener) Addr() net.Addr { return l.inner.Addr() }

// trackedConn gives its source address's share back when closed, and
// leaves the listener's open connections.
type trackedConn struct {
	net.Conn
	tls     *tls.Conn // the connection served over it
	once    sync.Once
	release func()
}

func (c *trackedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// sourceIP is what MaxPerIP counts by (api.SourceKey).
func sourceIP(c net.Conn) netip.Addr { return api.SourceOf(c.RemoteAddr()) }
