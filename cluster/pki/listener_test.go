package pki

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
)

// closedSoon reports whether the server closes c within d (a read ends
// rather than times out).
func closedSoon(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

// TestHandshakeListener: Accept yields only connections whose handshake
// passed the certificate checks; one address holds at most MaxPerIP
// connections and gets its share back as they close; handshakes beyond
// MaxPending are refused at once; a silent one is closed at the deadline.
func TestHandshakeListener(t *testing.T) {
	ca := newTestCA(t, "c1")
	node := issue(t, ca, "n1", RoleNode, time.Time{}, time.Time{})
	admin := issue(t, ca, "me", RoleAdmin, time.Time{}, time.Time{})
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := NewHandshakeListener(tcp, node.NodeServerTLS(), HandshakeLimits{Timeout: time.Second, MaxPending: 4, MaxPerIP: 3}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer ln.Close()
	addr := ln.Addr().String()
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	from := func(ip string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	// A node's handshake is accepted; an admin's (wrong role) is not.
	good := tls.Client(from("127.0.0.1"), node.ClientTLS())
	if err := good.Handshake(); err != nil {
		t.Fatalf("node handshake: %v", err)
	}
	select {
	case c := <-accepted:
		defer c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the node's connection was not accepted")
	}
	bad := tls.Client(from("127.0.0.1"), insecureWithCert(admin))
	if err := bad.Handshake(); err == nil {
		if _, err := bad.Read(make([]byte, 1)); err == nil {
			t.Error("an admin certificate got through a node-only listener")
		}
	}
	select {
	case c := <-accepted:
		t.Errorf("accepted %v with an admin certificate", c.RemoteAddr())
	case <-time.After(200 * time.Millisecond):
	}

	// 127.0.0.2 may hold 3: the 4th is closed at once.
	var held []net.Conn
	for range 3 {
		held = append(held, from("127.0.0.2"))
	}
	if c := from("127.0.0.2"); !closedSoon(c, 500*time.Millisecond) {
		t.Error("a 4th connection from one address was kept")
	}
	// 4 handshakes in flight at most: one more, from elsewhere, goes.
	other := from("127.0.0.3")
	if c := from("127.0.0.4"); !closedSoon(c, 500*time.Millisecond) {
		t.Error("a 5th pending handshake was kept")
	}
	// Silent ones are closed at the deadline, which frees their shares.
	for _, c := range append(held, other) {
		if !closedSoon(c, 3*time.Second) {
			t.Fatal("a silent connection outlived the handshake deadline")
		}
	}
	eventually := time.Now().Add(3 * time.Second)
	for {
		ln.mu.Lock()
		n := ln.perIP[netipOf(t, "127.0.0.2")]
		ln.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(eventually) {
			t.Fatalf("127.0.0.2 still holds %d after its connections closed", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if c := tls.Client(from("127.0.0.2"), node.ClientTLS()); c.Handshake() != nil {
		t.Error("127.0.0.2 did not get its share back")
	}
}

func netipOf(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestCloseRevoked: a revocation ends the connections its certificates
// opened before it, and leaves the others open.
func TestCloseRevoked(t *testing.T) {
	ca := newTestCA(t, "c1")
	server := issue(t, ca, "n1", RoleNode, time.Time{}, time.Time{})
	peers := map[string]*Identity{
		"n2": issue(t, ca, "n2", RoleNode, time.Time{}, time.Time{}),
		"n3": issue(t, ca, "n3", RoleNode, time.Time{}, time.Time{}),
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := NewHandshakeListener(tcp, server.NodeServerTLS(), HandshakeLimits{}, slog.New(slog.DiscardHandler))
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	conns := map[string]*tls.Conn{}
	for name, id := range peers {
		c, err := tls.Dial("tcp", ln.Addr().String(), id.ClientTLS())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// TLS 1.3: the server's verdict comes with its first flight after
		// the handshake; wait until it accepted the connection.
		deadline := time.Now().Add(5 * time.Second)
		for {
			ln.mu.Lock()
			n := len(ln.open)
			ln.mu.Unlock()
			if n == len(conns)+1 || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		conns[name] = c
	}
	revokeN2 := RevokedFunc(func(kind, name string, _ time.Time) bool { return name == "n2" })
	if n := ln.CloseRevoked(revokeN2); n != 1 {
		t.Fatalf("CloseRevoked closed %d connections, want 1 (n2's)", n)
	}
	if !closedSoon(conns["n2"], 2*time.Second) {
		t.Error("n2's connection is still open after its revocation")
	}
	ln.mu.Lock()
	left := len(ln.open)
	ln.mu.Unlock()
	if left != 1 {
		t.Errorf("the listener tracks %d open connections, want 1", left)
	}
}

func TestSourceKey(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"10.0.0.7", "10.0.0.7"},
		{"::ffff:10.0.0.7", "10.0.0.7"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::"},
		{"2001:db8:1:3::1", "2001:db8:1:3::"},
	} {
		if got := api.SourceKey(netip.MustParseAddr(tt.in)); got != netip.MustParseAddr(tt.want) {
			t.Errorf("api.SourceKey(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
