package proxy

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// staticRoutes is a RouteSource whose routes a test sets.
type staticRoutes struct {
	mu      sync.Mutex
	routes  []Route
	changed chan struct{}
}

func newStaticRoutes(routes ...Route) *staticRoutes {
	return &staticRoutes{routes: routes, changed: make(chan struct{})}
}

func (s *staticRoutes) Routes() []Route {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.routes
}

func (s *staticRoutes) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// backend serves on addr: "NAME PATH" for any path, the request's
// X-Forwarded-* headers under /headers, an upgrade to a raw echo under
// /echo (as a WebSocket server would switch protocols), and the body back
// under /body.
func backend(t *testing.T, addr, name string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "host=%s xff=%s xfh=%s xfp=%s\n", r.Host, r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Forwarded-Proto"))
	})
	mux.HandleFunc("/body", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s got %s", name, b)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want Upgrade: echo", http.StatusBadRequest)
			return
		}
		c, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		rw.Flush()
		_, _ = io.Copy(c, rw)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s\n", name, r.URL.Path)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
}

// freePort is a TCP port free on 127.0.0.1 now.
func freePort(t testing.TB) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// startIngress runs a router over src on a loopback port and returns its
// address.
func startIngress(t *testing.T, src RouteSource) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	in := NewIngress(IngressConfig{Listener: ln, Source: src, Log: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return ln.Addr().String()
}

func get(t *testing.T, addr, host, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	req.Host = host
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s%s: %v", host, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestIngressRouting(t *testing.T) {
	port := freePort(t)
	at := func(ip string) netip.Addr { return netip.MustParseAddr(ip) }
	backend(t, "127.0.0.1:"+strconv.Itoa(int(port)), "web")
	backend(t, "127.0.0.2:"+strconv.Itoa(int(port)), "api")
	src := newStaticRoutes(
		Route{Host: "shop.example.com", Path: "/", Service: "shop/web", Port: port, Backends: []netip.Addr{at("127.0.0.1")}},
		Route{Host: "shop.example.com", Path: "/api", Service: "shop/api", Port: port, Backends: []netip.Addr{at("127.0.0.2")}},
		Route{Host: "api.example.com", Path: "/", Service: "shop/api", Port: port, Backends: []netip.Addr{at("127.0.0.2")}},
		Route{Host: "down.example.com", Path: "/", Service: "shop/down", Port: port},
	)
	addr := startIngress(t, src)
	tests := []struct {
		name, host, path string
		wantCode         int
		wantBody         string
	}{
		{"by host", "shop.example.com", "/", 200, "web /"},
		{"another host", "api.example.com", "/x", 200, "api /x"},
		{"host with a port and in capitals", "Shop.Example.com:80", "/", 200, "web /"},
		{"longest prefix", "shop.example.com", "/api/items", 200, "api /api/items"},
		{"the prefix itself", "shop.example.com", "/api", 200, "api /api"},
		{"prefix by whole segments", "shop.example.com", "/apix", 200, "web /apix"},
		{"unknown host", "other.example.com", "/", 404, "no route for other.example.com/"},
		{"no ready pod", "down.example.com", "/", 503, "no ready pod of service shop/down"},
		{"forwarded headers", "shop.example.com", "/headers", 200, "host=shop.example.com xff=127.0.0.1 xfh=shop.example.com xfp=http"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := get(t, addr, tt.host, tt.path)
			if code != tt.wantCode || !strings.Contains(body, tt.wantBody) {
				t.Errorf("GET %s%s = %d %q, want %d containing %q", tt.host, tt.path, code, body, tt.wantCode, tt.wantBody)
			}
		})
	}
}

// TestIngressRetriesUnreachablePod: a pod that refuses connections (gone,
// its route not yet updated) costs no request: the next pod gets it, body
// included.
func TestIngressRetriesUnreachablePod(t *testing.T) {
	port := freePort(t)
	backend(t, "127.0.0.1:"+strconv.Itoa(int(port)), "alive")
	dead := []netip.Addr{netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("127.0.0.4")} // nothing listens there
	src := newStaticRoutes(Route{Host: "a.example.com", Path: "/", Service: "p/a", Port: port,
		Backends: append(dead, netip.MustParseAddr("127.0.0.1"))})
	addr := startIngress(t, src)
	for i := range 6 { // every starting point of the round robin
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/body", strings.NewReader(fmt.Sprintf("payload %d", i)))
		req.Host = "a.example.com"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("alive got payload %d", i); resp.StatusCode != 200 || string(b) != want {
			t.Errorf("request %d: %d %q, want 200 %q", i, resp.StatusCode, b, want)
		}
	}
}

// TestIngressUpgrade: a connection upgrade (as WebSockets do) goes through
// both ways.
func TestIngressUpgrade(t *testing.T) {
	port := freePort(t)
	backend(t, "127.0.0.1:"+strconv.Itoa(int(port)), "ws")
	addr := startIngress(t, newStaticRoutes(Route{Host: "ws.example.com", Path: "/", Service: "p/ws", Port: port,
		Backends: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}))
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /echo HTTP/1.1\r\nHost: ws.example.com\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %s", resp.Status)
	}
	for _, msg := range []string{"ping\n", "pong pong\n"} {
		fmt.Fprint(c, msg)
		got, err := br.ReadString('\n')
		if err != nil || got != msg {
			t.Fatalf("echo of %q: %q, %v", msg, got, err)
		}
	}
}

// TestIngressFollowsRoutes: a change of the source's routes is served.
func TestIngressFollowsRoutes(t *testing.T) {
	port := freePort(t)
	backend(t, "127.0.0.1:"+strconv.Itoa(int(port)), "v1")
	src := newStaticRoutes()
	addr := startIngress(t, src)
	if code, _ := get(t, addr, "a.example.com", "/"); code != 404 {
		t.Fatalf("before the route: %d, want 404", code)
	}
	src.mu.Lock()
	src.routes = []Route{{Host: "a.example.com", Path: "/", Service: "p/a", Port: port, Backends: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}}
	close(src.changed)
	src.changed = make(chan struct{})
	src.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body := get(t, addr, "a.example.com", "/")
		if code == 200 && strings.HasPrefix(body, "v1") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the route was added: %d %q", code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testCerts is a CertSource signing for any host with one test CA.
type testCerts struct {
	pool  *x509.CertPool
	ca    *x509.Certificate
	key   *ecdsa.PrivateKey
	asked atomic.Int32
}

func newTestCerts(t testing.TB) *testCerts {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testCerts{pool: pool, ca: ca, key: key}
}

func (c *testCerts) Certificate(_ context.Context, host string) (*tls.Certificate, error) {
	c.asked.Add(1)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), DNSNames: []string{host}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.ca, key.Public(), c.key)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// TestIngressTLS: a tls: local route is served over HTTPS with the
// CertSource's certificate for its host (SNI), HTTP/2 offered; a tls: auto
// or off route, or an unknown host, gets no certificate.
func TestIngressTLS(t *testing.T) {
	port := freePort(t)
	backend(t, "127.0.0.1:"+strconv.Itoa(int(port)), "secure")
	pods := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	src := newStaticRoutes(
		Route{Host: "web.shop.localhost", Path: "/", Service: "shop/web", Port: port, TLS: "local", Backends: pods},
		Route{Host: "shop.example.com", Path: "/", Service: "shop/web", Port: port, TLS: "auto", Backends: pods},
		Route{Host: "plain.example.com", Path: "/", Service: "shop/web", Port: port, TLS: "off", Backends: pods},
	)
	httpLn, _ := net.Listen("tcp", "127.0.0.1:0")
	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	certs := newTestCerts(t)
	in := NewIngress(IngressConfig{Listener: httpLn, TLSListener: tlsLn, Certs: certs, Source: src, Log: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	client := func(host string) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: certs.pool, ServerName: host},
			ForceAttemptHTTP2: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", tlsLn.Addr().String())
			},
		}}
	}
	var resp *http.Response
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err = client("web.shop.localhost").Get("https://web.shop.localhost/headers")
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // the routes are set just after Run starts
	}
	if err != nil {
		t.Fatalf("GET https://web.shop.localhost/headers: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "xfp=https") || resp.ProtoMajor != 2 {
		t.Errorf("over HTTPS: %s %s %q, want 200 over HTTP/2 with X-Forwarded-Proto https", resp.Proto, resp.Status, b)
	}
	// Plain HTTP for the tls: local route goes to HTTPS; the others stay.
	noFollow := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodGet, "http://"+httpLn.Addr().String()+"/a?b=c", nil)
	req.Host = "web.shop.localhost"
	if resp, err := noFollow.Do(req); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
		want := "https://web.shop.localhost:" + strconv.Itoa(tlsLn.Addr().(*net.TCPAddr).Port) + "/a?b=c"
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
			t.Errorf("HTTP for a tls: local route: %s to %q, want 308 to %q", resp.Status, resp.Header.Get("Location"), want)
		}
	}
	req.Host = "shop.example.com"
	if resp, err := noFollow.Do(req); err != nil {
		t.Error(err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusOK {
		t.Errorf("HTTP for a tls: auto route (no certificate): %s, want 200", resp.Status)
	}
	for _, host := range []string{"shop.example.com", "plain.example.com", "nothere.example.com"} {
		if _, err := client(host).Get("https://" + host + "/"); err == nil {
			t.Errorf("%s: HTTPS answered; want no certificate", host)
		}
	}
}

// TestIngressLimits: a path that would step out of its prefix is refused;
// X-Forwarded-For sent by the client is replaced, not passed on; one
// source holds at most MaxConnsPerSource connections; a body that stops
// coming is cut off after BodyIdle.
func TestIngressLimits(t *testing.T) {
	port := freePort(t)
	backend(t, "127.0.0.1:"+strconv.Itoa(int(port)), "web")
	pods := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	in := NewIngress(IngressConfig{Listener: ln, MaxConnsPerSource: 2, BodyIdle: 300 * time.Millisecond, Log: slog.New(slog.DiscardHandler),
		Source: newStaticRoutes(Route{Host: "a.example.com", Path: "/api", Service: "p/web", Port: port, Backends: pods})})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	addr := ln.Addr().String()

	raw := func(req string) string {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprint(c, req)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return "error: " + err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.Status + " " + string(b)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.HasPrefix(raw("GET /api/x HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n"), "200") {
		if time.Now().After(deadline) {
			t.Fatal("the route is not served")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, p := range []string{"/api/../admin", "/api/%2e%2e/admin", "/api%2F..%2Fadmin", "/api/./x", "/api//x"} {
		if got := raw("GET " + p + " HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n"); !strings.HasPrefix(got, "400") {
			t.Errorf("GET %s: %q, want 400", p, got)
		}
	}
	if got := raw("GET /api/headers HTTP/1.1\r\nHost: a.example.com\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n"); strings.Contains(got, "6.6.6.6") {
		t.Errorf("a client's X-Forwarded-For reached the pod: %q", got)
	}

	// Two idle connections from 127.0.0.1 are all it may hold: a third is
	// closed at once.
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	third, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = third.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := third.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a third connection from one source was kept (read %d, %v)", n, err)
	}
	third.Close()
	for _, c := range held {
		c.Close()
	}

	// A body that stops after its first bytes: cut off after BodyIdle,
	// with an answer. (The slots of the closed connections free up as
	// the router sees them close.)
	deadline = time.Now().Add(5 * time.Second)
	for {
		got := raw("POST /api/body HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 100\r\n\r\nabc")
		if strings.HasPrefix(got, "502") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a trickling body: %q, want it cut off with a 502", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fakeACME is an ACMESource: a certificate for its hosts once has is set,
// and an HTTP-01 answer for token "tok".
type fakeACME struct {
	certs *testCerts
	has   atomic.Bool
}

func (f *fakeACME) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if slices.Contains(hello.SupportedProtos, acmeTLS1) {
		return nil, errors.New("no challenge in progress")
	}
	return f.certs.Certificate(hello.Context(), hello.ServerName)
}

func (f *fakeACME) HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.Path != acmeChallengePath+"tok" {
		return false
	}
	_, _ = io.WriteString(w, "tok.keyauth")
	return true
}

func (f *fakeACME) Has(string) bool { return f.has.Load() }

// TestIngressACME: a tls: auto route takes its certificate from the
// ACMESource, whose HTTP-01 answers pass before routing; plain HTTP goes
// to HTTPS only once the host has a certificate; a tls: local route never
// asks the ACMESource.
func TestIngressACME(t *testing.T) {
	port := freePort(t)
	backend(t, "127.0.0.1:"+strconv.Itoa(int(port)), "shop")
	pods := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	src := newStaticRoutes(
		Route{Host: "shop.example.com", Path: "/", Service: "shop/web", Port: port, TLS: "auto", Backends: pods},
		Route{Host: "web.shop.localhost", Path: "/", Service: "shop/web", Port: port, TLS: "local", Backends: pods},
	)
	httpLn, _ := net.Listen("tcp", "127.0.0.1:0")
	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	local, acme := newTestCerts(t), &fakeACME{certs: newTestCerts(t)}
	in := NewIngress(IngressConfig{Listener: httpLn, TLSListener: tlsLn, Certs: local, ACME: acme, Source: src, Log: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	noFollow := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+httpLn.Addr().String()+path, nil)
		req.Host = "shop.example.com"
		var resp *http.Response
		var err error
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if resp, err = noFollow.Do(req); err != nil || resp.StatusCode != http.StatusNotFound || time.Now().After(deadline) {
				break // 404 until Run has set the routes
			}
			resp.Body.Close()
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	if resp, body := get(acmeChallengePath + "tok"); resp.StatusCode != 200 || body != "tok.keyauth" {
		t.Errorf("HTTP-01 challenge: %s %q", resp.Status, body)
	}
	if resp, _ := get("/"); resp.StatusCode != 200 {
		t.Errorf("plain HTTP before a certificate: %s, want 200 (no redirect)", resp.Status)
	}
	acme.has.Store(true)
	if resp, _ := get("/"); resp.StatusCode != http.StatusPermanentRedirect {
		t.Errorf("plain HTTP with a certificate: %s, want 308", resp.Status)
	}
	if resp, body := get(acmeChallengePath + "tok"); resp.StatusCode != 200 || body != "tok.keyauth" {
		t.Errorf("HTTP-01 challenge once a certificate exists (a renewal): %s %q, want it answered, not redirected", resp.Status, body)
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: acme.certs.pool, ServerName: "shop.example.com"},
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", tlsLn.Addr().String())
		},
	}}
	resp, err := c.Get("https://shop.example.com/")
	if err != nil {
		t.Fatalf("HTTPS with the ACME certificate: %v", err)
	}
	resp.Body.Close()
	if local.asked.Load() != 0 {
		t.Errorf("the local CA was asked %d times for a tls: auto host", local.asked.Load())
	}
	if acme.certs.asked.Load() == 0 {
		t.Error("the ACMESource was not asked")
	}
}
