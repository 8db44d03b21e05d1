package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// grpcBackend serves on a loopback port as a gRPC server does: HTTP/2
// without TLS (h2c) only, answering with the protocol it was spoken to in
// and the Grpc-Status and Grpc-Message trailers. It returns the port.
func grpcBackend(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
		fmt.Fprintf(w, "%s %s te=%s got %s", r.Proto, r.URL.Path, r.Header.Get("Te"), b)
		w.Header().Set("Grpc-Status", "0")
		w.Header().Set("Grpc-Message", "ok")
	})}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// TestIngressGRPC: a route with an h2c backend (protocol grpc) is served
// to the pod over HTTP/2 without TLS, and the pod's trailers reach a
// client over HTTPS with ALPN h2, and one over h2c on the plain port.
func TestIngressGRPC(t *testing.T) {
	port := grpcBackend(t)
	pods := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	src := newStaticRoutes(
		Route{Host: "grpc.shop.localhost", Path: "/", Service: "shop/grpc", Port: port, TLS: "local", H2C: true, Backends: pods},
		Route{Host: "grpc.shop.test", Path: "/", Service: "shop/grpc", Port: port, TLS: "off", H2C: true, Backends: pods},
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

	overTLS := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: certs.pool, ServerName: "grpc.shop.localhost", NextProtos: []string{"h2"}},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", tlsLn.Addr().String())
		},
	}
	h2c := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", httpLn.Addr().String())
	}}
	h2c.Protocols = new(http.Protocols)
	h2c.Protocols.SetUnencryptedHTTP2(true)

	for _, tt := range []struct {
		name string
		tr   *http.Transport
		url  string
	}{
		{"HTTPS with ALPN h2", overTLS, "https://grpc.shop.localhost/shop.Greeter/Hello"},
		{"h2c on the plain port", h2c, "http://grpc.shop.test/shop.Greeter/Hello"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &http.Client{Timeout: 5 * time.Second, Transport: tt.tr}
			var resp *http.Response
			waitFor(t, func() bool { // the routes are set just after Run starts
				req, _ := http.NewRequest(http.MethodPost, tt.url, strings.NewReader("hi"))
				req.Header.Set("Content-Type", "application/grpc")
				req.Header.Set("Te", "trailers")
				if resp, err = c.Do(req); err != nil {
					return false
				}
				if resp.StatusCode == http.StatusNotFound {
					resp.Body.Close()
					return false
				}
				return true
			})
			b, _ := io.ReadAll(resp.Body) // trailers come after the body
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.ProtoMajor != 2 || string(b) != "HTTP/2.0 /shop.Greeter/Hello te=trailers got hi" {
				t.Errorf("got %s %s %q, want 200 over HTTP/2 from the pod spoken to in HTTP/2", resp.Proto, resp.Status, b)
			}
			if resp.Trailer.Get("Grpc-Status") != "0" || resp.Trailer.Get("Grpc-Message") != "ok" {
				t.Errorf("trailers %v, want Grpc-Status 0 and Grpc-Message ok", resp.Trailer)
			}
		})
	}
}
