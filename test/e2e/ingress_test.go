package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestIngress: the ingress router routes by host and by the longest path
// prefix to the ready pods of the service that declared the route; an
// unknown host gets 404, a service with no ready pod 503; dev ingress
// lists the routes; a route taken by another project is refused with
// nothing deployed.
func TestIngress(t *testing.T) {
	c := newCluster(t)
	compose := writeTemp(t, `name: e2eingress
services:
  web:
    image: `+testImage+`
    command: ["serve"]
    x-ingress:
      - web.e2eingress.test:8080
      - web.e2eingress.localhost:8080
  api:
    image: `+testImage+`
    command: ["serve"]
    deploy:
      replicas: 2
    x-ingress:
      - api.e2eingress.test:8080
      - {host: web.e2eingress.test, path: /whoami, port: 8080}
`)
	c.mustDev("up", "-d", "-f", compose)
	wantRunning(c, "e2eingress", "api", 2, 60*time.Second)
	base := "http://" + c.ingress

	status := func(host, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Host = host
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("GET %s%s through the ingress: %v", host, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	eventually(t, 30*time.Second, "the routes served", func() error {
		for _, want := range []struct{ host, path, body string }{
			{"web.e2eingress.test", "/", "hello from e2eingress-web-1"},
			{"api.e2eingress.test", "/", "hello from e2eingress-api-"},
			{"web.e2eingress.test", "/whoami", "e2eingress-api-"}, // the longer prefix, to api
			{"WEB.e2eingress.test:80", "/", "hello from e2eingress-web-1"},
		} {
			if code, body := status(want.host, want.path); code != 200 || !strings.Contains(body, want.body) {
				return fmt.Errorf("%s%s: %d %q, want 200 with %q", want.host, want.path, code, body, want.body)
			}
		}
		return nil
	})
	// Both api pods answer, in turn.
	seen := map[string]bool{}
	for range 10 {
		_, body := status("api.e2eingress.test", "/")
		seen[strings.TrimSpace(body)] = true
	}
	if len(seen) != 2 {
		t.Errorf("api answered as %v through the ingress, want both of its pods", seen)
	}
	if code, body := status("nothere.e2eingress.test", "/"); code != 404 || !strings.Contains(body, "no route for nothere.e2eingress.test/") {
		t.Errorf("unknown host: %d %q, want 404", code, body)
	}

	var rows []struct {
		Host, Path, Service, TLS string
		Port, Ready, Desired     int
	}
	if err := json.Unmarshal([]byte(c.mustDev("ingress", "-p", "e2eingress", "-o", "json")), &rows); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range rows {
		got[r.Host+r.Path] = fmt.Sprintf("%s:%d %s %d/%d", r.Service, r.Port, r.TLS, r.Ready, r.Desired)
	}
	want := map[string]string{
		"web.e2eingress.localhost/":  "web:8080 local 1/1",
		"web.e2eingress.test/":       "web:8080 auto 1/1",
		"api.e2eingress.test/":       "api:8080 auto 2/2",
		"web.e2eingress.test/whoami": "api:8080 auto 2/2",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("dev ingress = %v, want %v", got, want)
	}

	// HTTPS for the .localhost host, with a certificate of the local CA
	// that dev ca export prints; not the cluster's CA.
	caPEM := c.mustDev("ca", "export")
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(caPEM)) {
		t.Fatalf("dev ca export printed no certificate:\n%s", caPEM)
	}
	if clusterCA, err := os.ReadFile(filepath.Join(c.dir, "pki", "ca.crt")); err != nil || strings.TrimSpace(string(clusterCA)) == strings.TrimSpace(caPEM) {
		t.Errorf("dev ca export printed the cluster CA (%v)", err)
	}
	https := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", c.ingressTLS) // as *.localhost resolves to this host
		},
	}}
	resp, err := https.Get("https://web.e2eingress.localhost/")
	if err != nil {
		t.Fatalf("https://web.e2eingress.localhost/ with the exported CA: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "hello from e2eingress-web-1") {
		t.Errorf("https://web.e2eingress.localhost/: %s %q", resp.Status, b)
	}
	// Plain HTTP for it goes to HTTPS.
	noFollow := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
	req.Host = "web.e2eingress.localhost"
	if resp, err := noFollow.Do(req); err != nil {
		t.Error(err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusPermanentRedirect || !strings.HasPrefix(resp.Header.Get("Location"), "https://web.e2eingress.localhost:") {
		t.Errorf("http://web.e2eingress.localhost/: %s to %q, want 308 to https", resp.Status, resp.Header.Get("Location"))
	}
	if _, err := https.Get("https://web.e2eingress.test/"); err == nil {
		t.Error("https://web.e2eingress.test/ (tls: auto) answered: ACME is not built, it should have no certificate")
	}

	// Another project may not take a route already served.
	thief := writeTemp(t, "name: e2ethief\nservices:\n  web:\n    image: "+testImage+"\n    x-ingress: [api.e2eingress.test:8080]\n")
	if out, err := c.dev("up", "-d", "-f", thief); err == nil || !strings.Contains(out, "routed to service api of project e2eingress") {
		t.Errorf("dev up of a project taking a served route: %v\n%s", err, out)
	}
	if out := c.mustDev("ps"); strings.Contains(out, "e2ethief") {
		t.Errorf("the refused project left pods:\n%s", out)
	}

	// The router's and the API's requests, and raft, in the node's metrics.
	fams, err := scrape(filepath.Join(c.dir, "dev.sock"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		name   string
		labels map[string]string
	}{
		{"dev_ingress_request_duration_seconds", map[string]string{"host": "web.e2eingress.test", "path": "/", "service": "e2eingress/web", "code": "2xx"}},
		{"dev_ingress_request_duration_seconds", map[string]string{"host": "web.e2eingress.localhost", "code": "2xx"}},
		{"dev_api_request_duration_seconds", map[string]string{"route": "GET /v1/services", "code": "200"}},
		{"dev_raft_leader", nil},
		{"dev_pods", map[string]string{"state": "running"}},
	} {
		if v, ok := metricValue(fams, want.name, want.labels); !ok || v < 1 {
			t.Errorf("metric %s%v = %v (present %v), want at least 1", want.name, want.labels, v, ok)
		}
	}

	// No ready pod: 503.
	c.mustDev("scale", "-p", "e2eingress", "api=0")
	eventually(t, 30*time.Second, "503 with no api pod", func() error {
		if code, body := status("api.e2eingress.test", "/"); code != 503 || !strings.Contains(body, "no ready pod of service e2eingress/api") {
			return fmt.Errorf("%d %q, want 503", code, body)
		}
		return nil
	})
	if code, body := status("web.e2eingress.test", "/"); code != 200 {
		t.Errorf("web after api scaled to 0: %d %q", code, body)
	}
}

// TestIngressGRPC: a route with protocol: grpc reaches the pod over
// HTTP/2 without TLS (the test app answers with the protocol it was
// spoken to in and a Grpc-Status trailer), and the trailer reaches a
// client over HTTPS with ALPN h2; dev config shows the protocol.
func TestIngressGRPC(t *testing.T) {
	c := newCluster(t)
	compose := writeTemp(t, `name: e2egrpc
services:
  api:
    image: `+testImage+`
    command: ["serve"]
    x-ingress:
      - {host: api.e2egrpc.localhost, port: 8080, protocol: grpc}
`)
	if out := c.mustDev("config", "-f", compose); !strings.Contains(out, "protocol: grpc") {
		t.Errorf("dev config does not show the route's protocol:\n%s", out)
	}
	c.mustDev("up", "-d", "-f", compose)
	wantRunning(c, "e2egrpc", "api", 1, 60*time.Second)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(c.mustDev("ca", "export"))) {
		t.Fatal("dev ca export printed no certificate")
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, NextProtos: []string{"h2"}},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", c.ingressTLS) // as *.localhost resolves to this host
		},
	}}
	eventually(t, 30*time.Second, "the gRPC route served over HTTP/2 with its trailer", func() error {
		req, _ := http.NewRequest(http.MethodPost, "https://api.e2egrpc.localhost/grpc", strings.NewReader(""))
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 || !strings.Contains(string(b), "e2egrpc-api-1 HTTP/2.0") || resp.Trailer.Get("Grpc-Status") != "0" {
			return fmt.Errorf("%s %s %q, trailers %v; want 200 over HTTP/2 from the pod spoken to in HTTP/2, Grpc-Status 0", resp.Proto, resp.Status, b, resp.Trailer)
		}
		return nil
	})
}
