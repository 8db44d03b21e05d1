package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ioTimeout bounds every blocking read or write in these tests.
const ioTimeout = 3 * time.Second

func newTestProxy(t *testing.T, opts Options) *Proxy {
	t.Helper()
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 500 * time.Millisecond
	}
	p := New(opts)
	t.Cleanup(p.shutdown)
	return p
}

// eventually retries f until it succeeds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// freePort returns ip:port with a port that was free a moment ago.
func freePort(t testing.TB, ip, proto string) netip.AddrPort {
	t.Helper()
	a := netip.MustParseAddr(ip)
	switch proto {
	case "tcp":
		ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).AddrPort()
	default:
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).AddrPort()
	}
}

// deadAddr returns a loopback address where nothing listens.
func deadAddr(t *testing.T) netip.AddrPort { return freePort(t, "127.0.0.1", "tcp") }

// tcpBackend serves a line protocol on 127.0.0.1: "count" reads to EOF and
// answers the byte count (half-close), anything else is echoed as "id: line".
func tcpBackend(t testing.TB, id string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					line = strings.TrimSuffix(line, "\n")
					if line == "count" {
						n, _ := io.Copy(io.Discard, r)
						fmt.Fprintf(c, "%s: %d\n", id, n)
						return
					}
					fmt.Fprintf(c, "%s: %s\n", id, line)
				}
			})
		}
	})
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// udpBackend answers each datagram with "id:" + payload.
func udpBackend(t *testing.T, id string) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { c.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			c.WriteToUDPAddrPort(append([]byte(id+":"), buf[:n]...), from)
		}
	}()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// tcpClient is one client connection through the proxy.
type tcpClient struct {
	c *net.TCPConn
	r *bufio.Reader
}

func dialTCP(t *testing.T, addr netip.AddrPort) (*tcpClient, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp4", addr.String(), ioTimeout)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return &tcpClient{c: c.(*net.TCPConn), r: bufio.NewReader(c)}, nil
}

// ask sends msg and returns which backend answered.
func (tc *tcpClient) ask(msg string) (string, error) {
	tc.c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := fmt.Fprintf(tc.c, "%s\n", msg); err != nil {
		return "", err
	}
	line, err := tc.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	id, got, ok := strings.Cut(strings.TrimSuffix(line, "\n"), ": ")
	if !ok || got != msg {
		return "", fmt.Errorf("unexpected answer %q to %q", line, msg)
	}
	return id, nil
}

// request opens a connection, asks once and closes.
func request(t *testing.T, addr netip.AddrPort) (string, error) {
	t.Helper()
	tc, err := dialTCP(t, addr)
	if err != nil {
		return "", err
	}
	defer tc.c.Close()
	return tc.ask("ping")
}

func mustRequest(t *testing.T, addr netip.AddrPort) string {
	t.Helper()
	id, err := request(t, addr)
	if err != nil {
		t.Fatalf("request via %s: %v", addr, err)
	}
	return id
}

func tcpService(listen netip.AddrPort, eps ...netip.AddrPort) Service {
	return Service{Name: "test/" + listen.String(), Listen: listen, Protocol: "tcp", Endpoints: eps}
}

func udpService(listen netip.AddrPort, eps ...netip.AddrPort) Service {
	return Service{Name: "test/" + listen.String(), Listen: listen, Protocol: "udp", Endpoints: eps}
}

func mustApply(t *testing.T, p *Proxy, svcs ...Service) {
	t.Helper()
	if err := p.Apply(svcs); err != nil {
		t.Fatalf("apply: %v", err)
	}
}

func TestTCPBalancing(t *testing.T) {
	tests := []struct {
		name      string
		endpoints []string // backend ids; "dead" is an address nothing listens on
		conns     int
		want      map[string]int // answers per backend; nil: every connection is refused
	}{
		{name: "round robin over three", endpoints: []string{"A", "B", "C"}, conns: 30, want: map[string]int{"A": 10, "B": 10, "C": 10}},
		{name: "dead endpoints skipped", endpoints: []string{"dead", "A", "dead", "B"}, conns: 8, want: map[string]int{"A": 4, "B": 4}},
		{name: "all dead", endpoints: []string{"dead", "dead"}, conns: 2},
		{name: "no endpoints", endpoints: nil, conns: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestProxy(t, Options{})
			var eps []netip.AddrPort
			for _, id := range tt.endpoints {
				if id == "dead" {
					eps = append(eps, deadAddr(t))
				} else {
					eps = append(eps, tcpBackend(t, id))
				}
			}
			listen := freePort(t, "127.0.0.2", "tcp")
			mustApply(t, p, tcpService(listen, eps...))

			got := map[string]int{}
			for range tt.conns {
				start := time.Now()
				id, err := request(t, listen)
				if tt.want == nil {
					if err == nil {
						t.Fatalf("request answered by %s, want connection closed", id)
					}
					if d := time.Since(start); d > time.Second {
						t.Fatalf("connection closed after %v, want promptly", d)
					}
					continue
				}
				if err != nil {
					t.Fatalf("request: %v", err)
				}
				got[id]++
			}
			if tt.want == nil {
				return
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("answers per backend = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTCPHalfClose(t *testing.T) {
	p := newTestProxy(t, Options{})
	listen := freePort(t, "127.0.0.2", "tcp")
	mustApply(t, p, tcpService(listen, tcpBackend(t, "A")))

	tc, err := dialTCP(t, listen)
	if err != nil {
		t.Fatal(err)
	}
	tc.c.SetDeadline(time.Now().Add(ioTimeout))
	payload := strings.Repeat("x", 1<<20)
	if _, err := io.WriteString(tc.c, "count\n"+payload); err != nil {
		t.Fatal(err)
	}
	// The backend answers only once it sees EOF: the proxy must pass the
	// half-close on and still carry the answer back.
	if err := tc.c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(tc.r)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("A: %d\n", len(payload)); string(rest) != want {
		t.Errorf("got %q, want %q", rest, want)
	}
}

func TestTCPUpdateEndpoints(t *testing.T) {
	p := newTestProxy(t, Options{})
	a, b := tcpBackend(t, "A"), tcpBackend(t, "B")
	listen := freePort(t, "127.0.0.2", "tcp")
	mustApply(t, p, tcpService(listen, a, b))

	toA, err := dialTCP(t, listen)
	if err != nil {
		t.Fatal(err)
	}
	toB, err := dialTCP(t, listen)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		tc   *tcpClient
		want string
	}{{toA, "A"}, {toB, "B"}} {
		if id, err := c.tc.ask("before"); err != nil || id != c.want {
			t.Fatalf("before update: answered by %q, %v; want %s", id, err, c.want)
		}
	}

	mustApply(t, p, tcpService(listen, a)) // B removed

	// Both established connections survive: the remaining endpoint's and,
	// like kube-proxy, the removed one's.
	for _, c := range []struct {
		tc   *tcpClient
		want string
	}{{toA, "A"}, {toB, "B"}} {
		if id, err := c.tc.ask("after"); err != nil || id != c.want {
			t.Fatalf("after update: answered by %q, %v; want %s", id, err, c.want)
		}
	}
	for i := range 6 {
		if id := mustRequest(t, listen); id != "A" {
			t.Fatalf("new connection %d went to %s after B was removed", i, id)
		}
	}
}

func TestTCPRemoveAndReaddFrontend(t *testing.T) {
	p := newTestProxy(t, Options{})
	a := tcpBackend(t, "A")
	keep, gone := freePort(t, "127.0.0.2", "tcp"), freePort(t, "127.0.0.3", "tcp")
	mustApply(t, p, tcpService(keep, a), tcpService(gone, a))
	mustRequest(t, gone)

	mustApply(t, p, tcpService(keep, a))
	if _, err := request(t, gone); err == nil {
		t.Fatal("removed frontend still answers")
	}
	mustRequest(t, keep)

	mustApply(t, p, tcpService(keep, a), tcpService(gone, a))
	mustRequest(t, gone)
}

func TestApplyIdempotent(t *testing.T) {
	p := newTestProxy(t, Options{})
	a, b, c := tcpBackend(t, "A"), tcpBackend(t, "B"), tcpBackend(t, "C")
	ua, ub := udpBackend(t, "A"), udpBackend(t, "B")
	tl, ul := freePort(t, "127.0.0.2", "tcp"), freePort(t, "127.0.0.2", "udp")
	desired := []Service{tcpService(tl, a, b, c), udpService(ul, ua, ub)}
	mustApply(t, p, desired...)

	held, err := dialTCP(t, tl)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := held.ask("1"); err != nil || id != "A" {
		t.Fatalf("first connection: %q, %v; want A", id, err)
	}
	uc := udpClient(t)
	if id := udpAsk(t, uc, ul, "1"); id != "A" {
		t.Fatalf("first udp session: %q; want A", id)
	}

	mustApply(t, p, desired...)
	mustApply(t, p, desired...)

	if id, err := held.ask("2"); err != nil || id != "A" {
		t.Fatalf("established connection after re-apply: %q, %v", id, err)
	}
	// The round-robin position survives: same frontend, not a new one.
	if id := mustRequest(t, tl); id != "B" {
		t.Fatalf("next connection went to %s, want B (frontend recreated?)", id)
	}
	// So does the UDP session.
	if id := udpAsk(t, uc, ul, "2"); id != "A" {
		t.Fatalf("udp session after re-apply answered by %s, want A", id)
	}
}

func TestApplyErrors(t *testing.T) {
	foreign, err := net.Listen("tcp4", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	defer foreign.Close()
	taken := foreign.Addr().(*net.TCPAddr).AddrPort()
	foreignUDP, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)})
	if err != nil {
		t.Fatal(err)
	}
	defer foreignUDP.Close()
	takenUDP := foreignUDP.LocalAddr().(*net.UDPAddr).AddrPort()

	ep := tcpBackend(t, "A")
	good := freePort(t, "127.0.0.4", "tcp")
	tests := []struct {
		name    string
		bad     Service
		wantErr string
	}{
		{name: "tcp port taken", bad: tcpService(taken, ep), wantErr: taken.String() + "/tcp"},
		{name: "udp port taken", bad: udpService(takenUDP, ep), wantErr: takenUDP.String() + "/udp"},
		{name: "unknown protocol", bad: Service{Name: "x", Listen: freePort(t, "127.0.0.4", "tcp"), Protocol: "sctp"}, wantErr: `unsupported protocol "sctp"`},
		{name: "no port", bad: tcpService(netip.MustParseAddrPort("127.0.0.4:0")), wantErr: "invalid listen address"},
		{name: "duplicate", bad: tcpService(good), wantErr: "already used"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestProxy(t, Options{})
			err := p.Apply([]Service{tcpService(good, ep), tt.bad})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("apply error = %v, want one containing %q", err, tt.wantErr)
			}
			// The other frontend is applied regardless.
			if id := mustRequest(t, good); id != "A" {
				t.Fatalf("good frontend answered by %s", id)
			}
		})
	}

	t.Run("retry after the port frees up", func(t *testing.T) {
		p := newTestProxy(t, Options{})
		ln, err := net.Listen("tcp4", "127.0.0.3:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().(*net.TCPAddr).AddrPort()
		if err := p.Apply([]Service{tcpService(addr, ep)}); err == nil {
			t.Fatal("apply succeeded on a taken port")
		}
		ln.Close()
		mustApply(t, p, tcpService(addr, ep))
		mustRequest(t, addr)
	})
}

func TestCheck(t *testing.T) {
	p := newTestProxy(t, Options{})
	foreign, err := net.Listen("tcp4", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	defer foreign.Close()
	foreignUDP, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)})
	if err != nil {
		t.Fatal(err)
	}
	defer foreignUDP.Close()
	takenTCP := foreign.Addr().(*net.TCPAddr).AddrPort()
	takenUDP := foreignUDP.LocalAddr().(*net.UDPAddr).AddrPort()
	servedTCP, servedUDP := freePort(t, "127.0.0.2", "tcp"), freePort(t, "127.0.0.2", "udp")
	mustApply(t, p, tcpService(servedTCP), udpService(servedUDP))

	tests := []struct {
		name    string
		addr    netip.AddrPort
		proto   string
		wantErr bool
	}{
		{name: "free tcp", addr: freePort(t, "127.0.0.4", "tcp"), proto: "tcp"},
		{name: "free udp", addr: freePort(t, "127.0.0.4", "udp"), proto: "udp"},
		{name: "foreign tcp", addr: takenTCP, proto: "tcp", wantErr: true},
		{name: "foreign udp", addr: takenUDP, proto: "udp", wantErr: true},
		{name: "served tcp", addr: servedTCP, proto: "tcp"},
		{name: "served udp", addr: servedUDP, proto: "udp"},
		{name: "bad protocol", addr: servedTCP, proto: "icmp", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.Check(tt.addr, tt.proto)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Check(%s, %s) = %v, wantErr %v", tt.addr, tt.proto, err, tt.wantErr)
			}
			if err != nil && tt.proto != "icmp" && !strings.Contains(err.Error(), tt.addr.String()) {
				t.Errorf("error %q does not name %s", err, tt.addr)
			}
		})
	}
}

func udpClient(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// udpAsk sends msg to the frontend from c and returns the id of the backend
// that answered, checking that the answer comes from the frontend address.
func udpAsk(t *testing.T, c *net.UDPConn, frontend netip.AddrPort, msg string) string {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort([]byte(msg), frontend); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	buf := make([]byte, 2048)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("udp answer to %q: %v", msg, err)
	}
	if from != frontend {
		t.Fatalf("udp answer came from %s, want the frontend %s", from, frontend)
	}
	id, got, ok := strings.Cut(string(buf[:n]), ":")
	if !ok || got != msg {
		t.Fatalf("unexpected udp answer %q to %q", buf[:n], msg)
	}
	return id
}

func (p *Proxy) udpSessions(listen netip.AddrPort) int {
	p.mu.Lock()
	f := p.frontends[frontendKey{listen, "udp"}].(*udpFrontend)
	p.mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sessions)
}

func TestUDPRoundRobin(t *testing.T) {
	p := newTestProxy(t, Options{})
	listen := freePort(t, "127.0.0.5", "udp")
	mustApply(t, p, udpService(listen, udpBackend(t, "A"), udpBackend(t, "B")))

	clients := []*net.UDPConn{udpClient(t), udpClient(t), udpClient(t), udpClient(t)}
	var got []string
	for _, c := range clients {
		got = append(got, udpAsk(t, c, listen, "hi"))
	}
	if want := []string{"A", "B", "A", "B"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("clients answered by %v, want %v", got, want)
	}
	// Each client sticks to its session's backend.
	for i, c := range clients {
		for j := range 3 {
			if id := udpAsk(t, c, listen, strconv.Itoa(j)); id != got[i] {
				t.Fatalf("client %d moved from %s to %s", i, got[i], id)
			}
		}
	}
	if n := p.udpSessions(listen); n != len(clients) {
		t.Errorf("%d sessions, want %d", n, len(clients))
	}
}

func TestUDPSessionExpiry(t *testing.T) {
	idle := 150 * time.Millisecond
	p := newTestProxy(t, Options{UDPIdleTimeout: idle})
	listen := freePort(t, "127.0.0.5", "udp")
	mustApply(t, p, udpService(listen, udpBackend(t, "A"), udpBackend(t, "B")))

	c := udpClient(t)
	// Traffic more often than the idle timeout keeps the session.
	for i := range 5 {
		if id := udpAsk(t, c, listen, strconv.Itoa(i)); id != "A" {
			t.Fatalf("datagram %d answered by %s, want A", i, id)
		}
		time.Sleep(idle / 3)
	}
	eventually(t, 5*idle+time.Second, func() error {
		if n := p.udpSessions(listen); n != 0 {
			return fmt.Errorf("%d sessions left", n)
		}
		return nil
	})
	// A new session takes the next backend.
	if id := udpAsk(t, c, listen, "again"); id != "B" {
		t.Fatalf("after expiry answered by %s, want B", id)
	}
}

func TestUDPEndpointRemoved(t *testing.T) {
	p := newTestProxy(t, Options{})
	a, b := udpBackend(t, "A"), udpBackend(t, "B")
	listen := freePort(t, "127.0.0.5", "udp")
	mustApply(t, p, udpService(listen, a, b))

	onA, onB := udpClient(t), udpClient(t)
	if id := udpAsk(t, onA, listen, "1"); id != "A" {
		t.Fatalf("got %s, want A", id)
	}
	if id := udpAsk(t, onB, listen, "1"); id != "B" {
		t.Fatalf("got %s, want B", id)
	}
	mustApply(t, p, udpService(listen, b)) // A removed: its session is dropped
	if n := p.udpSessions(listen); n != 1 {
		t.Fatalf("%d sessions after removing A, want 1", n)
	}
	for _, c := range []*net.UDPConn{onA, onB} {
		if id := udpAsk(t, c, listen, "2"); id != "B" {
			t.Fatalf("after removing A answered by %s, want B", id)
		}
	}
	// No endpoints: datagrams are dropped, nothing answers.
	mustApply(t, p, udpService(listen))
	onA.WriteToUDPAddrPort([]byte("3"), listen)
	onA.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, _, err := onA.ReadFromUDPAddrPort(make([]byte, 64)); !errors.Is(err, net.ErrClosed) && !isTimeout(err) {
		t.Fatalf("read with no endpoints: %v, want a timeout", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// fakeSource is a Source whose services the test sets; Changed uses the
// close-and-replace broadcast pattern of the node's discovery.
type fakeSource struct {
	mu      sync.Mutex
	svcs    []Service
	changed chan struct{}
}

func newFakeSource(svcs ...Service) *fakeSource {
	return &fakeSource{svcs: svcs, changed: make(chan struct{})}
}

func (s *fakeSource) Services() []Service {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.svcs
}

func (s *fakeSource) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func (s *fakeSource) set(svcs ...Service) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.svcs = svcs
	close(s.changed)
	s.changed = make(chan struct{})
}

var _ Source = (*fakeSource)(nil)

func TestRun(t *testing.T) {
	p := newTestProxy(t, Options{})
	a := tcpBackend(t, "A")
	first, second := freePort(t, "127.0.0.6", "tcp"), freePort(t, "127.0.0.7", "tcp")
	src := newFakeSource(tcpService(first, a))

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, src) }()

	eventually(t, 2*time.Second, func() error { _, err := request(t, first); return err })
	held, err := dialTCP(t, first)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := held.ask("held"); err != nil {
		t.Fatal(err)
	}

	src.set(tcpService(first, a), tcpService(second, a))
	eventually(t, 2*time.Second, func() error { _, err := request(t, second); return err })

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	for _, addr := range []netip.AddrPort{first, second} {
		if _, err := request(t, addr); err == nil {
			t.Errorf("%s still answers after Run returned", addr)
		}
	}
	if _, err := held.ask("after"); err == nil {
		t.Error("established connection survived Run returning")
	}
	if err := p.Apply([]Service{tcpService(first, a)}); err == nil {
		t.Error("Apply on a stopped proxy succeeded")
	}
}

func TestRunResyncRetriesFailedBind(t *testing.T) {
	p := newTestProxy(t, Options{})
	p.resync = 50 * time.Millisecond
	a := tcpBackend(t, "A")
	ln, err := net.Listen("tcp4", "127.0.0.6:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, newFakeSource(tcpService(addr, a))) }()
	defer func() { cancel(); <-done }()

	time.Sleep(100 * time.Millisecond) // a resync or two fail
	ln.Close()
	eventually(t, 2*time.Second, func() error {
		id, err := request(t, addr)
		if err == nil && id != "A" {
			return fmt.Errorf("answered by %s", id)
		}
		return err
	})
}
