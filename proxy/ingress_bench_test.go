package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// BenchmarkIngress measures requests through the ingress router against the
// same backend reached directly and through nginx (Debian's, when
// installed) configured as a reverse proxy, in one run: GETs from parallel
// clients (-cpu sets how many goroutines per CPU) over HTTP and HTTPS, on
// kept-alive connections and on a new connection per request. It reports
// requests/s and the 99th percentile latency.
//
//	go test -run '^$' -bench BenchmarkIngress -benchtime 5s ./proxy
func BenchmarkIngress(b *testing.B) {
	certs := newTestCerts(b)
	// Plain HTTP goes to bench.test (tls: off), HTTPS to secure.bench.test
	// (tls: local): a host with a certificate redirects plain HTTP.
	const host, secureHost = "bench.test", "secure.bench.test"
	cert, err := certs.Certificate(context.Background(), secureHost)
	if err != nil {
		b.Fatal(err)
	}
	body := []byte("hello from the backend\n")
	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) })
	serve := func(tlsOn bool) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{Handler: handler}
		if tlsOn {
			srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}}
			go func() { _ = srv.ServeTLS(ln, "", "") }()
		} else {
			go func() { _ = srv.Serve(ln) }()
		}
		b.Cleanup(func() { _ = srv.Close() })
		return ln.Addr().String()
	}
	backendAddr := serve(false)
	_, portStr, _ := net.SplitHostPort(backendAddr)
	port, _ := strconv.Atoi(portStr)

	// target is one path to the backend: where plain HTTP and HTTPS go.
	type target struct{ name, http, https string }
	targets := []target{{"direct", backendAddr, serve(true)}}

	inLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	inTLS, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	in := NewIngress(IngressConfig{Listener: inLn, TLSListener: inTLS, Certs: fixedCert{cert}, Log: slog.New(slog.DiscardHandler), Source: newStaticRoutes(
		Route{Host: host, Path: "/", Service: "bench/web", Port: uint16(port), TLS: "off", Backends: []netip.Addr{netip.MustParseAddr("127.0.0.1")}},
		Route{Host: secureHost, Path: "/", Service: "bench/web", Port: uint16(port), TLS: "local", Backends: []netip.Addr{netip.MustParseAddr("127.0.0.1")}})})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	targets = append(targets, target{"dev", inLn.Addr().String(), inTLS.Addr().String()})

	if httpAddr, httpsAddr, stop, err := startNginx(b, backendAddr, cert); err != nil {
		b.Logf("nginx: %v (not measured)", err)
	} else {
		b.Cleanup(stop)
		targets = append(targets, target{"nginx", httpAddr, httpsAddr})
	}

	for _, scheme := range []string{"http", "https"} {
		for _, fresh := range []bool{false, true} {
			conns := "keepalive"
			if fresh {
				conns = "newconn"
			}
			for _, tg := range targets {
				addr, h := tg.http, host
				if scheme == "https" {
					addr, h = tg.https, secureHost
				}
				b.Run(scheme+"-"+conns+"/"+tg.name, func(b *testing.B) {
					benchGets(b, scheme+"://"+addr+"/", h, &http.Transport{
						MaxIdleConnsPerHost: 1024, DisableKeepAlives: fresh,
						TLSClientConfig: &tls.Config{RootCAs: certs.pool, ServerName: secureHost},
					})
				})
			}
		}
	}
}

// benchGets sends GETs for host to url in parallel through tr and reports
// requests/s and the 99th percentile latency.
func benchGets(b *testing.B, url, host string, tr *http.Transport) {
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var mu sync.Mutex
	var lat []time.Duration
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		mine := make([]time.Duration, 0, 1024)
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.Host = host
			t0 := time.Now()
			resp, err := c.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("%s: %s", url, resp.Status)
				return
			}
			mine = append(mine, time.Since(t0))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// fixedCert serves one certificate for every host, as a router does once
// it holds a host's.
type fixedCert struct{ cert *tls.Certificate }

func (f fixedCert) Certificate(context.Context, string) (*tls.Certificate, error) { return f.cert, nil }

// startNginx runs nginx as a reverse proxy to backend with keep-alive to
// it, as one would configure it in front of pods, over HTTP and HTTPS (with
// cert), and returns its two addresses.
func startNginx(b *testing.B, backend string, cert *tls.Certificate) (httpAddr, httpsAddr string, stop func(), err error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			return "", "", nil, err
		}
		bin = "/usr/sbin/nginx"
	}
	port, tlsPort := freePort(b), freePort(b)
	dir := b.TempDir()
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return "", "", nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		return "", "", nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", nil, err
	}
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes auto;
error_log %[1]s/error.log;
pid %[1]s/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  upstream pods { server %[2]s; keepalive 64; }
  server {
    listen 127.0.0.1:%[3]d;
    listen 127.0.0.1:%[4]d ssl;
    ssl_certificate %[1]s/cert.pem;
    ssl_certificate_key %[1]s/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://pods;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
  }
}
`, dir, backend, port, tlsPort)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return "", "", nil, err
	}
	cmd := exec.Command(bin, "-c", path, "-p", dir)
	if err := cmd.Start(); err != nil {
		return "", "", nil, err
	}
	stop = func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	httpAddr = "127.0.0.1:" + strconv.Itoa(int(port))
	httpsAddr = "127.0.0.1:" + strconv.Itoa(int(tlsPort))
	for deadline := time.Now().Add(5 * time.Second); ; {
		if c, err := net.Dial("tcp", httpsAddr); err == nil {
			c.Close()
			return httpAddr, httpsAddr, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			return "", "", nil, fmt.Errorf("nginx did not listen on %s: %s", httpsAddr, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
