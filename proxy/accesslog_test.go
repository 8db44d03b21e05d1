package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
)

func accessPaths(es []api.IngressAccess) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Path)
	}
	return out
}

// TestAccessLog: the ring keeps the last entries, in order, reads after a
// cursor (a cursor of a log of the past reads everything), keeps a tail,
// filters, and waits for a new entry.
func TestAccessLog(t *testing.T) {
	l := NewAccessLog(3)
	ctx := context.Background()
	_, base := l.Read(ctx, 0, -1, 0, nil)
	for i := range 5 {
		l.Add(api.IngressAccess{Path: fmt.Sprintf("/%d", i), Service: []string{"web", "api"}[i%2]})
	}
	l.Add(api.IngressAccess{Path: "/" + strings.Repeat("x", 2*api.MaxAccessPath)})
	tests := []struct {
		name     string
		after    uint64
		tail     int
		match    func(*api.IngressAccess) bool
		want     []string
		wantLast uint64
	}{
		{name: "the last three", after: 0, tail: -1, want: []string{"/3", "/4", "/" + strings.Repeat("x", api.MaxAccessPath-1)}},
		{name: "after a cursor", after: base + 4, tail: -1, want: []string{"/4", "/" + strings.Repeat("x", api.MaxAccessPath-1)}},
		{name: "a cursor from a log of the past", after: base + 100, tail: -1, want: []string{"/3", "/4", "/" + strings.Repeat("x", api.MaxAccessPath-1)}},
		{name: "tail", after: 0, tail: 1, want: []string{"/" + strings.Repeat("x", api.MaxAccessPath-1)}},
		{name: "filtered", after: 0, tail: -1, match: func(e *api.IngressAccess) bool { return e.Service == "web" }, want: []string{"/4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, last := l.Read(ctx, tt.after, tt.tail, 0, tt.match)
			if !slices.Equal(accessPaths(got), tt.want) || last != base+6 {
				t.Errorf("got %q, last %d; want %q, %d", accessPaths(got), last-base, tt.want, 6)
			}
		})
	}
	t.Run("wait", func(t *testing.T) {
		if got, last := l.Read(ctx, base+6, -1, 10*time.Millisecond, nil); len(got) != 0 || last != base+6 {
			t.Errorf("nothing new: %q, last %d", accessPaths(got), last-base)
		}
		done := make(chan []api.IngressAccess)
		go func() {
			got, _ := l.Read(ctx, base+6, -1, time.Minute, func(e *api.IngressAccess) bool { return e.Service == "api" })
			done <- got
		}()
		l.Add(api.IngressAccess{Path: "/web", Service: "web"})
		l.Add(api.IngressAccess{Path: "/api", Service: "api"})
		if got := <-done; !slices.Equal(accessPaths(got), []string{"/api"}) {
			t.Errorf("waited for %q, want /api", accessPaths(got))
		}
	})
}

// TestIngressObserve: Observe is told of every request for a route, the
// pod it went to, the status, the body's size and the client, a 503 of a
// route without a ready pod too; a request for no route is not.
func TestIngressObserve(t *testing.T) {
	port := freePort(t)
	backend(t, "127.0.0.1:"+strconv.Itoa(int(port)), "web")
	pod := netip.MustParseAddr("127.0.0.1")
	src := newStaticRoutes(
		Route{Host: "web.test", Path: "/", Service: "shop/web", Port: port, Backends: []netip.Addr{pod}},
		Route{Host: "down.test", Path: "/", Service: "shop/down", Port: port},
	)
	var (
		mu  sync.Mutex
		got []Access
	)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	in := NewIngress(IngressConfig{Listener: ln, Source: src, Log: slog.New(slog.DiscardHandler), Observe: func(a *Access) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, *a)
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	addr := ln.Addr().String()

	waitFor(t, func() bool { code, _ := get(t, addr, "web.test", "/warm"); return code == 200 })
	mu.Lock()
	got = nil
	mu.Unlock()
	_, body := get(t, addr, "web.test", "/hello")
	get(t, addr, "down.test", "/x")
	get(t, addr, "nothere.test", "/")
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("observed %d requests, want 2 (the routed ones): %+v", len(got), got)
	}
	a := got[0]
	if a.Route.Service != "shop/web" || a.Status != 200 || a.Bytes != int64(len(body)) || a.Pod != pod ||
		a.Client != "127.0.0.1" || a.Method != "GET" || a.Path != "/hello" || a.Proto != "HTTP/1.1" || a.Took <= 0 {
		t.Errorf("observed %+v, want 200 of %d bytes from pod %s for 127.0.0.1's GET /hello", a, len(body), pod)
	}
	if b := got[1]; b.Route.Service != "shop/down" || b.Status != 503 || b.Pod.IsValid() {
		t.Errorf("observed %+v, want a 503 that went to no pod", b)
	}
}

// waitFor polls cond until it holds (5 s at most): the router's routes
// are set just after Run starts.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
