package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const benchServices = 100

// benchResolver is a read-only fake with n services in project "bench",
// visible to everyone.
func benchResolver(n int) *fakeResolver {
	r := &fakeResolver{services: map[string]fakeService{}, pods: map[string]netip.Addr{}}
	for i := range n {
		r.services[fmt.Sprintf("bench/svc%d", i)] = fakeService{
			vip:   netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}),
			ports: []Port{{Name: "http", Number: 80, Protocol: "tcp"}},
			tasks: []netip.Addr{netip.AddrFrom4([4]byte{10, 213, 1, byte(i)})},
		}
	}
	return r
}

// benchQueries packs one A query per service.
func benchQueries(b *testing.B, n int) [][]byte {
	qs := make([][]byte, n)
	for i := range n {
		m := new(dns.Msg)
		m.SetQuestion(fmt.Sprintf("svc%d.bench.dev.", i), dns.TypeA)
		buf, err := m.Pack()
		if err != nil {
			b.Fatal(err)
		}
		qs[i] = buf
	}
	return qs
}

// BenchmarkClusterQueryUDP measures a real server on loopback: 32 clients,
// each with its own UDP socket and one query in flight, asking A for random
// services. Reports queries per second and the 99th percentile latency.
func BenchmarkClusterQueryUDP(b *testing.B) {
	const clients = 32
	s := New(Config{Addrs: []string{"127.0.0.1:0"}, Upstreams: []string{}}, benchResolver(benchServices))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-errc:
		b.Fatal(err)
	}
	defer func() { cancel(); <-errc }()

	queries := benchQueries(b, benchServices)
	conns := make([]net.Conn, clients)
	for i := range conns {
		c, err := net.Dial("udp", s.Addrs()[0])
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}

	var (
		next    atomic.Int64
		lost    atomic.Int64
		bad     atomic.Int64
		lat     = make([][]time.Duration, clients)
		wg      sync.WaitGroup
		perConn = b.N/clients + 1
	)
	b.ResetTimer()
	start := time.Now()
	for c := range clients {
		lat[c] = make([]time.Duration, 0, perConn)
		wg.Go(func() {
			conn := conns[c]
			rng := rand.New(rand.NewPCG(uint64(c), 42))
			q := make([]byte, 512)
			resp := make([]byte, 1500)
			id := uint16(c) << 11
			for next.Add(1) <= int64(b.N) {
				n := copy(q, queries[rng.IntN(len(queries))])
				id++
				binary.BigEndian.PutUint16(q, id)
				t0 := time.Now()
				if _, err := conn.Write(q[:n]); err != nil {
					bad.Add(1)
					continue
				}
				conn.SetReadDeadline(t0.Add(time.Second))
				for {
					rn, err := conn.Read(resp)
					if err != nil {
						var ne net.Error
						if errors.As(err, &ne) && ne.Timeout() {
							lost.Add(1)
						} else {
							bad.Add(1)
						}
						break
					}
					if rn < 12 || binary.BigEndian.Uint16(resp) != id {
						continue // a late answer to a lost query
					}
					// QR set, RCODE NOERROR, one answer.
					if resp[2]&0x80 == 0 || resp[3]&0x0f != 0 || binary.BigEndian.Uint16(resp[6:]) != 1 {
						bad.Add(1)
					}
					lat[c] = append(lat[c], time.Since(t0))
					break
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()

	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) > 0 {
		b.ReportMetric(float64(len(all))/elapsed.Seconds(), "qps")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	}
	if n := bad.Load(); n > 0 {
		b.Errorf("%d bad answers", n)
	}
	if n := lost.Load(); n > 0 {
		b.ReportMetric(float64(n), "lost")
	}
}

// BenchmarkHandler measures the handler alone (no sockets): the allocation
// budget of a cluster A query.
func BenchmarkHandler(b *testing.B) {
	h := New(Config{Upstreams: []string{}}, benchResolver(benchServices)).Handler()
	reqs := make([]*dns.Msg, benchServices)
	for i := range reqs {
		reqs[i] = new(dns.Msg).SetQuestion(fmt.Sprintf("svc%d.bench.dev.", i), dns.TypeA)
	}
	w := &discard{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		h.ServeDNS(w, reqs[i%len(reqs)])
		i++
	}
}

// discard is a dns.ResponseWriter that packs and drops the reply.
type discard struct {
	recorder
	remote net.Addr
}

func (d *discard) RemoteAddr() net.Addr { return d.remote }
func (d *discard) WriteMsg(m *dns.Msg) error {
	_, err := m.Pack()
	return err
}
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
