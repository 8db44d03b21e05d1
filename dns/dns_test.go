package dns

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeResolver is cluster state in miniature. Pods are identified by source
// IP; a pod sees the services sharing one of its networks, the host sees all.
type fakeResolver struct {
	clients  map[netip.Addr]fakeClient
	services map[string]fakeService // "project/name"
	pods     map[string]netip.Addr  // "project/pod"
}

type fakeClient struct {
	project  string
	networks []string
}

type fakeService struct {
	vip      netip.Addr
	ports    []Port
	tasks    []netip.Addr
	networks []string
}

var _ Resolver = (*fakeResolver)(nil)

func (f *fakeResolver) ClientProject(client netip.Addr) (string, bool) {
	c, ok := f.clients[client]
	return c.project, ok
}

func (f *fakeResolver) lookup(client netip.Addr, project, name string) (fakeService, bool) {
	svc, ok := f.services[project+"/"+name]
	if !ok {
		return fakeService{}, false
	}
	c, isPod := f.clients[client]
	if !isPod {
		return svc, true
	}
	for _, n := range c.networks {
		if slices.Contains(svc.networks, n) {
			return svc, true
		}
	}
	return fakeService{}, false
}

func (f *fakeResolver) Service(client netip.Addr, project, name string) (netip.Addr, []Port, bool) {
	svc, ok := f.lookup(client, project, name)
	return svc.vip, svc.ports, ok
}

func (f *fakeResolver) Tasks(client netip.Addr, project, name string) ([]netip.Addr, bool) {
	svc, ok := f.lookup(client, project, name)
	return svc.tasks, ok
}

func (f *fakeResolver) Pod(project, pod string) (netip.Addr, bool) {
	ip, ok := f.pods[project+"/"+pod]
	return ip, ok
}

var (
	hostIP    = netip.MustParseAddr("127.0.0.1")
	podIP     = netip.MustParseAddr("127.0.0.10") // hello, networks default+back
	frontIP   = netip.MustParseAddr("127.0.0.11") // hello, network front only
	webVIP    = netip.MustParseAddr("10.96.0.10")
	dbVIP     = netip.MustParseAddr("10.96.0.11")
	cacheVIP  = netip.MustParseAddr("10.96.0.12")
	emptyVIP  = netip.MustParseAddr("10.96.0.13")
	bigVIP    = netip.MustParseAddr("10.96.0.14")
	webTask1  = netip.MustParseAddr("10.213.1.2")
	webTask2  = netip.MustParseAddr("10.213.2.2")
	webTask3  = netip.MustParseAddr("10.213.3.2")
	podWeb1   = netip.MustParseAddr("10.213.1.2")
	podCache1 = netip.MustParseAddr("10.213.1.9")
)

func newFakeResolver() *fakeResolver {
	var big []netip.Addr
	for i := range 100 {
		big = append(big, netip.AddrFrom4([4]byte{10, 213, 9, byte(i + 1)}))
	}
	return &fakeResolver{
		clients: map[netip.Addr]fakeClient{
			podIP:   {project: "hello", networks: []string{"default", "back"}},
			frontIP: {project: "hello", networks: []string{"front"}},
		},
		services: map[string]fakeService{
			"hello/web": {
				vip: webVIP,
				ports: []Port{
					{Name: "http", Number: 80, Protocol: "tcp"},
					{Name: "dns", Number: 53, Protocol: "udp"},
					{Number: 9090}, // unnamed, tcp by default
				},
				tasks:    []netip.Addr{webTask1, webTask2, webTask3},
				networks: []string{"default", "front"},
			},
			"hello/db":    {vip: dbVIP, ports: []Port{{Name: "pg", Number: 5432, Protocol: "tcp"}}, tasks: []netip.Addr{netip.MustParseAddr("10.213.1.5")}, networks: []string{"back"}},
			"hello/cache": {vip: cacheVIP, networks: []string{"default"}},
			"hello/empty": {vip: emptyVIP, networks: []string{"default"}},
			"hello/big":   {vip: bigVIP, tasks: big, networks: []string{"default"}},
		},
		pods: map[string]netip.Addr{
			"hello/hello-web-1": podWeb1,
			"hello/cache":       podCache1, // loses against the service of the same name
		},
	}
}

// fakeUpstream is a recursive resolver on loopback: example.com. A 192.0.2.1,
// nosuch. A 192.0.2.2, big.example.com. truncated over UDP and complete over
// TCP, NXDOMAIN otherwise. It records the EDNS size of the queries it gets.
type fakeUpstream struct {
	addr     string
	udpBig   atomic.Int32
	tcpBig   atomic.Int32
	mu       sync.Mutex
	ednsSize []uint16
}

func startUpstream(t *testing.T) *fakeUpstream {
	t.Helper()
	u := &fakeUpstream{}
	pc, ln, err := listenPair(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		_, tcp := w.RemoteAddr().(*net.TCPAddr)
		m := new(dns.Msg)
		m.SetReply(req)
		m.RecursionAvailable = true
		if opt := req.IsEdns0(); opt != nil {
			u.mu.Lock()
			u.ednsSize = append(u.ednsSize, opt.UDPSize())
			u.mu.Unlock()
			m.SetEdns0(4096, false)
		}
		q := req.Question[0]
		a := func(ip string) {
			rr, _ := dns.NewRR(q.Name + " 300 IN A " + ip)
			m.Answer = append(m.Answer, rr)
		}
		switch strings.ToLower(q.Name) {
		case "example.com.":
			a("192.0.2.1")
		case "nosuch.":
			a("192.0.2.2")
		case "big.example.com.":
			if !tcp {
				u.udpBig.Add(1)
				m.Truncated = true
				break
			}
			u.tcpBig.Add(1)
			for i := range 3 {
				a(fmt.Sprintf("192.0.2.%d", 10+i))
			}
		default:
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	servers := []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}}
	var wg sync.WaitGroup
	for _, srv := range servers {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		wg.Go(func() { srv.ActivateAndServe() })
		<-started
	}
	t.Cleanup(func() {
		for _, srv := range servers {
			srv.Shutdown()
		}
		wg.Wait()
	})
	return u
}

// silentUpstream reads nothing and answers nothing.
func silentUpstream(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// runServer runs a Server until the test ends and returns its first address.
func runServer(t *testing.T, cfg Config, r Resolver) (*Server, string) {
	t.Helper()
	if cfg.Addrs == nil {
		cfg.Addrs = []string{"127.0.0.1:0"}
	}
	if cfg.Log == nil {
		cfg.Log = testLogger(t)
	}
	s := New(cfg, r)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-errc:
		cancel()
		t.Fatalf("run: %v", err)
	case <-time.After(5 * time.Second):
		cancel()
		t.Fatal("server not ready after 5s")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return 5s after cancel")
		}
	})
	return s, s.Addrs()[0]
}

type query struct {
	network string // "udp" (default) or "tcp"
	from    netip.Addr
	name    string
	qtype   uint16
	edns    uint16 // 0: no OPT
}

func exchange(t *testing.T, addr string, q query) (*dns.Msg, time.Duration) {
	t.Helper()
	d := &net.Dialer{Timeout: 3 * time.Second}
	if q.from.IsValid() {
		if q.network == "tcp" {
			d.LocalAddr = &net.TCPAddr{IP: q.from.AsSlice()}
		} else {
			d.LocalAddr = &net.UDPAddr{IP: q.from.AsSlice()}
		}
	}
	c := dns.Client{Net: q.network, Dialer: d, Timeout: 3 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion(q.name, q.qtype)
	if q.edns != 0 {
		m.SetEdns0(q.edns, false)
	}
	start := time.Now()
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s %s over %s: %v", q.name, dns.TypeToString[q.qtype], q.network, err)
	}
	if r.Id != m.Id || len(r.Question) != 1 || r.Question[0] != m.Question[0] {
		t.Fatalf("reply id/question = %d %v, want %d %v", r.Id, r.Question, m.Id, m.Question)
	}
	return r, time.Since(start)
}

// rdata renders the answer records as sorted strings: "10.96.0.10",
// "0 100 80 web.hello.dev." for SRV.
func rdata(rrs []dns.RR) []string {
	out := []string{}
	for _, rr := range rrs {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		case *dns.SRV:
			out = append(out, fmt.Sprintf("%d %d %d %s", rr.Priority, rr.Weight, rr.Port, rr.Target))
		default:
			out = append(out, rr.String())
		}
	}
	slices.Sort(out)
	return out
}

func hasSOA(rrs []dns.RR) bool {
	return slices.ContainsFunc(rrs, func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypeSOA })
}

func TestServer(t *testing.T) {
	up := startUpstream(t)
	const ttl = 7
	_, addr := runServer(t, Config{TTL: ttl, Upstreams: []string{up.addr}, Timeout: time.Second}, newFakeResolver())

	tests := []struct {
		name      string
		from      netip.Addr
		qname     string
		qtype     uint16
		wantRcode int
		want      []string // sorted answer rdata
		wantExtra []string // additional section (without OPT)
		wantSOA   bool     // SOA in authority
		forwarded bool     // answered by the upstream (TTL not ours)
	}{
		{name: "service VIP", qname: "web.hello.dev.", qtype: dns.TypeA, want: []string{"10.96.0.10"}},
		{name: "service VIP from a pod", from: podIP, qname: "web.hello.dev.", qtype: dns.TypeA, want: []string{"10.96.0.10"}},
		{name: "case-insensitive", qname: "WeB.HeLLo.DEV.", qtype: dns.TypeA, want: []string{"10.96.0.10"}},
		{name: "tasks", qname: "tasks.web.hello.dev.", qtype: dns.TypeA, want: []string{"10.213.1.2", "10.213.2.2", "10.213.3.2"}},
		{name: "tasks of a service without ready pods", qname: "tasks.empty.hello.dev.", qtype: dns.TypeA, wantSOA: true},
		{name: "tasks of unknown service", qname: "tasks.nope.hello.dev.", qtype: dns.TypeA, wantRcode: dns.RcodeNameError, wantSOA: true},
		{name: "pod name", qname: "hello-web-1.hello.dev.", qtype: dns.TypeA, want: []string{"10.213.1.2"}},
		{name: "service wins over pod", qname: "cache.hello.dev.", qtype: dns.TypeA, want: []string{"10.96.0.12"}},
		{name: "SRV by port name", qname: "_http._tcp.web.hello.dev.", qtype: dns.TypeSRV, want: []string{"0 100 80 web.hello.dev."}, wantExtra: []string{"10.96.0.10"}},
		{name: "SRV by port number", qname: "_80._tcp.web.hello.dev.", qtype: dns.TypeSRV, want: []string{"0 100 80 web.hello.dev."}, wantExtra: []string{"10.96.0.10"}},
		{name: "SRV unnamed port by number", qname: "_9090._tcp.web.hello.dev.", qtype: dns.TypeSRV, want: []string{"0 100 9090 web.hello.dev."}, wantExtra: []string{"10.96.0.10"}},
		{name: "SRV udp port", qname: "_dns._udp.web.hello.dev.", qtype: dns.TypeSRV, want: []string{"0 100 53 web.hello.dev."}, wantExtra: []string{"10.96.0.10"}},
		{name: "SRV wrong protocol", qname: "_http._udp.web.hello.dev.", qtype: dns.TypeSRV, wantRcode: dns.RcodeNameError, wantSOA: true},
		{name: "SRV unknown port", qname: "_ftp._tcp.web.hello.dev.", qtype: dns.TypeSRV, wantRcode: dns.RcodeNameError, wantSOA: true},
		{name: "SRV name asked for A", qname: "_http._tcp.web.hello.dev.", qtype: dns.TypeA, wantSOA: true},
		{name: "bare name from a pod", from: podIP, qname: "web.", qtype: dns.TypeA, want: []string{"10.96.0.10"}},
		{name: "bare name AAAA from a pod", from: podIP, qname: "web.", qtype: dns.TypeAAAA},
		{name: "bare unknown name from a pod is forwarded", from: podIP, qname: "nosuch.", qtype: dns.TypeA, want: []string{"192.0.2.2"}, forwarded: true},
		{name: "bare name from the host is forwarded", qname: "web.", qtype: dns.TypeA, wantRcode: dns.RcodeNameError, forwarded: true},
		{name: "unknown name", qname: "nope.hello.dev.", qtype: dns.TypeA, wantRcode: dns.RcodeNameError, wantSOA: true},
		{name: "too deep", qname: "a.b.c.d.e.hello.dev.", qtype: dns.TypeA, wantRcode: dns.RcodeNameError, wantSOA: true},
		{name: "AAAA of a service is NODATA", qname: "web.hello.dev.", qtype: dns.TypeAAAA, wantSOA: true},
		{name: "TXT of a pod is NODATA", qname: "hello-web-1.hello.dev.", qtype: dns.TypeTXT, wantSOA: true},
		{name: "zone apex SOA", qname: "dev.", qtype: dns.TypeSOA, want: []string{"dev.\t7\tIN\tSOA\tns.dev. hostmaster.dev. 1 3600 600 86400 7"}},
		{name: "scoping: service on another network", from: frontIP, qname: "db.hello.dev.", qtype: dns.TypeA, wantRcode: dns.RcodeNameError, wantSOA: true},
		{name: "scoping: tasks on another network", from: frontIP, qname: "tasks.db.hello.dev.", qtype: dns.TypeA, wantRcode: dns.RcodeNameError, wantSOA: true},
		{name: "scoping: SRV on another network", from: frontIP, qname: "_pg._tcp.db.hello.dev.", qtype: dns.TypeSRV, wantRcode: dns.RcodeNameError, wantSOA: true},
		{name: "scoping: shared network", from: frontIP, qname: "web.hello.dev.", qtype: dns.TypeA, want: []string{"10.96.0.10"}},
		{name: "scoping: bare name on another network is forwarded", from: frontIP, qname: "db.", qtype: dns.TypeA, wantRcode: dns.RcodeNameError, forwarded: true},
		{name: "forwarded", qname: "example.com.", qtype: dns.TypeA, want: []string{"192.0.2.1"}, forwarded: true},
		{name: "forwarded case kept", qname: "ExAmPle.COM.", qtype: dns.TypeA, want: []string{"192.0.2.1"}, forwarded: true},
		{name: "forwarded truncated answer retried over tcp", qname: "big.example.com.", qtype: dns.TypeA, want: []string{"192.0.2.10", "192.0.2.11", "192.0.2.12"}, forwarded: true},
	}
	for _, tt := range tests {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(tt.name+"/"+network, func(t *testing.T) {
				r, _ := exchange(t, addr, query{network: network, from: tt.from, name: tt.qname, qtype: tt.qtype})
				if r.Rcode != tt.wantRcode {
					t.Fatalf("rcode = %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.wantRcode])
				}
				if got := rdata(r.Answer); !slices.Equal(got, tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
					t.Errorf("answer = %q, want %q", got, tt.want)
				}
				if got := rdata(r.Extra); !slices.Equal(got, tt.wantExtra) && !(len(got) == 0 && len(tt.wantExtra) == 0) {
					t.Errorf("extra = %q, want %q", got, tt.wantExtra)
				}
				if got := hasSOA(r.Ns); got != tt.wantSOA {
					t.Errorf("SOA in authority = %v, want %v (%v)", got, tt.wantSOA, r.Ns)
				}
				if r.Truncated {
					t.Errorf("TC set")
				}
				for _, rr := range r.Answer {
					if !tt.forwarded && rr.Header().Ttl != ttl {
						t.Errorf("TTL of %v = %d, want %d", rr, rr.Header().Ttl, ttl)
					}
					if rr.Header().Rrtype != dns.TypeSOA && rr.Header().Name != tt.qname {
						t.Errorf("owner %q, want the question as asked %q", rr.Header().Name, tt.qname)
					}
				}
				if !tt.forwarded && !r.Authoritative && strings.HasSuffix(strings.ToLower(tt.qname), ".dev.") {
					t.Errorf("AA not set on a cluster answer")
				}
			})
		}
	}
	if up.udpBig.Load() == 0 || up.tcpBig.Load() == 0 {
		t.Errorf("upstream saw %d UDP and %d TCP queries for big.example.com., want both", up.udpBig.Load(), up.tcpBig.Load())
	}
}

func TestEDNSAndTruncation(t *testing.T) {
	up := startUpstream(t)
	_, addr := runServer(t, Config{Upstreams: []string{up.addr}}, newFakeResolver())

	tests := []struct {
		name          string
		q             query
		wantTC        bool
		wantAnswers   int // exact, or at least when wantTC
		wantOPT       uint16
		wantMaxLength int
	}{
		{name: "100 tasks over udp without EDNS", q: query{network: "udp", name: "tasks.big.hello.dev.", qtype: dns.TypeA}, wantTC: true, wantMaxLength: 512},
		{name: "100 tasks over udp with EDNS 4096 capped at 1232", q: query{network: "udp", name: "tasks.big.hello.dev.", qtype: dns.TypeA, edns: 4096}, wantTC: true, wantOPT: ednsSize, wantMaxLength: ednsSize},
		{name: "100 tasks over tcp", q: query{network: "tcp", name: "tasks.big.hello.dev.", qtype: dns.TypeA}, wantAnswers: 100},
		{name: "EDNS echoed", q: query{network: "udp", name: "web.hello.dev.", qtype: dns.TypeA, edns: 4096}, wantAnswers: 1, wantOPT: ednsSize},
		{name: "EDNS on a forwarded answer", q: query{network: "udp", name: "example.com.", qtype: dns.TypeA, edns: 1400}, wantAnswers: 1, wantOPT: ednsSize},
		{name: "no EDNS on a forwarded answer", q: query{network: "udp", name: "example.com.", qtype: dns.TypeA}, wantAnswers: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := exchange(t, addr, tt.q)
			if r.Truncated != tt.wantTC {
				t.Errorf("TC = %v, want %v", r.Truncated, tt.wantTC)
			}
			if !tt.wantTC && len(r.Answer) != tt.wantAnswers {
				t.Errorf("%d answers, want %d", len(r.Answer), tt.wantAnswers)
			}
			var got uint16
			if opt := r.IsEdns0(); opt != nil {
				got = opt.UDPSize()
			}
			if got != tt.wantOPT {
				t.Errorf("OPT size = %d, want %d", got, tt.wantOPT)
			}
			if tt.wantMaxLength > 0 {
				r.Compress = true // as sent
				if n := r.Len(); n > tt.wantMaxLength {
					t.Errorf("reply is %d bytes, want at most %d", n, tt.wantMaxLength)
				}
			}
		})
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	for _, n := range up.ednsSize {
		if n != ednsSize {
			t.Errorf("upstream query advertised %d, want %d", n, ednsSize)
		}
	}
}

func TestForwardFailures(t *testing.T) {
	const timeout = 300 * time.Millisecond
	tests := []struct {
		name      string
		upstreams func(t *testing.T) []string
		wantRcode int
		want      []string
		maxTime   time.Duration
	}{
		{
			name:      "silent upstream gives SERVFAIL within the timeout",
			upstreams: func(t *testing.T) []string { return []string{silentUpstream(t)} },
			wantRcode: dns.RcodeServerFailure,
			maxTime:   timeout + time.Second,
		},
		{
			name:      "next upstream tried after a silent one",
			upstreams: func(t *testing.T) []string { return []string{silentUpstream(t), startUpstream(t).addr} },
			want:      []string{"192.0.2.1"},
			maxTime:   timeout + time.Second,
		},
		{
			name:      "no upstreams gives SERVFAIL",
			upstreams: func(t *testing.T) []string { return []string{} },
			wantRcode: dns.RcodeServerFailure,
			maxTime:   time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, addr := runServer(t, Config{Upstreams: tt.upstreams(t), Timeout: timeout}, newFakeResolver())
			r, took := exchange(t, addr, query{name: "example.com.", qtype: dns.TypeA})
			if r.Rcode != tt.wantRcode {
				t.Errorf("rcode = %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.wantRcode])
			}
			if got := rdata(r.Answer); !slices.Equal(got, tt.want) && len(got)+len(tt.want) > 0 {
				t.Errorf("answer = %q, want %q", got, tt.want)
			}
			if took > tt.maxTime {
				t.Errorf("took %v, want at most %v", took, tt.maxTime)
			}
		})
	}
}

func TestParseResolvConf(t *testing.T) {
	own := netip.MustParseAddr("10.213.1.1")
	tests := []struct {
		name        string
		conf        string
		want        []string
		wantSkipped int
	}{
		{
			name: "nameservers in order",
			conf: "# generated\nsearch lan\nnameserver 192.168.1.1\nnameserver 2001:db8::1\noptions ndots:1\n",
			want: []string{"192.168.1.1:53", "[2001:db8::1]:53"},
		},
		{
			name:        "loopback stub skipped",
			conf:        "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n",
			wantSkipped: 1,
		},
		{
			name:        "loopback, own address and garbage skipped",
			conf:        "nameserver 127.0.0.1\nnameserver ::1\nnameserver 10.213.1.1\nnameserver bogus\nnameserver\n; nameserver 9.9.9.9\n  nameserver   8.8.8.8  \nnameserver 8.8.8.8\n",
			want:        []string{"8.8.8.8:53"},
			wantSkipped: 3,
		},
		{
			name: "zone kept",
			conf: "nameserver fe80::1%eth0\n",
			want: []string{"[fe80::1%eth0]:53"},
		},
		{name: "empty", conf: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, skipped, err := parseResolvConf(strings.NewReader(tt.conf), func(ip netip.Addr) bool { return ip == own })
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("upstreams = %q, want %q", got, tt.want)
			}
			if skipped != tt.wantSkipped {
				t.Errorf("skipped = %d, want %d", skipped, tt.wantSkipped)
			}
		})
	}
}

func TestOwnAddrSkipper(t *testing.T) {
	tests := []struct {
		name   string
		listen []string
		ip     string
		want   bool
	}{
		{name: "own address on port 53", listen: []string{"10.213.1.1:53"}, ip: "10.213.1.1", want: true},
		{name: "own address on another port", listen: []string{"10.213.1.1:1053"}, ip: "10.213.1.1", want: false},
		{name: "other address", listen: []string{"10.213.1.1:53"}, ip: "10.213.1.2", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ownAddrSkipper(tt.listen)(netip.MustParseAddr(tt.ip)); got != tt.want {
				t.Errorf("skip(%s) = %v, want %v", tt.ip, got, tt.want)
			}
		})
	}
}

func TestUpstreamsFromResolvConf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(path, []byte("nameserver 127.0.0.1\nnameserver 192.0.2.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, _ := runServer(t, Config{ResolvConf: path}, newFakeResolver())
	if got, want := s.currentUpstreams(), []string{"192.0.2.53:53"}; !slices.Equal(got, want) {
		t.Errorf("upstreams = %q, want %q", got, want)
	}
}

func TestRun(t *testing.T) {
	t.Run("returns after cancel and frees the ports", func(t *testing.T) {
		s := New(Config{Addrs: []string{"127.0.0.1:0", "127.0.0.1:0"}, Upstreams: []string{}, Log: testLogger(t)}, newFakeResolver())
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- s.Run(ctx) }()
		select {
		case <-s.Ready():
		case err := <-errc:
			t.Fatalf("run: %v", err)
		}
		addrs := s.Addrs()
		if len(addrs) != 2 {
			t.Fatalf("Addrs() = %q, want 2", addrs)
		}
		for _, a := range addrs {
			for _, network := range []string{"udp", "tcp"} {
				if r, _ := exchange(t, a, query{network: network, name: "web.hello.dev.", qtype: dns.TypeA}); len(r.Answer) != 1 {
					t.Errorf("%s %s: %d answers", network, a, len(r.Answer))
				}
			}
		}
		// An idle TCP client must not hold the shutdown.
		idle, err := net.Dial("tcp", addrs[0])
		if err != nil {
			t.Fatal(err)
		}
		defer idle.Close()
		time.Sleep(50 * time.Millisecond)

		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Fatalf("run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return 5s after cancel")
		}
		for _, a := range addrs {
			pc, ln, err := listenPair(context.Background(), a)
			if err != nil {
				t.Fatalf("rebind %s after Run: %v", a, err)
			}
			pc.Close()
			ln.Close()
		}
		if err := s.Run(t.Context()); err == nil {
			t.Error("second Run succeeded, want an error")
		}
	})

	t.Run("bind failure names the address", func(t *testing.T) {
		busy, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		addr := busy.LocalAddr().String()
		s := New(Config{Addrs: []string{"127.0.0.1:0", addr}, Upstreams: []string{}}, newFakeResolver())
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		err = s.Run(ctx)
		if err == nil || !strings.Contains(err.Error(), addr) {
			t.Fatalf("Run = %v, want an error naming %s", err, addr)
		}
		select {
		case <-s.Ready():
			t.Error("Ready closed after a bind failure")
		default:
		}
	})

	t.Run("no address", func(t *testing.T) {
		err := New(Config{}, newFakeResolver()).Run(t.Context())
		if err == nil {
			t.Fatal("Run without addresses succeeded")
		}
	})
}

func TestHandlerInProcess(t *testing.T) {
	h := New(Config{Upstreams: []string{}}, newFakeResolver()).Handler()
	req := new(dns.Msg)
	req.SetQuestion("web.hello.dev.", dns.TypeA)
	w := &recorder{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}}
	h.ServeDNS(w, req)
	if w.msg == nil || rdata(w.msg.Answer)[0] != "10.96.0.10" {
		t.Fatalf("reply = %v", w.msg)
	}
}

// recorder is a dns.ResponseWriter keeping the reply.
type recorder struct {
	remote net.Addr
	msg    *dns.Msg
}

func (r *recorder) LocalAddr() net.Addr  { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (r *recorder) RemoteAddr() net.Addr { return r.remote }
func (r *recorder) WriteMsg(m *dns.Msg) error {
	r.msg = m
	return nil
}

func (r *recorder) Write(b []byte) (int, error) {
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return 0, err
	}
	r.msg = m
	return len(b), nil
}
func (r *recorder) Close() error        { return nil }
func (r *recorder) TsigStatus() error   { return nil }
func (r *recorder) TsigTimersOnly(bool) {}
func (r *recorder) Hijack()             {}

// TestAllowAndForwardCap: a source Allow refuses gets REFUSED for cluster
// and outside names alike (the server is no one else's resolver); with
// MaxForwards queries waiting on a silent upstream, the next gets SERVFAIL
// at once instead of another wait.
func TestAllowAndForwardCap(t *testing.T) {
	member := netip.MustParseAddr("127.0.0.1")
	allow := func(a netip.Addr) bool { return a == member }
	srv, addr := runServer(t, Config{Upstreams: []string{silentUpstream(t)}, Timeout: 2 * time.Second, Allow: allow, MaxForwards: 1}, newFakeResolver())
	stranger := netip.MustParseAddr("127.0.0.9")
	for _, name := range []string{"web.hello.dev.", "example.com."} {
		for _, network := range []string{"udp", "tcp"} {
			if r, _ := exchange(t, addr, query{network: network, from: stranger, name: name, qtype: dns.TypeA}); r.Rcode != dns.RcodeRefused {
				t.Errorf("%s from a stranger over %s: %s, want REFUSED", name, network, dns.RcodeToString[r.Rcode])
			}
		}
	}
	if r, _ := exchange(t, addr, query{from: member, name: "web.hello.dev.", qtype: dns.TypeA}); len(r.Answer) != 1 {
		t.Errorf("web.hello.dev. from a member: %v", r)
	}
	// One query waits on the silent upstream; the next fails at once.
	waiting := make(chan struct{})
	go func() {
		defer close(waiting)
		exchange(t, addr, query{from: member, name: "slow.example.", qtype: dns.TypeA})
	}()
	for deadline := time.Now().Add(2 * time.Second); len(srv.forwards) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first query never reached the upstream")
		}
	}
	r, took := exchange(t, addr, query{from: member, name: "example.com.", qtype: dns.TypeA})
	if r.Rcode != dns.RcodeServerFailure || took > time.Second {
		t.Errorf("a query beyond MaxForwards: %s after %v, want SERVFAIL at once", dns.RcodeToString[r.Rcode], took)
	}
	<-waiting
}

// TestObserve: Config.Observe is told of every query, once, how it was
// answered.
func TestObserve(t *testing.T) {
	up := startUpstream(t)
	stranger := netip.MustParseAddr("127.0.0.9")
	allow := func(a netip.Addr) bool { return a != stranger }
	var got []string
	observe := func(result string) { got = append(got, result) }
	withUpstream := New(Config{Upstreams: []string{up.addr}, Timeout: time.Second, Allow: allow, Observe: observe}, newFakeResolver()).Handler()
	noUpstream := New(Config{Upstreams: []string{}, Observe: observe}, newFakeResolver()).Handler()

	tests := []struct {
		name  string
		h     dns.Handler
		from  netip.Addr
		qname string
		edit  func(*dns.Msg)
		want  string
	}{
		{name: "service", h: withUpstream, qname: "web.hello.dev.", want: ResultAnswered},
		{name: "NODATA", h: withUpstream, qname: "tasks.empty.hello.dev.", want: ResultAnswered},
		{name: "bare name from a pod", h: withUpstream, from: podIP, qname: "web.", want: ResultAnswered},
		{name: "unknown cluster name", h: withUpstream, qname: "nope.hello.dev.", want: ResultNXDomain},
		{name: "outside name", h: withUpstream, qname: "example.com.", want: ResultForwarded},
		{name: "outside name the upstream says does not exist", h: withUpstream, qname: "nope.example.", want: ResultForwarded},
		{name: "a source Allow refuses", h: withUpstream, from: stranger, qname: "web.hello.dev.", want: ResultRefused},
		{name: "class CH in the cluster domain", h: withUpstream, qname: "web.hello.dev.", edit: func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }, want: ResultRefused},
		{name: "another opcode", h: withUpstream, qname: "web.hello.dev.", edit: func(m *dns.Msg) { m.Opcode = dns.OpcodeStatus }, want: ResultRefused},
		{name: "no upstream answers", h: noUpstream, qname: "example.com.", want: ResultServFail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got = nil
			from := tt.from
			if !from.IsValid() {
				from = hostIP
			}
			req := new(dns.Msg)
			req.SetQuestion(tt.qname, dns.TypeA)
			if tt.edit != nil {
				tt.edit(req)
			}
			w := &recorder{remote: net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 5353))}
			tt.h.ServeDNS(w, req)
			if w.msg == nil {
				t.Fatal("no reply")
			}
			if !slices.Equal(got, []string{tt.want}) {
				t.Errorf("observed %q (rcode %s), want [%s]", got, dns.RcodeToString[w.msg.Rcode], tt.want)
			}
			if !slices.Contains(Results, tt.want) {
				t.Errorf("%s is not in Results", tt.want)
			}
		})
	}
}
