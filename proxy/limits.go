package proxy

import (
	"net"
	"net/netip"
	"sync"

	"github.com/devhq/dev/cluster/api"
)

// perSourceListener caps the connections one source holds at once
// (api.SourceKey: an IPv4 address, or an IPv6 /64). A connection
// over the cap is closed as soon as it is accepted.
type perSourceListener struct {
	net.Listener
	max int

	mu   sync.Mutex
	open map[netip.Addr]int
}

func limitPerSource(ln net.Listener, max int) *perSourceListener {
	return &perSourceListener{Listener: ln, max: max, open: map[netip.Addr]int{}}
}

func (l *perSourceListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := api.SourceOf(c.RemoteAddr())
		l.mu.Lock()
		if l.open[src] >= l.max {
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.open[src]++
		l.mu.Unlock()
		return &sourceConn{Conn: c, release: func() { l.release(src) }}, nil
	}
}

func (l *perSourceListener) release(src netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[src]--; l.open[src] <= 0 {
		delete(l.open, src)
	}
}

// sourceConn gives its source's slot back when closed, once.
type sourceConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *sourceConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
