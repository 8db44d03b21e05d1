package apiserver

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestRouteRoles(t *testing.T) {
	mux := http.NewServeMux()
	ok := func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }
	handle(mux, "GET /read", roleRead, ok)
	handle(mux, "POST /admin", roleAdmin, ok)
	handle(mux, "POST /node", roleNode, ok)
	handle(mux, "POST /user", roleUser, ok)
	handle(mux, "POST /public", rolePublic, ok)
	handle(mux, "PUT /raw", roleAdmin, ok, routeOpts{rawBody: true})

	tests := []struct {
		name    string
		caller  Caller
		method  string
		path    string
		body    string
		ctype   string
		headers map[string]string
		want    int
	}{
		{name: "read may read", caller: Caller{"r", roleRead}, method: "GET", path: "/read", want: 204},
		{name: "read may not write", caller: Caller{"r", roleRead}, method: "POST", path: "/admin", want: 403},
		{name: "read may not use node routes", caller: Caller{"r", roleRead}, method: "POST", path: "/node", want: 403},
		{name: "admin may write", caller: Caller{"a", roleAdmin}, method: "POST", path: "/admin", want: 204},
		{name: "admin may read", caller: Caller{"a", roleAdmin}, method: "GET", path: "/read", want: 204},
		{name: "admin may not use node routes", caller: Caller{"a", roleAdmin}, method: "POST", path: "/node", want: 403},
		{name: "node may use node routes", caller: Caller{"n1", roleNode}, method: "POST", path: "/node", want: 204},
		{name: "node relays writes", caller: Caller{"n1", roleNode}, method: "POST", path: "/admin", want: 204},
		{name: "a worker relays no write", caller: Caller{"w1", roleWorker}, method: "POST", path: "/admin", want: 403},
		{name: "a worker reads", caller: Caller{"w1", roleWorker}, method: "GET", path: "/read", want: 204},
		{name: "a worker uses node routes", caller: Caller{"w1", roleWorker}, method: "POST", path: "/node", want: 204},
		{name: "admin gets credentials", caller: Caller{"a", roleAdmin}, method: "POST", path: "/user", want: 204},
		{name: "a node gets no credentials", caller: Caller{"n1", roleNode}, method: "POST", path: "/user", want: 403},
		{name: "no certificate: public only", caller: Caller{}, method: "POST", path: "/public", want: 204},
		{name: "no certificate: nothing else", caller: Caller{}, method: "GET", path: "/read", want: 403},
		{name: "JSON body", caller: Caller{"a", roleAdmin}, method: "POST", path: "/admin", body: "{}", ctype: "application/json; charset=utf-8", want: 204},
		{name: "text/plain body refused", caller: Caller{"a", roleAdmin}, method: "POST", path: "/admin", body: "{}", ctype: "text/plain", want: 415},
		{name: "body without a type refused", caller: Caller{"a", roleAdmin}, method: "POST", path: "/admin", body: "{}", want: 415},
		{name: "raw body route takes a tar", caller: Caller{"a", roleAdmin}, method: "PUT", path: "/raw", body: "tar", ctype: "application/x-tar", want: 204},
		{name: "cross-site write refused", caller: Caller{"a", roleAdmin}, method: "POST", path: "/admin",
			headers: map[string]string{"Sec-Fetch-Site": "cross-site"}, want: 403},
		{name: "same-origin write", caller: Caller{"a", roleAdmin}, method: "POST", path: "/admin",
			headers: map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "http://api.test"}, want: 204},
		{name: "foreign origin refused", caller: Caller{"a", roleAdmin}, method: "POST", path: "/admin",
			headers: map[string]string{"Origin": "https://evil.example"}, want: 403},
		{name: "body over the limit", caller: Caller{"a", roleAdmin}, method: "POST", path: "/admin", body: `"` + strings.Repeat("x", maxJSONBody) + `"`,
			ctype: "application/json", want: 413},
		{name: "cross-site read allowed", caller: Caller{"r", roleRead}, method: "GET", path: "/read",
			headers: map[string]string{"Sec-Fetch-Site": "cross-site"}, want: 204},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body *strings.Reader
			req := httptest.NewRequest(tt.method, "http://api.test"+tt.path, nil)
			if tt.body != "" {
				body = strings.NewReader(tt.body)
				req = httptest.NewRequest(tt.method, "http://api.test"+tt.path, body)
			}
			if tt.ctype != "" {
				req.Header.Set("Content-Type", tt.ctype)
			}
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			AsCaller(mux, tt.caller).ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Errorf("%s %s as %+v: %d %s, want %d", tt.method, tt.path, tt.caller, rec.Code, rec.Body.String(), tt.want)
			}
		})
	}
}

// TestAuthenticate: the unix socket (no TLS) is admin; TLS without a
// certificate reaches only the join route.
func TestAuthenticate(t *testing.T) {
	var got Caller
	h := authenticate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = callerFrom(r.Context())
	}), nil, nil)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v1/pods", nil))
	if got.Role != roleAdmin {
		t.Errorf("unix socket caller %+v, want admin", got)
	}
	req := httptest.NewRequest("GET", "https://node/v1/pods", nil) // TLS, no client certificate
	rec := httptest.NewRecorder()
	got = Caller{}
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized || got.Role != "" {
		t.Errorf("TLS without a certificate: %d, caller %+v; want 401 before any route", rec.Code, got)
	}
	req = httptest.NewRequest("POST", "https://node/v1/join", nil)
	got = Caller{Name: "x"}
	h.ServeHTTP(httptest.NewRecorder(), req)
	if got != (Caller{}) {
		t.Errorf("join without a certificate: caller %+v, want none (the route is public)", got)
	}
}

// TestSlowBodyIsCutOff: a client that trickles a JSON body (slowloris)
// loses its connection at the body deadline instead of holding a handler
// for as long as it likes.
func TestSlowBodyIsCutOff(t *testing.T) {
	defer func(d time.Duration) { jsonBodyTimeout = d }(jsonBodyTimeout)
	jsonBodyTimeout = 500 * time.Millisecond
	mux := http.NewServeMux()
	handle(mux, "POST /admin", roleAdmin, func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	srv := httptest.NewServer(AsCaller(mux, Caller{"a", roleAdmin}))
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /admin HTTP/1.1\r\nHost: api.test\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(c) // ends when the server closes
		done <- err
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("cut off after %v, want about the %v body deadline", took, jsonBodyTimeout)
			}
			return
		case <-tick.C:
			if time.Since(start) > 10*time.Second {
				t.Fatal("a trickled body held the connection for 10s")
			}
			_, _ = c.Write([]byte(" ")) // one byte at a time
		}
	}
}

// TestLongHandlerKeepsItsContext: a write whose handler runs past the body
// deadline (dev leave drains the node first) keeps its context, with a
// body and without one; only the body's arrival is bounded.
func TestLongHandlerKeepsItsContext(t *testing.T) {
	defer func(d time.Duration) { jsonBodyTimeout = d }(jsonBodyTimeout)
	jsonBodyTimeout = 200 * time.Millisecond
	mux := http.NewServeMux()
	handle(mux, "POST /long", roleAdmin, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		select {
		case <-r.Context().Done():
			http.Error(w, "context ended: "+r.Context().Err().Error(), http.StatusInternalServerError)
		case <-time.After(3 * jsonBodyTimeout):
			w.WriteHeader(http.StatusNoContent)
		}
	})
	srv := httptest.NewServer(AsCaller(mux, Caller{"a", roleAdmin}))
	defer srv.Close()
	for _, body := range []string{"", `{"a":1}`} {
		resp, err := http.Post(srv.URL+"/long", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("body %q: %v", body, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("body %q: %s %s, want 204: the handler's context ended with the body deadline", body, resp.Status, b)
		}
	}
}
