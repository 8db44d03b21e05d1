package proxy

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"
)

type tcpFrontend struct {
	p    *Proxy
	key  frontendKey
	ln   *net.TCPListener
	set  atomic.Pointer[backendSet]
	next atomic.Uint64 // round-robin counter
	done chan struct{} // closed by close
	log  *slog.Logger
}

var _ frontend = (*tcpFrontend)(nil)

func (p *Proxy) openTCP(k frontendKey, s Service) (*tcpFrontend, error) {
	// Go sets SO_REUSEADDR on TCP listeners, so a frontend closed a moment
	// ago (its connections in TIME_WAIT) can be bound again at once.
	lc := net.ListenConfig{KeepAliveConfig: keepAlive(), Control: reusePort} // keep-alive applies to accepted conns
	ln, err := lc.Listen(p.ctx, k.network(), k.addr.String())
	if err != nil {
		return nil, err
	}
	f := &tcpFrontend{
		p:    p,
		key:  k,
		ln:   ln.(*net.TCPListener),
		done: make(chan struct{}),
		log:  p.log.With("listen", k.String()),
	}
	f.set.Store(newBackendSet(s.Name, s.Endpoints))
	p.wg.Go(f.serve)
	return f, nil
}

func (f *tcpFrontend) update(name string, eps []netip.AddrPort) {
	if f.set.Load().equal(name, eps) {
		return
	}
	f.set.Store(newBackendSet(name, eps))
	f.log.Debug("endpoints updated", "frontend", name, "endpoints", len(eps))
}

func (f *tcpFrontend) close() {
	close(f.done)
	f.ln.Close()
}

// serve accepts until the listener is closed, backing off on other errors
// (EMFILE and friends) rather than spinning or giving up.
func (f *tcpFrontend) serve() {
	var delay time.Duration
	for {
		c, err := f.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			delay = acceptBackoff(delay)
			f.log.Warn("accept failed; retrying", "frontend", f.set.Load().name, "err", err, "delay", delay)
			if !pause(f.done, delay) {
				return
			}
			continue
		}
		delay = 0
		f.p.wg.Go(func() { f.handle(c) })
	}
}

// handle proxies one client connection to one endpoint.
func (f *tcpFrontend) handle(client *net.TCPConn) {
	backend := f.dial()
	if backend == nil {
		// Refuse as loudly as TCP allows: an RST rather than a clean EOF.
		client.SetLinger(0)
		client.Close()
		return
	}
	if !f.p.track(client, backend) {
		client.Close()
		backend.Close()
		return
	}
	defer f.p.untrack(client, backend)
	splice(client, backend)
}

// dial connects to the next endpoint round-robin, trying each endpoint at
// most once. It returns nil if there is none or none answers.
func (f *tcpFrontend) dial() *net.TCPConn {
	set := f.set.Load()
	n := uint64(len(set.eps))
	if n == 0 {
		f.log.Debug("no endpoints; connection refused", "frontend", set.name)
		return nil
	}
	start := f.next.Add(1) - 1
	var lastErr error
	for i := range n {
		ep := set.eps[(start+i)%n]
		c, err := f.p.dialer.DialTCP(f.p.ctx, "tcp", netip.AddrPort{}, ep)
		if err == nil {
			return c
		}
		if f.p.ctx.Err() != nil {
			return nil // shutting down
		}
		lastErr = err
		f.log.Debug("dial endpoint failed", "frontend", set.name, "endpoint", ep, "err", err)
	}
	f.log.Warn("no endpoint answered; connection refused", "frontend", set.name, "endpoints", n, "err", lastErr)
	return nil
}

// splice copies both directions until both are done. TCPConn.ReadFrom with a
// TCPConn source uses splice(2) on Linux, so payload stays in the kernel.
// When one side finishes cleanly its write half to the other is shut
// (CloseWrite) so half-closed protocols work; an error aborts both.
func splice(client, backend *net.TCPConn) {
	done := make(chan struct{})
	go func() {
		pipe(backend, client)
		close(done)
	}()
	pipe(client, backend)
	<-done
	client.Close()
	backend.Close()
}

func pipe(dst, src *net.TCPConn) {
	if _, err := dst.ReadFrom(src); err != nil {
		// A reset or a write failure: tear both down so the other
		// direction does not wait forever.
		dst.Close()
		src.Close()
		return
	}
	dst.CloseWrite()
}
