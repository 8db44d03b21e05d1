package gossip

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var testKey = DeriveKey("gossip test secret")

// testLogger shows warnings on stderr with -v, nothing otherwise.
func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.DiscardHandler)
}

// testNode is one Gossip running on loopback, with the events it delivered.
type testNode struct {
	name    string
	g       *Gossip
	cancel  context.CancelFunc
	done    chan error    // Run's result
	drained chan struct{} // the Events channel was closed

	mu     sync.Mutex
	events []Event
}

func testConfig(name string) Config {
	return Config{
		NodeName: name,
		BindAddr: "127.0.0.1",
		BindPort: AnyPort,
		Tags:     map[string]string{"role": "r-" + name},
		Key:      testKey,
		Fast:     true,
		Log:      testLogger(),
	}
}

// startNode runs a Gossip until the test ends and collects its events.
func startNode(t *testing.T, cfg Config) *testNode {
	t.Helper()
	g, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.NodeName, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &testNode{name: cfg.NodeName, g: g, cancel: cancel, done: make(chan error, 1), drained: make(chan struct{})}
	go func() { n.done <- g.Run(ctx) }()
	go func() {
		defer close(n.drained)
		for ev := range g.Events() {
			n.mu.Lock()
			n.events = append(n.events, ev)
			n.mu.Unlock()
		}
	}()
	t.Cleanup(func() { n.stop(t) })
	select {
	case <-g.Ready():
	case err := <-n.done:
		n.done <- err
		t.Fatalf("Run(%s) returned before ready: %v", cfg.NodeName, err)
	case <-time.After(5 * time.Second):
		t.Fatalf("%s not ready after 5s", cfg.NodeName)
	}
	return n
}

// stop cancels Run (no leave) and waits for it to return.
func (n *testNode) stop(t *testing.T) {
	t.Helper()
	n.cancel()
	select {
	case err := <-n.done:
		n.done <- err // keep it for a second stop
		if err != nil {
			t.Errorf("Run(%s): %v", n.name, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Run(%s) did not return 5s after cancel", n.name)
	}
	select {
	case <-n.drained:
	case <-time.After(time.Second):
		t.Fatalf("Events(%s) not closed after Run returned", n.name)
	}
}

func (n *testNode) addr() string {
	l := n.g.Local()
	return netip.AddrPortFrom(l.Addr, l.Port).String()
}

// eventIndex is the number of events seen so far: waitEvent(from) only
// looks at the ones after it.
func (n *testNode) eventIndex() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.events)
}

// waitEvent waits for an event of type typ about member name, delivered
// after the first from events, that satisfies ok (when not nil).
func (n *testNode) waitEvent(t *testing.T, from int, typ EventType, name string, within time.Duration, ok func(Member) bool) Member {
	t.Helper()
	var found Member
	eventually(t, within, func() error {
		n.mu.Lock()
		defer n.mu.Unlock()
		for _, ev := range n.events[from:] {
			if ev.Type != typ {
				continue
			}
			for _, m := range ev.Members {
				if m.Name == name && (ok == nil || ok(m)) {
					found = m
					return nil
				}
			}
		}
		return fmt.Errorf("%s: no %s event for %s among %d events", n.name, typ, name, len(n.events)-from)
	})
	return found
}

// member returns name as n sees it.
func (n *testNode) member(name string) (Member, bool) {
	for _, m := range n.g.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// eventually retries f every 20ms until it succeeds or within has passed.
func eventually(t *testing.T, within time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startCluster starts one node per name; all join through the first.
func startCluster(t *testing.T, names []string, mod func(*Config)) []*testNode {
	t.Helper()
	nodes := make([]*testNode, len(names))
	for i, name := range names {
		cfg := testConfig(name)
		if mod != nil {
			mod(&cfg)
		}
		nodes[i] = startNode(t, cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, n := range nodes[1:] {
		if got, err := n.g.Join(ctx, []string{nodes[0].addr()}); err != nil || got != 1 {
			t.Fatalf("%s: Join(%s) = %d, %v; want 1, nil", n.name, nodes[0].addr(), got, err)
		}
	}
	for _, n := range nodes {
		eventually(t, 5*time.Second, func() error {
			return wantStatuses(n, names, StatusAlive)
		})
	}
	return nodes
}

func wantStatuses(n *testNode, names []string, status string) error {
	ms := n.g.Members()
	var got []string
	for _, m := range ms {
		if m.Status == status {
			got = append(got, m.Name)
		}
	}
	if !slices.Equal(got, names) {
		return fmt.Errorf("%s sees %v %s, want %v", n.name, got, status, names)
	}
	return nil
}

func portFree(t *testing.T, addr string) error {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	l.Close()
	p, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	p.Close()
	return nil
}

func TestNew(t *testing.T) {
	ok := testConfig("a")
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string
	}{
		{name: "ok"},
		{name: "defaults", mod: func(c *Config) { c.BindAddr, c.BindPort, c.Tags, c.Log = "", 0, nil, nil }},
		{name: "no name", mod: func(c *Config) { c.NodeName = "" }, wantErr: "node name"},
		{name: "no key", mod: func(c *Config) { c.Key = nil }, wantErr: "key is 0 bytes"},
		{name: "short key", mod: func(c *Config) { c.Key = c.Key[:16] }, wantErr: "key is 16 bytes"},
		{name: "bad bind", mod: func(c *Config) { c.BindAddr = "localhost" }, wantErr: "bind address"},
		{name: "bad advertise", mod: func(c *Config) { c.AdvertiseAddr = "10.0.0" }, wantErr: "advertise address"},
		{name: "unspecified advertise", mod: func(c *Config) { c.AdvertiseAddr = "0.0.0.0" }, wantErr: "unspecified"},
		{name: "port range", mod: func(c *Config) { c.BindPort = 70000 }, wantErr: "bind port"},
		{name: "negative port", mod: func(c *Config) { c.BindPort = -2 }, wantErr: "bind port"},
		{name: "advertise port", mod: func(c *Config) { c.AdvertisePort = -1 }, wantErr: "advertise port"},
		{name: "reconnect timeout", mod: func(c *Config) { c.ReconnectTimeout = -time.Second }, wantErr: "reconnect timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			cfg.Tags = maps.Clone(ok.Tags)
			if tt.mod != nil {
				tt.mod(&cfg)
			}
			g, err := New(cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(): %v", err)
			}
			if got := g.Local(); got.Name != cfg.NodeName || got.Status != "" {
				t.Errorf("Local() before Run = %+v", got)
			}
		})
	}

	t.Run("defaults applied", func(t *testing.T) {
		g, err := New(Config{NodeName: "a", Key: testKey})
		if err != nil {
			t.Fatal(err)
		}
		if g.cfg.BindPort != DefaultPort || g.cfg.ReconnectTimeout != DefaultReconnectTimeout || g.cfg.AdvertiseAddr != "" {
			t.Errorf("defaults: port %d, reconnect %s, advertise %q", g.cfg.BindPort, g.cfg.ReconnectTimeout, g.cfg.AdvertiseAddr)
		}
		g, err = New(Config{NodeName: "a", Key: testKey, BindAddr: "10.99.0.11"})
		if err != nil {
			t.Fatal(err)
		}
		if g.cfg.AdvertiseAddr != "10.99.0.11" {
			t.Errorf("advertise address = %q, want the bind address", g.cfg.AdvertiseAddr)
		}
	})
}

func TestJoinAddr(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "10.99.0.11", want: "10.99.0.11:7946"},
		{in: " 10.99.0.11:8000 ", want: "10.99.0.11:8000"},
		{in: "::1", want: "[::1]:7946"},
		{in: "[::1]", want: "[::1]:7946"},
		{in: "[fe80::1]:9000", want: "[fe80::1]:9000"},
		{in: "::ffff:10.0.0.1", want: "10.0.0.1:7946"},
		{in: "node-2", want: "node-2:7946"},
		{in: "node-2.lan:9000", want: "node-2.lan:9000"},
		{in: "", wantErr: true},
		{in: "10.0.0.1:0", wantErr: true},
		{in: "10.0.0.1:99999", wantErr: true},
		{in: "host:port", wantErr: true},
		{in: ":7946", wantErr: true},
		{in: "a/b", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := joinAddr(tt.in, DefaultPort)
			if (err != nil) != tt.wantErr {
				t.Fatalf("joinAddr(%q) = %q, %v; wantErr %v", tt.in, got, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("joinAddr(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestEventTypeString(t *testing.T) {
	tests := []struct {
		typ  EventType
		want string
	}{
		{EventJoin, "join"}, {EventLeave, "leave"}, {EventFail, "fail"},
		{EventUpdate, "update"}, {EventReap, "reap"}, {0, "EventType(0)"},
	}
	for _, tt := range tests {
		if got := tt.typ.String(); got != tt.want {
			t.Errorf("EventType(%d).String() = %q, want %q", int(tt.typ), got, tt.want)
		}
	}
}

func TestParseLogLine(t *testing.T) {
	tests := []struct {
		line      string
		wantLevel slog.Level
		wantLib   string
		wantMsg   string
	}{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:1234\n", slog.LevelDebug, "memberlist", "Stream connection from=127.0.0.1:1234"},
		{"[INFO] serf: EventMemberJoin: a 127.0.0.1\n", slog.LevelDebug, "serf", "EventMemberJoin: a 127.0.0.1"},
		{"[WARN] memberlist: Was able to connect to b over TCP but UDP probes failed\n", slog.LevelWarn, "memberlist", "Was able to connect to b over TCP but UDP probes failed"},
		{"[ERR] memberlist: Failed push/pull merge: boom\n", slog.LevelWarn, "memberlist", "Failed push/pull merge: boom"},
		{"[ERR] Failed to shutdown transport: x\n", slog.LevelWarn, "", "Failed to shutdown transport: x"},
		{"[WARN] serf: Shutdown without a Leave\n", slog.LevelDebug, "serf", "Shutdown without a Leave"},
		{"no level at all", slog.LevelDebug, "", "no level at all"},
		{"[not a tag] x", slog.LevelDebug, "", "[not a tag] x"},
	}
	for _, tt := range tests {
		level, lib, msg := parseLogLine(tt.line)
		if level != tt.wantLevel || lib != tt.wantLib || msg != tt.wantMsg {
			t.Errorf("parseLogLine(%q) = %v, %q, %q; want %v, %q, %q", tt.line, level, lib, msg, tt.wantLevel, tt.wantLib, tt.wantMsg)
		}
	}
}

func TestDeriveKey(t *testing.T) {
	a, b := DeriveKey("secret"), DeriveKey("secret")
	if len(a) != KeySize || string(a) != string(b) {
		t.Fatalf("DeriveKey not a stable %d-byte key: %x %x", KeySize, a, b)
	}
	if string(DeriveKey("other")) == string(a) {
		t.Fatal("different secrets derive the same key")
	}
}

// TestMembership: three nodes join through the first, see each other alive
// with their tags, and a tag change spreads.
func TestMembership(t *testing.T) {
	t.Parallel()
	names := []string{"a", "b", "c"}
	nodes := startCluster(t, names, nil)

	for _, n := range nodes {
		for _, name := range names {
			n.waitEvent(t, 0, EventJoin, name, 2*time.Second, nil)
			m, _ := n.member(name)
			wantTags := map[string]string{"role": "r-" + name}
			if m.Addr != netip.MustParseAddr("127.0.0.1") || m.Port == 0 || !maps.Equal(m.Tags, wantTags) {
				t.Errorf("%s sees %+v, want 127.0.0.1, a port and tags %v", n.name, m, wantTags)
			}
		}
		if got := n.g.Local(); got.Name != n.name || got.Status != StatusAlive {
			t.Errorf("%s: Local() = %+v", n.name, got)
		}
	}

	from := []int{nodes[0].eventIndex(), nodes[1].eventIndex(), nodes[2].eventIndex()}
	newTags := map[string]string{"role": "r-c", "subnet": "10.213.3.0/24"}
	start := time.Now()
	if err := nodes[2].g.SetTags(newTags); err != nil {
		t.Fatalf("SetTags: %v", err)
	}
	for i, n := range nodes {
		m := n.waitEvent(t, from[i], EventUpdate, "c", 5*time.Second, func(m Member) bool { return maps.Equal(m.Tags, newTags) })
		if m.Status != StatusAlive {
			t.Errorf("%s: update for c has status %q", n.name, m.Status)
		}
		if got, _ := n.member("c"); !maps.Equal(got.Tags, newTags) {
			t.Errorf("%s: Members() has c tags %v, want %v", n.name, got.Tags, newTags)
		}
	}
	t.Logf("tag update seen everywhere after %s", time.Since(start).Round(time.Millisecond))
	if got := nodes[2].g.Local().Tags; !maps.Equal(got, newTags) {
		t.Errorf("Local().Tags = %v, want %v", got, newTags)
	}
}

// TestDeparture: a crash (Run cancelled) and a graceful Leave are reported
// differently, and the departed member is reaped after ReconnectTimeout.
func TestDeparture(t *testing.T) {
	t.Parallel()
	const reconnect = 2 * time.Second
	tests := []struct {
		name       string
		depart     func(t *testing.T, n *testNode)
		wantEvent  EventType
		wantStatus string
		within     time.Duration
	}{
		{
			name:       "crash",
			depart:     func(t *testing.T, n *testNode) { n.stop(t) },
			wantEvent:  EventFail,
			wantStatus: StatusFailed,
			within:     3 * time.Second,
		},
		{
			name: "leave",
			depart: func(t *testing.T, n *testNode) {
				start := time.Now()
				if err := n.g.Leave(); err != nil {
					t.Fatalf("Leave: %v", err)
				}
				t.Logf("Leave took %s", time.Since(start).Round(time.Millisecond))
				n.stop(t)
			},
			wantEvent:  EventLeave,
			wantStatus: StatusLeft,
			within:     3 * time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			nodes := startCluster(t, []string{"a", "b", "c"}, func(c *Config) { c.ReconnectTimeout = reconnect })
			from := []int{nodes[0].eventIndex(), nodes[1].eventIndex()}
			start := time.Now()
			tt.depart(t, nodes[2])
			for i, n := range nodes[:2] {
				m := n.waitEvent(t, from[i], tt.wantEvent, "c", tt.within, nil)
				if m.Status != tt.wantStatus {
					t.Errorf("%s: %s event has status %q, want %q", n.name, tt.wantEvent, m.Status, tt.wantStatus)
				}
				if got, _ := n.member("c"); got.Status != tt.wantStatus {
					t.Errorf("%s: Members() has c %q, want %q", n.name, got.Status, tt.wantStatus)
				}
				t.Logf("%s: %s of c seen after %s", n.name, tt.wantEvent, time.Since(start).Round(time.Millisecond))
			}
			for i, n := range nodes[:2] {
				n.waitEvent(t, from[i], EventReap, "c", reconnect+3*time.Second, nil)
				if err := wantStatuses(n, []string{"a", "b"}, StatusAlive); err != nil {
					t.Error(err)
				}
				if _, ok := n.member("c"); ok {
					t.Errorf("%s: c still a member after reap", n.name)
				}
			}
			t.Logf("c reaped after %s", time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestRejoinAfterCrash: a member that crashed and comes back with the same
// name and address is alive again; its stopped Run freed the port.
func TestRejoinAfterCrash(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, []string{"a", "b"}, nil)
	a, b := nodes[0], nodes[1]
	port, bAddr := b.g.Local().Port, b.addr()
	from := a.eventIndex()
	b.stop(t)
	if err := portFree(t, bAddr); err != nil {
		t.Fatalf("port of stopped node still taken: %v", err)
	}
	a.waitEvent(t, from, EventFail, "b", 3*time.Second, nil)

	from = a.eventIndex()
	cfg := testConfig("b")
	cfg.BindPort = int(port)
	b2 := startNode(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := b2.g.Join(ctx, []string{a.addr()}); err != nil {
		t.Fatalf("Join after restart: %v", err)
	}
	m := a.waitEvent(t, from, EventJoin, "b", 5*time.Second, nil)
	if m.Status != StatusAlive || m.Port != port {
		t.Errorf("rejoined b = %+v, want alive on port %d", m, port)
	}
	for _, n := range []*testNode{a, b2} {
		eventually(t, 5*time.Second, func() error { return wantStatuses(n, []string{"a", "b"}, StatusAlive) })
	}
}

// TestWrongKey: a node with another key cannot join.
func TestWrongKey(t *testing.T) {
	t.Parallel()
	a := startNode(t, testConfig("a"))
	cfg := testConfig("x")
	cfg.Key = DeriveKey("another secret")
	x := startNode(t, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := x.g.Join(ctx, []string{a.addr()})
	if err == nil || n != 0 {
		t.Fatalf("Join with the wrong key = %d, %v; want 0 and an error", n, err)
	}
	t.Logf("wrong key: %v", err)
	time.Sleep(500 * time.Millisecond) // give a stray message time to land
	for _, n := range []*testNode{a, x} {
		if err := wantStatuses(n, []string{n.name}, StatusAlive); err != nil {
			t.Error(err)
		}
		if got := len(n.g.Members()); got != 1 {
			t.Errorf("%s has %d members, want 1", n.name, got)
		}
	}
}

// recordHandler keeps the messages of the records at warn level or above.
type recordHandler struct {
	mu   sync.Mutex
	msgs []string
}

func (h *recordHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, r.Message)
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordHandler) has(sub string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.ContainsFunc(h.msgs, func(m string) bool { return strings.Contains(m, sub) })
}

// TestSlowConsumer: events wait for a slow consumer (with a warning) and
// none is dropped.
func TestSlowConsumer(t *testing.T) {
	t.Parallel()
	rec := &recordHandler{}
	cfg := testConfig("a")
	cfg.Log = slog.New(rec)
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g.events = make(chan Event) // no buffer: the first event already waits
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return")
		}
	}()
	<-g.Ready()

	b := startNode(t, testConfig("b"))
	jctx, jcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer jcancel()
	if _, err := b.g.Join(jctx, []string{netip.AddrPortFrom(g.Local().Addr, g.Local().Port).String()}); err != nil {
		t.Fatalf("Join: %v", err)
	}
	eventually(t, 3*time.Second, func() error {
		if !rec.has("consumer is slow") {
			return errors.New("no slow consumer warning")
		}
		return nil
	})
	var got []string
	for len(got) < 2 {
		select {
		case ev := <-g.Events():
			for _, m := range ev.Members {
				got = append(got, ev.Type.String()+" "+m.Name)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("events after the slow start: %v, want join a and join b", got)
		}
	}
	if want := []string{"join a", "join b"}; !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}

// TestRun: Run returns promptly after cancel, closes Events, frees its
// ports, and the methods then report ErrNotRunning.
func TestRun(t *testing.T) {
	t.Parallel()
	g, err := New(testConfig("a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Join(context.Background(), []string{"127.0.0.1"}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Join before Run: %v, want ErrNotRunning", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	select {
	case <-g.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("not ready")
	}
	local := g.Local()
	addr := netip.AddrPortFrom(local.Addr, local.Port).String()
	if local.Port == 0 || local.Status != StatusAlive {
		t.Fatalf("Local() = %+v", local)
	}
	if err := g.Run(ctx); err == nil {
		t.Error("second Run succeeded")
	}

	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return 5s after cancel")
	}
	t.Logf("Run returned %s after cancel", time.Since(start).Round(time.Millisecond))
	for range g.Events() { // drains what was buffered; ends because Run closed it
	}
	if err := portFree(t, addr); err != nil {
		t.Errorf("port still taken after Run returned: %v", err)
	}
	if err := g.SetTags(nil); !errors.Is(err, ErrNotRunning) {
		t.Errorf("SetTags after Run: %v, want ErrNotRunning", err)
	}
	if err := g.Leave(); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Leave after Run: %v, want ErrNotRunning", err)
	}
	if ms := g.Members(); len(ms) != 0 {
		t.Errorf("Members after Run = %v", ms)
	}
}

var _ io.Writer = (*logWriter)(nil)

// TestSetKey: members that set a new key go on talking with each other;
// a member left with the old key (one removed from the cluster) is cut off
// both ways, and asking the others for their keys by serf's key query
// right away, while it still counts them alive, gets it nothing of the
// new key (it would, were the old key kept as the one to send with). A member that missed the change sets the
// new key and joins again.
func TestSetKey(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, []string{"a", "b", "c"}, nil)
	a, b, c := nodes[0], nodes[1], nodes[2]
	newKey := DeriveKey("the next gossip key")
	from := []int{a.eventIndex(), b.eventIndex()}
	for _, n := range []*testNode{a, b} {
		if err := n.g.SetKey(newKey); err != nil {
			t.Fatalf("%s: SetKey: %v", n.name, err)
		}
		if keys := n.g.Keys(); len(keys) != 1 || !slices.Equal(keys[0], newKey) {
			t.Fatalf("%s: Keys() = %d keys, want only the new one", n.name, len(keys))
		}
	}
	s, err := c.g.running()
	if err != nil {
		t.Fatal(err)
	}
	res, _ := s.KeyManager().ListKeys() // errors for the members that did not answer
	if res == nil {
		t.Fatal("ListKeys on the member left with the old key returned nothing, not even its own answer")
	}
	for k := range res.Keys {
		if k == base64.StdEncoding.EncodeToString(newKey) {
			t.Fatalf("the member left with the old key read the new key from a key query (answers from %d members)", res.NumResp)
		}
	}
	t.Logf("key query from the member left with the old key: %d of %d members answered", res.NumResp, res.NumNodes)

	for i, n := range []*testNode{a, b} {
		n.waitEvent(t, from[i], EventFail, "c", 5*time.Second, nil)
		if err := wantStatuses(n, []string{"a", "b"}, StatusAlive); err != nil {
			t.Error(err)
		}
	}
	eventually(t, 5*time.Second, func() error { return wantStatuses(c, []string{"c"}, StatusAlive) })

	// A member that was down through the change: the old key alone does
	// not get it in; the new one does.
	d := startNode(t, testConfig("d"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if n, err := d.g.Join(ctx, []string{a.addr()}); err == nil || n != 0 {
		t.Fatalf("Join with the old key = %d, %v; want 0 and an error", n, err)
	}
	if err := d.g.SetKey(newKey); err != nil {
		t.Fatal(err)
	}
	if n, err := d.g.Join(ctx, []string{a.addr()}); err != nil || n != 1 {
		t.Fatalf("Join with the new key = %d, %v; want 1, nil", n, err)
	}
	eventually(t, 5*time.Second, func() error { return wantStatuses(a, []string{"a", "b", "d"}, StatusAlive) })

	if err := a.g.SetKey([]byte("short")); err == nil {
		t.Error("SetKey of a 5-byte key: no error")
	}
}
