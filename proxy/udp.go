package proxy

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// maxDatagram is the largest UDP payload over IPv4.
const maxDatagram = 65507

// bufPool holds datagram buffers for session reply loops, so that sessions
// coming and going do not allocate 64KiB each.
var bufPool = sync.Pool{New: func() any { b := make([]byte, maxDatagram); return &b }}

// epoch is the base of the monotonic timestamps kept by sessions.
var epoch = time.Now()

func monoNow() int64 { return int64(time.Since(epoch)) }

// udpFrontend is one UDP socket. Each client address gets a session: its own
// connected socket to one endpoint, with one goroutine reading the replies
// and writing them back from the frontend socket. Datagrams from clients are
// all read by a single goroutine; nothing is started per packet.
type udpFrontend struct {
	p    *Proxy
	key  frontendKey
	conn *net.UDPConn
	set  atomic.Pointer[backendSet]
	next atomic.Uint64 // round-robin counter
	idle time.Duration
	done chan struct{}
	log  *slog.Logger

	mu       sync.Mutex
	sessions map[netip.AddrPort]*udpSession // by client address
	closed   bool
	full     bool // the session table was full; logged once until it is not
}

var _ frontend = (*udpFrontend)(nil)

type udpSession struct {
	client  netip.AddrPort
	backend netip.AddrPort
	conn    *net.UDPConn // connected to backend
	last    atomic.Int64 // monoNow of the last datagram either way
}

func (p *Proxy) openUDP(k frontendKey, s Service) (*udpFrontend, error) {
	// SO_REUSEPORT (see reusePort) but no SO_REUSEADDR: on UDP the latter
	// would let a foreign socket share the port silently.
	lc := net.ListenConfig{Control: reusePort}
	pc, err := lc.ListenPacket(p.ctx, k.network(), k.addr.String())
	if err != nil {
		return nil, err
	}
	c := pc.(*net.UDPConn)
	f := &udpFrontend{
		p:        p,
		key:      k,
		conn:     c,
		idle:     p.opts.UDPIdleTimeout,
		done:     make(chan struct{}),
		log:      p.log.With("listen", k.String()),
		sessions: map[netip.AddrPort]*udpSession{},
	}
	f.set.Store(newBackendSet(s.Name, s.Endpoints))
	p.wg.Go(f.serve)
	return f, nil
}

// update swaps the endpoint set and drops the sessions whose endpoint left
// it; their clients get a new endpoint with their next datagram.
func (f *udpFrontend) update(name string, eps []netip.AddrPort) {
	if f.set.Load().equal(name, eps) {
		return
	}
	f.set.Store(newBackendSet(name, eps))
	keep := make(map[netip.AddrPort]bool, len(eps))
	for _, ep := range eps {
		keep[ep] = true
	}
	var drop []*udpSession
	f.mu.Lock()
	for client, s := range f.sessions {
		if !keep[s.backend] {
			delete(f.sessions, client)
			drop = append(drop, s)
		}
	}
	f.mu.Unlock()
	for _, s := range drop {
		s.conn.Close()
	}
	f.log.Debug("endpoints updated", "frontend", name, "endpoints", len(eps), "dropped_sessions", len(drop))
}

func (f *udpFrontend) close() {
	close(f.done)
	f.conn.Close()
	f.mu.Lock()
	f.closed = true
	sessions := f.sessions
	f.sessions = nil
	f.mu.Unlock()
	for _, s := range sessions {
		s.conn.Close()
	}
}

// serve reads client datagrams and forwards each to its session's endpoint.
func (f *udpFrontend) serve() {
	buf := make([]byte, maxDatagram)
	var delay time.Duration
	for {
		n, client, err := f.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			delay = acceptBackoff(delay)
			f.log.Warn("read failed; retrying", "frontend", f.set.Load().name, "err", err, "delay", delay)
			if !pause(f.done, delay) {
				return
			}
			continue
		}
		delay = 0
		s := f.session(client)
		if s == nil {
			continue // dropped: no endpoint, table full or closing
		}
		if _, err := s.conn.Write(buf[:n]); err != nil {
			// Typically ECONNREFUSED from an earlier ICMP: forget the
			// session so the next datagram picks an endpoint afresh.
			f.log.Debug("forward datagram failed", "client", client, "endpoint", s.backend, "err", err)
			f.remove(s)
		}
	}
}

// session returns client's live session, marked active, or opens one.
// Only serve calls it, so sessions are created by one goroutine.
func (f *udpFrontend) session(client netip.AddrPort) *udpSession {
	f.mu.Lock()
	s := f.sessions[client]
	if s != nil {
		// Touched under the lock so expire never races with a new datagram.
		s.last.Store(monoNow())
		f.mu.Unlock()
		return s
	}
	count := len(f.sessions)
	f.mu.Unlock()

	set := f.set.Load()
	if count >= maxUDPSessions {
		f.noteFull(true, set.name)
		return nil
	}
	n := uint64(len(set.eps))
	if n == 0 {
		return nil
	}
	ep := set.eps[(f.next.Add(1)-1)%n]
	c, err := f.p.dialer.DialUDP(f.p.ctx, "udp", netip.AddrPort{}, ep)
	if err != nil {
		f.log.Debug("open udp session failed", "frontend", set.name, "endpoint", ep, "err", err)
		return nil
	}
	s = &udpSession{client: client, backend: ep, conn: c}
	s.last.Store(monoNow())

	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		c.Close()
		return nil
	}
	f.sessions[client] = s
	f.mu.Unlock()
	f.noteFull(false, set.name)
	f.p.wg.Go(func() { f.reply(s) })
	return s
}

// noteFull logs the session table filling up once per episode. Only serve
// calls it.
func (f *udpFrontend) noteFull(full bool, name string) {
	if full == f.full {
		return
	}
	f.full = full
	if full {
		f.log.Warn("udp session table full; dropping datagrams from new clients", "frontend", name, "max", maxUDPSessions)
	}
}

// reply copies datagrams from the endpoint back to the client, from the
// frontend socket, until the session is idle for f.idle or closed. The read
// deadline doubles as the idle timer: no separate sweeper.
func (f *udpFrontend) reply(s *udpSession) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	s.conn.SetReadDeadline(time.Now().Add(f.idle))
	for {
		n, err := s.conn.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && !f.expire(s) {
				continue
			}
			f.remove(s)
			return
		}
		s.last.Store(monoNow())
		if _, err := f.conn.WriteToUDPAddrPort(buf[:n], s.client); err != nil {
			if errors.Is(err, net.ErrClosed) {
				f.remove(s)
				return
			}
			f.log.Debug("return datagram failed", "client", s.client, "err", err)
		}
	}
}

// expire removes s if it has been idle for f.idle, and otherwise moves its
// read deadline to when it will have been. It reports whether s expired.
func (f *udpFrontend) expire(s *udpSession) bool {
	f.mu.Lock()
	idleFor := time.Duration(monoNow() - s.last.Load())
	if idleFor < f.idle {
		f.mu.Unlock()
		s.conn.SetReadDeadline(time.Now().Add(f.idle - idleFor))
		return false
	}
	if f.sessions[s.client] == s {
		delete(f.sessions, s.client)
	}
	f.mu.Unlock()
	s.conn.Close()
	return true
}

// remove forgets s (if it is still the client's session) and closes it.
func (f *udpFrontend) remove(s *udpSession) {
	f.mu.Lock()
	if f.sessions[s.client] == s {
		delete(f.sessions, s.client)
	}
	f.mu.Unlock()
	s.conn.Close()
}
