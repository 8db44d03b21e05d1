package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// Scale of the rule-programming benchmarks: 1,000 services of 10 endpoints
// each, every service with a VIP (10.216.0.0/16), its endpoints in the pod
// network (10.215.0.0/16) and one published port: 2,000 generated chains,
// 10,000 hairpin elements, 1,000 VIPs, 1,000 service-ips and 1,000
// node-ports elements.
const (
	kbServices  = 1000
	kbEndpoints = 10
)

// kbNeedRoot is needRoot for benchmarks and tests alike; it also needs the
// tools given (besides ip).
func kbNeedRoot(tb testing.TB, tools ...string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			tb.Fatal("needs root (netns, nftables) and CI is set")
		}
		tb.Skip("needs root")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				tb.Fatalf("needs %s: %v", tool, err)
			}
			tb.Skipf("needs %s: %v", tool, err)
		}
	}
}

// kbNamespace creates a private network namespace devpxb-TAG-PID with lo
// and an empty pod bridge br0 (what newTestKernel is configured with), and
// deletes it (and the table in it) when tb ends, whether it passed or not.
//
// With DEV_BENCH_OWN_NETNS=1 the process is taken to run in a namespace of
// its own already (`unshare -n`, see bench/rules.sh) and works there
// directly: no OS thread locked to a namespace, as in the agent, whose
// netlink reads a locked thread slows down with a scheduler hand-off each.
func kbNamespace(tb testing.TB, tag string) string {
	tb.Helper()
	if os.Getenv("DEV_BENCH_OWN_NETNS") == "1" {
		tb.Cleanup(func() { _ = exec.Command("nft", "delete", "table", "ip", DefaultTable).Run() })
		_ = exec.Command("ip", "link", "set", "lo", "up").Run()
		_ = exec.Command("ip", "link", "add", "br0", "type", "bridge").Run()
		return ""
	}
	ns := fmt.Sprintf("devpxb-%s-%d", tag, os.Getpid())
	_ = exec.Command("ip", "netns", "del", ns).Run() // a previous run killed mid-way
	tb.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil && !strings.Contains(string(out), "No such file") {
			tb.Errorf("delete netns %s: %v: %s", ns, err, out)
		}
	})
	run(tb, "ip", "netns", "add", ns)
	run(tb, "ip", "-n", ns, "link", "set", "lo", "up")
	run(tb, "ip", "-n", ns, "link", "add", "br0", "type", "bridge")
	run(tb, "ip", "-n", ns, "link", "set", "br0", "up")
	return ns
}

// kbScaleServices returns the 1,000 x 10 services; endpoint n (0-9,999) is
// 10.215.(1+n/250).(2+n%250), two of each service's on this node.
func kbScaleServices() []Service {
	svcs := make([]Service, kbServices)
	for i := range svcs {
		v := i + 1
		s := Service{
			Name:      fmt.Sprintf("bench/svc-%04d", i),
			VIP:       netip.AddrFrom4([4]byte{10, 216, byte(v >> 8), byte(v)}),
			Endpoints: make([]Endpoint, 0, kbEndpoints),
			Published: []Published{{Port: uint16(30000 + i), Target: 8080, Protocol: "tcp"}},
		}
		for j := range kbEndpoints {
			n := i*kbEndpoints + j
			s.Endpoints = append(s.Endpoints, Endpoint{
				Addr:  netip.AddrFrom4([4]byte{10, 215, byte(1 + n/250), byte(2 + n%250)}),
				Local: j < 2,
			})
		}
		svcs[i] = s
	}
	return svcs
}

// BenchmarkNFTablesFullResync measures replacing the whole table (what a
// restarted agent, or a repair after another program flushed the ruleset,
// does): a fresh NFTables each iteration, whose first Apply plans the
// 1,000 x 10 services and sends the table in one transaction. The table is
// already in place when the timing starts, so every iteration also deletes
// the previous one. MB-state is the Go heap held by an NFTables and the
// ruleset it programmed (HeapAlloc after GC, minus before).
func BenchmarkNFTablesFullResync(b *testing.B) {
	kbNeedRoot(b)
	ns := kbNamespace(b, "full")
	svcs := kbScaleServices()

	var heldMB float64
	if err := inNS(ns, func() error {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&before)
		k := newTestKernel(b)
		if err := k.Apply(svcs); err != nil {
			return err
		}
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(k)
		heldMB = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / (1 << 20)
		return nil
	}); err != nil {
		b.Fatalf("first Apply: %v", err)
	}

	b.ReportAllocs()
	b.ResetTimer()
	err := inNS(ns, func() error {
		for i := 0; i < b.N; i++ {
			k := newTestKernel(b)
			if err := k.Apply(svcs); err != nil {
				return fmt.Errorf("iteration %d: %w", i, err)
			}
		}
		return nil
	})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e6/float64(b.N), "ms/op")
	b.ReportMetric(heldMB, "MB-state")
}

// BenchmarkNFTablesEndpointChange measures one incremental Apply with the
// 1,000 x 10 table in place: one endpoint of one service becomes unready
// (removed: its chains refilled, its hairpin element and UDP conntrack
// entries deleted), then ready again, alternately, a different service each
// time. This is the time from a pod becoming unready (or ready) to the rule
// change being in the kernel, planning of every service included.
func BenchmarkNFTablesEndpointChange(b *testing.B) {
	kbNeedRoot(b)
	ns := kbNamespace(b, "ep")
	svcs := kbScaleServices()
	ready := make([][]Endpoint, len(svcs))
	unready := make([][]Endpoint, len(svcs))
	for i, s := range svcs {
		ready[i] = s.Endpoints
		unready[i] = slices.Delete(slices.Clone(s.Endpoints), 5, 6)
	}
	k := newTestKernel(b)

	var worst, flush time.Duration
	err := inNS(ns, func() error {
		if err := k.Apply(svcs); err != nil {
			return fmt.Errorf("initial Apply: %w", err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			s := (i / 2 * 7) % len(svcs)
			if i%2 == 0 {
				svcs[s].Endpoints = unready[s]
			} else {
				svcs[s].Endpoints = ready[s]
			}
			start := time.Now()
			if err := k.Apply(svcs); err != nil {
				return fmt.Errorf("iteration %d: %w", i, err)
			}
			worst = max(worst, time.Since(start))
			// The UDP conntrack flush of a gone endpoint follows the rule
			// change (proxy.Run calls it next); timed apart.
			b.StopTimer()
			fs := time.Now()
			k.FlushStale()
			flush += time.Since(fs)
			b.StartTimer()
		}
		b.StopTimer()
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	if want := 2 * kbServices; len(k.cur.chains) != want {
		b.Fatalf("after the changes the plan has %d chains, want %d", len(k.cur.chains), want)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e6/float64(b.N), "ms/op")
	b.ReportMetric(float64(worst.Nanoseconds())/1e6, "max-ms")
	b.ReportMetric(float64(flush.Nanoseconds())/1e6/float64(b.N), "flush-ms/op")
}

// TestNFTablesScale programs the 1,000 x 10 services once, in a namespace of
// its own, and checks with nft that the table holds them all.
func TestNFTablesScale(t *testing.T) {
	kbNeedRoot(t, "nft")
	ns := kbNamespace(t, "scale")
	svcs := kbScaleServices()
	k := newTestKernel(t)
	start := time.Now()
	if err := inNS(ns, func() error { return k.Apply(svcs) }); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	t.Logf("%d services x %d endpoints programmed in %v", kbServices, kbEndpoints, time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "nft", "list", "table", "ip", DefaultTable).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list table: %v: %.2000s", err, out)
	}
	table := string(out)
	for _, c := range []struct {
		obj, goTo string
	}{{"map " + mapServiceIPs, "goto svc-"}, {"map " + mapNodePorts, "goto pub-"}} {
		block, ok := kbBlock(table, c.obj)
		if !ok {
			t.Fatalf("no %s in the table:\n%.2000s", c.obj, table)
		}
		if n := strings.Count(block, c.goTo); n != kbServices {
			t.Errorf("%s holds %d elements, want %d", c.obj, n, kbServices)
		}
	}
	if n, want := strings.Count(table, "\tchain "), 2*kbServices+fixedChains; n != want {
		t.Errorf("the table has %d chains, want %d", n, want)
	}
}

// kbBlock returns the block of the object named head ("map service-ips")
// in the output of nft list table, from its header to its closing brace.
func kbBlock(table, head string) (string, bool) {
	i := strings.Index(table, "\t"+head+" {\n")
	if i < 0 {
		return "", false
	}
	rest := table[i:]
	end := strings.Index(rest, "\n\t}\n")
	if end < 0 {
		return "", false
	}
	return rest[:end], true
}
