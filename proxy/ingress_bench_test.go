package proxy

import (
	"context"
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
// installed) configured as a reverse proxy, in one run: keep-alive GETs
// from parallel clients (-cpu sets how many goroutines per CPU). It
// reports requests/s and the 99th percentile latency.
//
//	go test -run '^$' -bench BenchmarkIngress -benchtime 5s ./proxy
func BenchmarkIngress(b *testing.B) {
	port := freePort(b)
	backendAddr := "127.0.0.1:" + strconv.Itoa(int(port))
	ln, err := net.Listen("tcp", backendAddr)
	if err != nil {
		b.Fatal(err)
	}
	body := []byte("hello from the backend\n")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) })}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })

	targets := []struct{ name, addr string }{{"direct", backendAddr}}

	inLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	in := NewIngress(IngressConfig{Listener: inLn, Log: slog.New(slog.DiscardHandler), Source: newStaticRoutes(
		Route{Host: "bench.test", Path: "/", Service: "bench/web", Port: port, Backends: []netip.Addr{netip.MustParseAddr("127.0.0.1")}})})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	targets = append(targets, struct{ name, addr string }{"dev", inLn.Addr().String()})

	if addr, stop, err := startNginx(b, backendAddr); err != nil {
		b.Logf("nginx: %v (not measured)", err)
	} else {
		b.Cleanup(stop)
		targets = append(targets, struct{ name, addr string }{"nginx", addr})
	}

	for _, tg := range targets {
		b.Run(tg.name, func(b *testing.B) {
			tr := &http.Transport{MaxIdleConnsPerHost: 1024, MaxConnsPerHost: 0}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			var mu sync.Mutex
			var lat []time.Duration
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				mine := make([]time.Duration, 0, 1024)
				for pb.Next() {
					req, _ := http.NewRequest(http.MethodGet, "http://"+tg.addr+"/", nil)
					req.Host = "bench.test"
					t0 := time.Now()
					resp, err := c.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("%s: %s", tg.name, resp.Status)
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
		})
	}
}

// startNginx runs nginx as a reverse proxy to backend with keep-alive to
// it, as one would configure it in front of pods, and returns its address.
func startNginx(b *testing.B, backend string) (string, func(), error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			return "", nil, err
		}
		bin = "/usr/sbin/nginx"
	}
	port := freePort(b)
	dir := b.TempDir()
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
    location / {
      proxy_pass http://pods;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
  }
}
`, dir, backend, port)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "-c", path, "-p", dir)
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	addr := "127.0.0.1:" + strconv.Itoa(int(port))
	for deadline := time.Now().Add(5 * time.Second); ; {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			return "", nil, fmt.Errorf("nginx did not listen on %s: %s", addr, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
