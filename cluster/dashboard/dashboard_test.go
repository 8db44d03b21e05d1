package dashboard

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// fakeSource is a cluster in memory; its index lives in a real state.Store
// (the watch mechanism the agent uses), moved when the test says.
type fakeSource struct {
	mu     sync.Mutex
	snap   Snapshot
	events []api.Event
	st     *state.Store
}

func newFake() *fakeSource {
	st := state.New()
	_ = st.Update(10, func(*state.Txn) error { return nil })
	return &fakeSource{st: st, snap: Snapshot{
		Index: 10, Node: "h1", Leader: "h1",
		Nodes: []api.Node{
			{Name: "h1", Status: api.NodeReady, Role: "leader", Address: "10.99.0.11", PodSubnet: "10.213.1.0/24",
				Load: 0.5, Allocatable: api.ResourceAmounts{NanoCPUs: 2e9}, Pods: 1},
			{Name: "h2", Status: api.NodeDown, Role: "voter", Address: "10.99.0.12", PodSubnet: "10.213.2.0/24"},
		},
		Services: []api.ServiceInfo{{Project: "shop", Name: "web", VIP: "10.214.0.2",
			Ports: []api.PortSpec{{Target: 80, Protocol: "tcp"}}, Published: []api.PortSpec{{Target: 80, Published: 8080, Protocol: "tcp"}},
			Desired: 2, Ready: 1}},
		Pods: []api.Pod{
			{Name: "shop-web-1", Project: "shop", Service: "web", Index: 1, Node: "h1",
				Status: api.PodStatus{State: api.PodRunning, IP: "10.213.1.2", Sidecars: []api.ContainerStatus{
					{Name: "logs", State: api.PodExited, ExitCode: 1, Restarts: 3}}}},
			{Name: "shop-web-2", Project: "shop", Service: "web", Index: 2,
				Status: api.PodStatus{Message: "no node has 4 CPUs free"}},
		},
	}}
}

func (f *fakeSource) Snapshot() Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snap
}

func (f *fakeSource) WaitIndex(ctx context.Context, after uint64) uint64 {
	return f.st.WaitIndex(ctx, after)
}

func (f *fakeSource) Events(after uint64) api.EventList {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.Event
	for _, e := range f.events {
		if e.Index > after {
			out = append(out, e)
		}
	}
	return api.EventList{Index: f.snap.Index, Events: out}
}

func (f *fakeSource) update(fn func(s *Snapshot, ev *[]api.Event)) {
	f.mu.Lock()
	fn(&f.snap, &f.events)
	f.snap.Index++
	idx := f.snap.Index
	f.mu.Unlock()
	_ = f.st.Update(idx, func(*state.Txn) error { return nil })
}

// apiRecorder stands in for the agent API behind /api/.
type apiRecorder struct {
	mu    sync.Mutex
	paths []string
}

func (a *apiRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.paths = append(a.paths, r.URL.Path)
	a.mu.Unlock()
	io.WriteString(w, "api:"+r.URL.Path)
}

func newTestServer(t *testing.T, src Source, apiH http.Handler) (*httptest.Server, *http.Client) {
	t.Helper()
	d, err := New(src, Options{Token: "s3cret", API: apiH})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(d.Handler())
	t.Cleanup(ts.Close)
	jar, _ := cookiejar.New(nil)
	return ts, &http.Client{Jar: jar, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestLogin(t *testing.T) {
	ts, c := newTestServer(t, newFake(), &apiRecorder{})
	tests := []struct {
		name     string
		path     string
		wantCode int
	}{
		{"no token", "/", http.StatusUnauthorized},
		{"wrong token", "/?token=nope", http.StatusUnauthorized},
		{"live without login", "/live", http.StatusUnauthorized},
		{"api without login", "/api/v1/nodes", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body, _ := get(t, c, ts.URL+tt.path)
			if code != tt.wantCode {
				t.Fatalf("GET %s = %d, want %d\n%s", tt.path, code, tt.wantCode, body)
			}
			if !strings.Contains(body, "dev dashboard") {
				t.Errorf("401 body does not say what to do: %q", body)
			}
		})
	}
	// The login link sets the cookie and drops the token from the address.
	code, body, h := get(t, c, ts.URL+"/?token=s3cret")
	if code != http.StatusOK {
		t.Fatalf("login: %d\n%s", code, body)
	}
	if !strings.Contains(body, `data-node="h1"`) {
		t.Fatalf("page after login does not list node h1:\n%s", body)
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("CSP = %q", csp)
	}
	if code, _, _ := get(t, c, ts.URL+"/live"); code != http.StatusOK {
		t.Errorf("live with cookie = %d", code)
	}
}

func TestPageRendersCluster(t *testing.T) {
	ts, c := newTestServer(t, newFake(), &apiRecorder{})
	_, body, _ := get(t, c, ts.URL+"/?token=s3cret")
	for _, want := range []string{
		`data-node="h1" data-status="ready"`,
		`data-node="h2" data-status="down"`,
		"10.213.1.0/24", // pod subnet
		"leader",
		`data-service="shop/web" data-ready="1" data-desired="2"`,
		"10.214.0.2", "8080:80",
		`data-column="h1"`,
		`data-pod="shop-web-1"`,
		"running · 1/2 · 10.213.1.2", // READY: web runs, its sidecar does not
		// Each container of a pod with sidecars, its logs a click away.
		`<span class="ctr running" data-container="web" title="logs of web">web <i>running</i></span>`,
		`<span class="ctr exited" data-container="logs" title="logs of logs">logs <i>exited · 3 restarts</i></span>`,
		`data-column="not placed"`, // the unscheduled pod
		`data-pod="shop-web-2"`,
		"no events since this agent started",
		`<script src="/static/app.js"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	code, js, _ := get(t, c, ts.URL+"/static/app.js")
	if code != http.StatusOK || !strings.Contains(js, "/live?index=") || !strings.Contains(js, "&container=") {
		t.Errorf("app.js: %d, watches /live: %v", code, strings.Contains(js, "/live?index="))
	}
}

func TestLiveBlocksUntilChange(t *testing.T) {
	src := newFake()
	ts, c := newTestServer(t, src, &apiRecorder{})
	get(t, c, ts.URL+"/?token=s3cret")

	type result struct {
		up  liveUpdate
		err error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := c.Get(ts.URL + "/live?index=10&wait=20s")
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		var up liveUpdate
		done <- result{up: up, err: json.NewDecoder(resp.Body).Decode(&up)}
	}()
	select {
	case r := <-done:
		t.Fatalf("live answered before any change: %+v %v", r.up.Index, r.err)
	case <-time.After(300 * time.Millisecond):
	}
	src.update(func(s *Snapshot, ev *[]api.Event) {
		s.Services[0].Desired, s.Services[0].Ready = 3, 3
		*ev = append(*ev, api.Event{Index: 11, Reason: api.EventScaled, Kind: "service", Name: "shop/web",
			Message: "scaled shop/web from 2 to 3", Time: time.Now()})
	})
	var r result
	select {
	case r = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("live did not answer after the change")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.up.Index != 11 {
		t.Errorf("index = %d, want 11", r.up.Index)
	}
	for _, name := range sections {
		if _, ok := r.up.Sections[name]; !ok {
			t.Errorf("section %s missing", name)
		}
	}
	if s := r.up.Sections["services"]; !strings.Contains(s, `data-ready="3" data-desired="3"`) {
		t.Errorf("services section not updated:\n%s", s)
	}
	if s := r.up.Sections["events"]; !strings.Contains(s, "scaled shop/web from 2 to 3") {
		t.Errorf("events section lacks the event:\n%s", s)
	}
}

func TestAPIPassThrough(t *testing.T) {
	rec := &apiRecorder{}
	ts, c := newTestServer(t, newFake(), rec)
	get(t, c, ts.URL+"/?token=s3cret")
	tests := []struct {
		name     string
		path     string
		wantCode int
		wantBody string
	}{
		{"pod logs", "/api/v1/pods/shop-web-1/logs?follow=1", http.StatusOK, "api:/v1/pods/shop-web-1/logs"},
		{"watch", "/api/v1/pods?index=3&wait=1s", http.StatusOK, "api:/v1/pods"},
		{"token is not for the browser", "/api/v1/token", http.StatusNotFound, ""},
		{"internal routes are not either", "/api/v1/internal/image", http.StatusNotFound, ""},
		{"no path tricks", "/api/v1/pods/../token", http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body, _ := get(t, c, ts.URL+tt.path)
			if code != tt.wantCode || !strings.Contains(body, tt.wantBody) {
				t.Fatalf("GET %s = %d %q, want %d %q", tt.path, code, body, tt.wantCode, tt.wantBody)
			}
		})
	}
	resp, err := c.Post(ts.URL+"/api/v1/pods", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST through the dashboard = %d, want 405", resp.StatusCode)
	}
	for _, p := range rec.paths {
		if strings.Contains(p, "token") || strings.Contains(p, "internal") {
			t.Errorf("API saw %s", p)
		}
	}
}

func TestListen(t *testing.T) {
	tests := []struct {
		name    string
		addr    string
		wantErr string
	}{
		{"loopback http", "127.0.0.1:0", ""},
		{"not loopback needs tls", "0.0.0.0:0", "no TLS certificate"},
		{"bad address", "7949", "want host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := Listen(tt.addr, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Listen = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			d, err := New(newFake(), Options{Listener: ln, Token: "t"})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- d.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-errc; err != nil {
					t.Errorf("Run: %v", err)
				}
			}()
			info, err := d.Info()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(info.URL, "http://127.0.0.1:") || !strings.HasSuffix(info.URL, "/?token=t") || !strings.HasPrefix(info.Addr, "127.0.0.1:") {
				t.Fatalf("info = %+v", info)
			}
			jar, _ := cookiejar.New(nil)
			c := &http.Client{Jar: jar, Timeout: 5 * time.Second}
			if code, body, _ := get(t, c, info.URL); code != http.StatusOK || !strings.Contains(body, "shop/web") {
				t.Fatalf("GET login link = %d\n%s", code, body)
			}
		})
	}
}
