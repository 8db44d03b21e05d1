// Command controlplane measures the control plane at scale, in process: a
// real single-voter raft store (bbolt log on a temp dir, TCP transport on
// loopback), the real replication controller and scheduler, and no agents.
// It registers N ready nodes, submits projects totalling P pods, and times
// from the submission until every pod is bound to a node. It prints pods/s
// and memory and appends results.Record lines to <results dir>/controlplane.jsonl.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/devhq/dev/bench/results"
	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/controller"
	"github.com/devhq/dev/cluster/raftstore"
	"github.com/devhq/dev/cluster/state"
)

// Per-node offer and per-pod reservation: 1,000 nodes x 4 CPU / 16 GiB take
// 10,000 pods of 0.1 CPU / 128 MiB with room to spare, so that the resource
// filter runs on every node without rejecting.
const (
	nodeCPU = 4_000_000_000
	nodeMem = 16 << 30
	podCPU  = 100_000_000
	podMem  = 128 << 20
)

type options struct {
	nodes, pods, services, projects, runs int
	timeout                               time.Duration
	out                                   string
	cpuProfile, memProfile                string
	noRecord, trace                       bool
	steadyWindow                          time.Duration
}

func main() {
	var o options
	flag.IntVar(&o.nodes, "nodes", 1000, "ready nodes to register")
	flag.IntVar(&o.pods, "pods", 10000, "pods to submit in total")
	flag.IntVar(&o.services, "services", 100, "services the pods are spread over")
	flag.IntVar(&o.projects, "projects", 10, "projects the services are spread over (one ApplyProject each)")
	flag.IntVar(&o.runs, "runs", 3, "runs, each on a fresh raft store")
	quick := flag.Bool("quick", false, "100 nodes, 1000 pods, 1 run")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up on a run after this long")
	flag.StringVar(&o.out, "out", "", "results file (default <results dir>/controlplane.jsonl)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the timed parts to this file")
	flag.StringVar(&o.memProfile, "memprofile", "", "write a heap profile at the end of the last run to this file")
	flag.BoolVar(&o.noRecord, "norecord", false, "print only; do not append to the results file")
	flag.BoolVar(&o.trace, "trace", false, "print each command the controller proposes, with its timing")
	flag.DurationVar(&o.steadyWindow, "steady", 30*time.Second, "window of the steady-state case (nodes heartbeating, nothing changing); 0: skip it")
	flag.Parse()
	if *quick {
		o.nodes, o.pods, o.runs = 100, 1000, 1
		o.steadyWindow = min(o.steadyWindow, 6*time.Second)
		if o.services > o.pods/10 {
			o.services = o.pods / 10
		}
	}
	if o.out == "" {
		o.out = filepath.Join(results.Dir(), "controlplane.jsonl")
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "controlplane:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.nodes < 1 || o.pods < 1 || o.services < 1 || o.services > o.pods || o.projects < 1 || o.projects > o.services || o.runs < 1 {
		return fmt.Errorf("want nodes >= 1, 1 <= projects <= services <= pods, runs >= 1")
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return fmt.Errorf("create cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("start cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}

	kase := fmt.Sprintf("%d nodes, %d pods", o.nodes, o.pods)
	fmt.Printf("control plane: %s (%d services in %d projects), %d run(s), GOMAXPROCS %d\n",
		kase, o.services, o.projects, o.runs, runtime.GOMAXPROCS(0))
	var rates, heaps, rsss []float64
	for i := range o.runs {
		m, err := once(o, i == o.runs-1)
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		rate := float64(o.pods) / m.elapsed.Seconds()
		fmt.Printf("run %d: %d pods assigned in %v: %.0f pods/s; %d raft entries; Go heap in use %.1f MB, RSS %.1f MB\n",
			i+1, o.pods, m.elapsed.Round(time.Millisecond), rate, m.entries, m.heapMB, m.rssMB)
		rates = append(rates, rate)
		heaps = append(heaps, m.heapMB)
		rsss = append(rsss, m.rssMB)
	}

	note := fmt.Sprintf("in process: single-voter raft (bbolt, TCP loopback), replication controller + scheduler, no agents; "+
		"%d services x %d replicas in %d projects, 0.1 CPU / 128 MiB reserved per pod, nodes 4 CPU / 16 GiB; "+
		"from the ApplyProject proposals to every pod bound to a node; GOMAXPROCS %d",
		o.services, o.pods/o.services, o.projects, runtime.GOMAXPROCS(0))
	recs := []results.Record{
		{Measure: "controlplane", Case: kase, Tool: "dev", Unit: "pods/s", HigherIsBetter: true, Runs: rates, Note: note},
		{Measure: "controlplane-memory", Case: kase + ": RSS", Tool: "dev", Unit: "MB", Runs: rsss,
			Note: "VmRSS of the benchmark process (raft + state + controller) once every pod is bound; runs share the process"},
		{Measure: "controlplane-memory", Case: kase + ": Go heap", Tool: "dev", Unit: "MB", Runs: heaps,
			Note: "runtime.MemStats.HeapInuse after a GC once every pod is bound (the raft store is still open)"},
	}
	if o.steadyWindow > 0 {
		sr, err := steady(o, o.steadyWindow)
		if err != nil {
			return fmt.Errorf("steady state: %w", err)
		}
		recs = append(recs, sr...)
	}
	med := recs[0].Median()
	fmt.Printf("median: %.0f pods/s (aim 10,000; kube-scheduler publishes ~100-300); RSS %.1f MB, Go heap %.1f MB\n",
		med, recs[1].Median(), recs[2].Median())
	if o.noRecord {
		return nil
	}
	if err := results.Append(o.out, recs...); err != nil {
		return err
	}
	fmt.Println("appended to", o.out)
	return nil
}

type measurement struct {
	elapsed       time.Duration
	entries       uint64 // raft entries from submission to all assigned
	heapMB, rssMB float64
}

// once runs the measurement on a fresh raft store.
func once(o options, last bool) (measurement, error) {
	var m measurement
	// Start each run from what the previous one left behind.
	runtime.GC()
	debug.FreeOSMemory()

	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	r, log, closeStore, err := openStore(ctx, o.nodes)
	if err != nil {
		return m, err
	}
	defer closeStore()

	// The leader's controller is running before the submission, as in a
	// cluster; a long node timeout keeps the node monitor out of the figure.
	st := r.State()
	tw := &tracingWriter{w: r, on: o.trace}
	c := controller.New(st, tw, controller.Options{NodeTimeout: time.Hour}, log)
	cctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = c.Run(cctx) }()
	defer func() { stop(); wg.Wait() }()

	before := st.Index()
	start := time.Now()
	tw.start(start)
	for _, p := range projects(o) {
		if _, err := r.Apply(ctx, &state.ApplyProject{Project: p, ServiceCIDR: "10.96.0.0/12"}); err != nil {
			return m, fmt.Errorf("apply project %s: %w", p.Name, err)
		}
	}
	if err := waitAssigned(ctx, st, o.pods); err != nil {
		return m, err
	}
	m.elapsed = time.Since(start)
	m.entries = st.Index() - before
	stop()
	wg.Wait()

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.heapMB = float64(ms.HeapInuse) / 1e6
	m.rssMB, err = rssMB()
	if err != nil {
		return m, err
	}
	if last && o.memProfile != "" {
		f, err := os.Create(o.memProfile)
		if err != nil {
			return m, fmt.Errorf("create heap profile: %w", err)
		}
		defer f.Close()
		if err := pprof.WriteHeapProfile(f); err != nil {
			return m, fmt.Errorf("write heap profile: %w", err)
		}
	}
	runtime.KeepAlive(r)
	return m, nil
}

// openStore opens a fresh single-voter raft store on a temp dir, waits for
// its leadership and registers n ready nodes; closeStore removes it all.
func openStore(ctx context.Context, n int) (r *raftstore.Raft, log *slog.Logger, closeStore func(), err error) {
	dir, err := os.MkdirTemp("", "dev-controlplane-")
	if err != nil {
		return nil, nil, nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, nil, err
	}
	log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r, err = raftstore.Open(raftstore.Config{DataDir: dir, NodeID: "bench", BindAddr: addr, Bootstrap: true, Fast: true, Log: log})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, nil, err
	}
	closeStore = func() { r.Close(); os.RemoveAll(dir) }
	if err := waitLeader(ctx, r); err != nil {
		closeStore()
		return nil, nil, nil, err
	}
	if err := registerNodes(ctx, r, n); err != nil {
		closeStore()
		return nil, nil, nil, err
	}
	return r, log, closeStore, nil
}

// tracingWriter passes the controller's proposals to raft and, when on,
// prints each one: when it was proposed (since the submission), how long
// raft took to commit and apply it, and its size.
type tracingWriter struct {
	w  controller.Writer
	on bool
	mu sync.Mutex
	t0 time.Time
}

func (tw *tracingWriter) start(t time.Time) {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	tw.t0 = t
}

func (tw *tracingWriter) Apply(ctx context.Context, cmd state.Command) (uint64, error) {
	if !tw.on {
		return tw.w.Apply(ctx, cmd)
	}
	t := time.Now()
	idx, err := tw.w.Apply(ctx, cmd)
	size := 0
	if b, err := state.Encode(cmd); err == nil {
		size = len(b)
	}
	tw.mu.Lock()
	defer tw.mu.Unlock()
	if !tw.t0.IsZero() {
		fmt.Printf("  +%7.1fms %-24T %8d bytes, applied in %6.1fms (index %d, err %v)\n",
			float64(t.Sub(tw.t0).Microseconds())/1000, cmd, size, float64(time.Since(t).Microseconds())/1000, idx, err)
	}
	return idx, err
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitLeader(ctx context.Context, r *raftstore.Raft) error {
	for !r.IsLeader() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for raft leadership: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return r.WaitReady(ctx)
}

// registerNodes puts n ready nodes through raft, a few proposals at a time
// (raft batches concurrent proposals into one fsync). Not timed.
func registerNodes(ctx context.Context, r *raftstore.Raft, n int) error {
	const inflight = 64
	sem := make(chan struct{}, inflight)
	errc := make(chan error, n)
	var wg sync.WaitGroup
	now := time.Now().UTC()
	for i := range n {
		node := api.Node{
			Name:        fmt.Sprintf("node-%04d", i+1),
			Address:     fmt.Sprintf("10.0.%d.%d", (i+1)/256, (i+1)%256),
			Status:      api.NodeReady,
			PodSubnet:   fmt.Sprintf("10.%d.%d.0/24", 100+(i/256), i%256),
			Labels:      map[string]string{"zone": fmt.Sprintf("zone-%d", i%3)},
			Allocatable: api.ResourceAmounts{NanoCPUs: nodeCPU, MemoryBytes: nodeMem},
			Heartbeat:   now,
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, err := r.Apply(ctx, &state.PutNode{Node: node}); err != nil {
				errc <- fmt.Errorf("register node %s: %w", node.Name, err)
			}
		}()
	}
	wg.Wait()
	close(errc)
	return <-errc // nil when no error was sent
}

// projects splits o.services services of o.pods/o.services replicas (the
// remainder spread over the first ones) into o.projects projects.
func projects(o options) []api.Project {
	out := make([]api.Project, o.projects)
	for i := range out {
		out[i].Name = fmt.Sprintf("p%02d", i+1)
	}
	per, extra := o.pods/o.services, o.pods%o.services
	for s := range o.services {
		p := &out[s%o.projects]
		replicas := per
		if s < extra {
			replicas++
		}
		p.Services = append(p.Services, api.ServiceSpec{
			Project:  p.Name,
			Name:     fmt.Sprintf("svc%03d", s+1),
			Image:    "registry.example/app:1.0",
			Command:  []string{"/app", "--port", "8080"},
			Expose:   []string{"8080"},
			Replicas: replicas,
			Resources: api.Resources{
				Reservations: api.ResourceAmounts{NanoCPUs: podCPU, MemoryBytes: podMem},
			},
			Labels:   map[string]string{"tier": "web"},
			Networks: []api.NetworkAttachment{{Name: "default"}},
		})
	}
	return out
}

// waitAssigned blocks until the store holds want pods, all bound to a node.
func waitAssigned(ctx context.Context, st *state.Store, want int) error {
	var idx uint64
	for {
		total, assigned := 0, 0
		for _, p := range st.Pods(state.PodFilter{}) {
			total++
			if p.Node != "" {
				assigned++
			}
		}
		if total == want && assigned == want {
			return nil
		}
		next := st.WaitIndex(ctx, idx)
		if ctx.Err() != nil {
			return fmt.Errorf("wait for %d pods assigned (have %d pods, %d assigned): %w", want, total, assigned, ctx.Err())
		}
		idx = next
	}
}

// rssMB reads VmRSS of this process.
func rssMB() (float64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("read rss: %w", err)
	}
	defer f.Close()
	return parseRSS(f)
}

func parseRSS(r io.Reader) (float64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
		if err != nil {
			return 0, fmt.Errorf("parse VmRSS %q: %w", rest, err)
		}
		return kb * 1024 / 1e6, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no VmRSS in /proc/self/status")
}
