package proxy

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// benchWorkers is the number of concurrent keep-alive HTTP clients.
const benchWorkers = 32

func benchProxy(b *testing.B, proto string, eps ...netip.AddrPort) netip.AddrPort {
	b.Helper()
	p := New(Options{Log: slog.New(slog.DiscardHandler)})
	b.Cleanup(p.shutdown)
	listen := freePort(b, "127.0.0.2", proto)
	if err := p.Apply([]Service{{Name: "bench", Listen: listen, Protocol: proto, Endpoints: eps}}); err != nil {
		b.Fatal(err)
	}
	return listen
}

func BenchmarkHTTPDirect(b *testing.B)   { benchHTTP(b, false) }
func BenchmarkHTTPViaProxy(b *testing.B) { benchHTTP(b, true) }

func benchHTTP(b *testing.B, viaProxy bool) {
	body := []byte("hello from the backend\n")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write(body)
	}))
	defer srv.Close()
	target := srv.Listener.Addr().(*net.TCPAddr).AddrPort()
	if viaProxy {
		target = benchProxy(b, "tcp", target)
	}
	tr := &http.Transport{MaxIdleConns: benchWorkers, MaxIdleConnsPerHost: benchWorkers, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	url := "http://" + target.String() + "/"

	var (
		mu  sync.Mutex
		lat []time.Duration
	)
	b.SetParallelism((benchWorkers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 4096)
		for pb.Next() {
			t0 := time.Now()
			resp, err := client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			local = append(local, time.Since(t0))
		}
		mu.Lock()
		lat = append(lat, local...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	reportRate(b, elapsed, "req/s")
	reportP99(b, lat)
}

func reportRate(b *testing.B, elapsed time.Duration, unit string) {
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), unit)
}

func reportP99(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	p99 := lat[min(len(lat)-1, len(lat)*99/100)]
	b.ReportMetric(float64(p99)/float64(time.Microsecond), "p99-µs")
}

// oneShotBackend answers one byte per connection and closes it.
func oneShotBackend(b *testing.B) netip.AddrPort {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				var buf [1]byte
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.ReadFull(c, buf[:]); err == nil {
					c.Write(buf[:])
				}
			})
		}
	})
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

func BenchmarkTCPNewConnDirect(b *testing.B)   { benchNewConn(b, false) }
func BenchmarkTCPNewConnViaProxy(b *testing.B) { benchNewConn(b, true) }

// benchNewConn measures connection setup: dial, one byte each way, close.
func benchNewConn(b *testing.B, viaProxy bool) {
	target := oneShotBackend(b)
	if viaProxy {
		target = benchProxy(b, "tcp", target)
	}
	addr := target.String()
	var (
		mu  sync.Mutex
		lat []time.Duration
	)
	b.SetParallelism(4)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 4096)
		var buf [1]byte
		for pb.Next() {
			t0 := time.Now()
			c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
			if err != nil {
				b.Error(err)
				return
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write([]byte{'x'}); err != nil {
				b.Error(err)
				c.Close()
				return
			}
			if _, err := io.ReadFull(c, buf[:]); err != nil {
				b.Error(err)
				c.Close()
				return
			}
			c.Close()
			local = append(local, time.Since(t0))
		}
		mu.Lock()
		lat = append(lat, local...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	reportRate(b, elapsed, "conn/s")
	reportP99(b, lat)
}

func BenchmarkTCPStreamDirect(b *testing.B)   { benchStream(b, false) }
func BenchmarkTCPStreamViaProxy(b *testing.B) { benchStream(b, true) }

// benchStream measures bulk throughput on one connection (the splice path).
func benchStream(b *testing.B, viaProxy bool) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	done := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- -1
			return
		}
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		done <- n
	}()
	target := ln.Addr().(*net.TCPAddr).AddrPort()
	if viaProxy {
		target = benchProxy(b, "tcp", target)
	}
	c, err := net.Dial("tcp4", target.String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	chunk := make([]byte, 64<<10)
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	c.(*net.TCPConn).CloseWrite()
	n := <-done // wait until all of it arrived
	b.StopTimer()
	if want := int64(b.N) * int64(len(chunk)); n != want {
		b.Fatalf("backend got %d bytes, want %d", n, want)
	}
}
