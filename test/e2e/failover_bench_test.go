package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/devhq/dev/bench/results"
)

// The failover benchmark: 3 simulated hosts, a service of 6 replicas with a
// published port, one host's link cut. It measures the time from the cut
// until the 6 replicas run on the two other hosts (counted through their
// engines' APIs) and the published port answers on a surviving host, for dev
// (with --fast gossip timers and with the default ones) and for Docker swarm
// mode on the same kind of hosts.
//
//	DEV_BENCH=1 DEV_BENCH_RUNS=5 go test -count=1 -run TestFailoverBenchmark -v -timeout 30m ./test/e2e/
//
// Results are appended to results.Dir()/failover.jsonl.

const (
	fbReplicas = 6
	fbProject  = "fobench" // dev project and swarm service name
	fbService  = "web"
	fbPort     = "18080"
	fbCase     = "3 hosts, 6 replicas, one host cut"
	fbWait     = 3 * time.Minute // any single convergence must happen within this
)

const fbCompose = `name: ` + fbProject + `
services:
  ` + fbService + `:
    image: ` + testImage + `
    command: ["serve"]
    deploy:
      replicas: 6
    ports:
      - "` + fbPort + `:8080"
`

// fbRun is one measured failover.
type fbRun struct {
	victim   string
	failover time.Duration // cut -> 6 running on the survivors and the port answering
	replaced time.Duration // cut -> 6 running on the survivors
	detected time.Duration // cut -> the cluster reports the cut node down (0: not seen)
	ready    time.Duration // restore -> the cluster reports the node ready
	settled  time.Duration // restore -> node ready again and 6 running in all
}

// fbTarget is what a run needs from the system under test.
type fbTarget struct {
	// running counts the service's running containers per host.
	running func(hosts []*testHost) map[string]int
	// answer GETs the service's published port on h (from the root namespace).
	answer func(h *testHost) error
	// nodeDown reports whether the cluster (seen from a survivor) marks victim down.
	nodeDown func(victim *testHost) bool
	// nodeReady reports whether the cluster marks victim ready.
	nodeReady func(victim *testHost) bool
}

func TestFailoverBenchmark(t *testing.T) {
	if os.Getenv("DEV_BENCH") == "" {
		t.Skip("a benchmark: set DEV_BENCH=1 to run it (DEV_BENCH_RUNS=N runs per tool, default 5)")
	}
	runs := benchRuns(t, 5)
	out := filepath.Join(results.Dir(), "failover.jsonl")
	began := time.Now()
	var recs []results.Record
	record := func(t *testing.T, tool, label, note string, rs []fbRun) {
		rec := fbRecord(tool, note, rs)
		if err := results.Append(out, rec); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
		fbLogRuns(t, label, rs)
	}

	t.Run("dev fast gossip", func(t *testing.T) {
		hosts := newHosts(t, 3)
		ms := newMultiCluster(t, hosts, nil)
		rs := fbDev(t, hosts, ms, runs)
		record(t, "dev", "dev (fast gossip)",
			"dev agents with --fast (memberlist probe 200ms, suspicion x2; agent heartbeat 1s), node grace 10s; "+
				"cut a non-leader host's link (not the one the CLI talks to); failover = cut -> 6 containers running on the "+
				"2 surviving engines and the published port :"+fbPort+" (node proxy, every node) answering on a surviving host; "+
				"the cut host's engine keeps its containers until the link is back. Fresh 2/2/2 deployment (dev down; dev up) each run. "+
				"Extra (medians): node_down_s = cut -> node shown down, ready_s = restore -> node shown ready, "+
				"settle_s = restore -> node ready and 6 running in all",
			rs)
	})

	t.Run("dev default timers", func(t *testing.T) {
		hosts := newHosts(t, 3)
		ms := fbDevCluster(t, hosts)
		rs := fbDev(t, hosts, ms, runs)
		record(t, "dev (default timers)", "dev (default timers)",
			"dev agents without --fast (memberlist LAN defaults: probe 1s, suspicion x4; agent heartbeat 5s, node timeout 15s), "+
				"default node grace 10s; otherwise as the dev record: non-leader host cut, 6 containers on the 2 surviving engines "+
				"and :"+fbPort+" answering on a survivor. Extra: node_down_s, ready_s, settle_s (medians)",
			rs)
	})

	t.Run("swarm", func(t *testing.T) {
		// Task preparation tries a registry pull first; there is no registry
		// (and no DNS) from the simulated hosts, so each task would wait for a
		// resolver timeout. The engines inherit this variable from the test
		// process: use the local image, as with a reachable registry or a
		// digest-pinned image already present.
		t.Setenv("DOCKER_SERVICE_PREFER_OFFLINE_IMAGE", "1")
		hosts := newHosts(t, 3)
		rs := fbSwarm(t, hosts, runs)
		record(t, "swarm", "swarm",
			"Docker Engine 20.10 swarm mode, 3 managers (h1 init, h2/h3 join as managers: one lost keeps quorum), default "+
				"dispatcher heartbeat (5s) and restart policy (any condition, 5s delay). Service: 6 replicas of "+testImage+
				", endpoint_mode dnsrr, port 8080 published mode=host without a fixed host port (a fixed host-mode port allows one "+
				"task per node; VIP and routing mesh need IPVS, which this kernel lacks). Cut a host running tasks that is not "+
				"the raft leader nor h1 (the engine the test talks to); failover = cut -> 6 task containers running on the 2 "+
				"surviving engines and a survivor task's host port answering. Engines run with DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 "+
				"(no registry here). Service removed and re-created (2/2/2) each run. Extra: node_down_s, ready_s, settle_s (medians)",
			rs)
	})

	if len(recs) > 0 {
		var b strings.Builder
		fmt.Fprintf(&b, "failover, %s (%d runs each, %s in all), appended to %s:\n", fbCase, runs, time.Since(began).Round(time.Second), out)
		for _, r := range recs {
			fmt.Fprintf(&b, "  %-22s median %5.1f s  spread %4.1f s  runs %v  node down after %.1f s; after restore ready %.1f s, settled %.1f s\n",
				r.Tool, r.Median(), r.Spread(), r.Runs, r.Extra["node_down_s"], r.Extra["ready_s"], r.Extra["settle_s"])
		}
		t.Log(b.String())
	}
}

// ---- dev ----

// fbDevCluster is newMultiCluster with the agents' default timers: the same
// bootstrap and `dev join`, without --fast and with the default grace period.
func fbDevCluster(t *testing.T, hosts []*testHost) []*member {
	t.Helper()
	return newMultiClusterWith(t, hosts, nil, func(h *testHost) []string {
		return []string{"--node-name", h.Name, "--advertise-addr", h.IP}
	})
}

// fbDev measures runs failovers of a dev cluster on hosts; ms[0] (h1) is the
// member the CLI talks to and is never cut.
func fbDev(t *testing.T, hosts []*testHost, ms []*member, runs int) []fbRun {
	t.Helper()
	cli := ms[0]
	eventually(t, 60*time.Second, "3 ready nodes with a leader", func() error {
		nodes := cli.nodes(t)
		leaders := 0
		for _, h := range hosts {
			n, ok := nodes[h.Name]
			if !ok || n.Status != "ready" {
				return fmt.Errorf("nodes %v", nodes)
			}
			if n.Role == "leader" {
				leaders++
			}
		}
		if leaders != 1 {
			return fmt.Errorf("%d leaders: %v", leaders, nodes)
		}
		return nil
	})
	compose := filepath.Join(t.TempDir(), "compose.yaml")
	if err := os.WriteFile(compose, []byte(fbCompose), 0o644); err != nil {
		t.Fatal(err)
	}
	target := fbTarget{
		running: func(hs []*testHost) map[string]int { return runningOn(t, hs, fbProject, fbService) },
		answer: func(h *testHost) error {
			return fbGet("http://" + h.IP + ":" + fbPort + "/")
		},
		nodeDown:  func(v *testHost) bool { return cli.nodes(t)[v.Name].Status == "down" },
		nodeReady: func(v *testHost) bool { return cli.nodes(t)[v.Name].Status == "ready" },
	}
	var rs []fbRun
	for i := 0; i < runs; i++ {
		if i > 0 {
			cli.mustDev(t, "down", "-p", fbProject)
		}
		cli.mustDev(t, "up", "-d", "-f", compose)
		fbWaitSpread(t, target, hosts)

		var leader string
		for name, n := range cli.nodes(t) {
			if n.Role == "leader" {
				leader = name
			}
		}
		rs = append(rs, fbCutOne(t, "dev", target, hosts, leader, i))
	}
	cli.mustDev(t, "down", "-p", fbProject)
	return rs
}

// ---- swarm ----

// fbSwarm forms a swarm of 3 managers on hosts and measures runs failovers
// of a 6-replica service; hosts[0] is the engine the test talks to.
func fbSwarm(t *testing.T, hosts []*testHost, runs int) []fbRun {
	t.Helper()
	ctx := context.Background()
	mgr := hosts[0].Docker
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = mgr.ServiceRemove(cctx, fbProject)
		for i := len(hosts) - 1; i >= 0; i-- {
			if err := hosts[i].Docker.SwarmLeave(cctx, true); err != nil {
				t.Logf("swarm leave on %s: %v", hosts[i].Name, err)
			}
		}
	})
	began := time.Now()
	if _, err := mgr.SwarmInit(ctx, swarm.InitRequest{ListenAddr: "0.0.0.0:2377", AdvertiseAddr: hosts[0].IP}); err != nil {
		t.Fatalf("swarm init on h1: %v", err)
	}
	sw, err := mgr.SwarmInspect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts[1:] {
		if err := h.Docker.SwarmJoin(ctx, swarm.JoinRequest{ListenAddr: "0.0.0.0:2377", AdvertiseAddr: h.IP,
			RemoteAddrs: []string{hosts[0].IP + ":2377"}, JoinToken: sw.JoinTokens.Manager}); err != nil {
			t.Fatalf("swarm join %s as a manager: %v", h.Name, err)
		}
	}
	nodeID := map[string]string{} // host name -> swarm node ID (all engines share one hostname)
	for _, h := range hosts {
		info, err := h.Docker.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		nodeID[h.Name] = info.Swarm.NodeID
	}
	nodes := func() map[string]swarm.Node {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ns, err := mgr.NodeList(qctx, swarm.NodeListOptions{})
		if err != nil {
			return nil
		}
		out := map[string]swarm.Node{}
		for _, n := range ns {
			for name, id := range nodeID {
				if n.ID == id {
					out[name] = n
				}
			}
		}
		return out
	}
	eventually(t, 60*time.Second, "3 ready, reachable managers", func() error {
		ns := nodes()
		for _, h := range hosts {
			n, ok := ns[h.Name]
			if !ok || n.Status.State != swarm.NodeStateReady || n.ManagerStatus == nil || n.ManagerStatus.Reachability != swarm.ReachabilityReachable {
				return fmt.Errorf("%s: %+v", h.Name, n.Status)
			}
		}
		return nil
	})
	t.Logf("swarm of 3 managers formed in %s", time.Since(began).Round(100*time.Millisecond))

	svcFilter := filters.Arg("label", "com.docker.swarm.service.name="+fbProject)
	listOn := func(h *testHost) []container.Summary {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		cs, err := h.Docker.ContainerList(qctx, container.ListOptions{Filters: filters.NewArgs(svcFilter)})
		if err != nil {
			return nil
		}
		return cs
	}
	target := fbTarget{
		running: func(hs []*testHost) map[string]int {
			out := map[string]int{}
			for _, h := range hs {
				out[h.Name] = len(listOn(h))
			}
			return out
		},
		answer: func(h *testHost) error {
			for _, c := range listOn(h) {
				for _, p := range c.Ports {
					if p.PrivatePort == 8080 && p.PublicPort != 0 && p.Type == "tcp" {
						return fbGet(fmt.Sprintf("http://%s:%d/", h.IP, p.PublicPort))
					}
				}
			}
			return fmt.Errorf("no task with a published port on %s", h.Name)
		},
		nodeDown:  func(v *testHost) bool { return nodes()[v.Name].Status.State == swarm.NodeStateDown },
		nodeReady: func(v *testHost) bool { return nodes()[v.Name].Status.State == swarm.NodeStateReady },
	}
	replicas := uint64(fbReplicas)
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: fbProject},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{Image: testImage, Args: []string{"serve"}},
		},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
		EndpointSpec: &swarm.EndpointSpec{
			Mode:  swarm.ResolutionModeDNSRR,
			Ports: []swarm.PortConfig{{Protocol: swarm.PortConfigProtocolTCP, TargetPort: 8080, PublishMode: swarm.PortConfigPublishModeHost}},
		},
	}

	var rs []fbRun
	for i := 0; i < runs; i++ {
		if i > 0 {
			if err := mgr.ServiceRemove(ctx, fbProject); err != nil {
				t.Fatalf("swarm service rm: %v", err)
			}
			eventually(t, fbWait, "no task containers left", func() error {
				if n := sum(target.running(hosts)); n != 0 {
					return fmt.Errorf("%d running", n)
				}
				return nil
			})
		}
		if _, err := mgr.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{}); err != nil {
			t.Fatalf("swarm service create: %v", err)
		}
		fbWaitSpread(t, target, hosts)

		var leader string
		for name, n := range nodes() {
			if n.ManagerStatus != nil && n.ManagerStatus.Leader {
				leader = name
			}
		}
		rs = append(rs, fbCutOne(t, "swarm", target, hosts, leader, i))
	}
	return rs
}

// ---- shared ----

// fbCutOne measures run i of tool: it cuts a host that neither leads nor is
// h1 (the one the CLI talks to), alternating between the candidates, and
// logs the figures.
func fbCutOne(t *testing.T, tool string, target fbTarget, hosts []*testHost, leader string, i int) fbRun {
	t.Helper()
	var candidates []*testHost
	for _, h := range hosts[1:] {
		if h.Name != leader {
			candidates = append(candidates, h)
		}
	}
	victim := candidates[i%len(candidates)]
	r := fbMeasure(t, target, hosts, victim)
	t.Logf("%s run %d: cut %s (leader %s): failover %.1fs (6 running after %.1fs, node down after %.1fs), ready %.1fs and settled %.1fs after restore",
		tool, i+1, victim.Name, leader, r.failover.Seconds(), r.replaced.Seconds(), r.detected.Seconds(), r.ready.Seconds(), r.settled.Seconds())
	return r
}

// fbWaitSpread waits until the service runs 2 replicas on each host and
// answers on each.
func fbWaitSpread(t *testing.T, target fbTarget, hosts []*testHost) {
	t.Helper()
	eventually(t, fbWait, "6 replicas running, 2 per host, answering on every host", func() error {
		per := target.running(hosts)
		for _, h := range hosts {
			if per[h.Name] != fbReplicas/len(hosts) {
				return fmt.Errorf("running per host %v", per)
			}
		}
		for _, h := range hosts {
			if err := target.answer(h); err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
		}
		return nil
	})
}

// fbMeasure cuts victim, times the failover, restores it and times the
// settling.
func fbMeasure(t *testing.T, target fbTarget, hosts []*testHost, victim *testHost) fbRun {
	t.Helper()
	var survivors []*testHost
	for _, h := range hosts {
		if h != victim {
			survivors = append(survivors, h)
		}
	}
	r := fbRun{victim: victim.Name}

	// Node status comes from the CLI or a manager; poll it on the side so
	// its latency does not delay the replica count.
	var detected atomic.Int64
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})

	start := time.Now()
	victim.Cut(t)
	cut := true
	defer func() {
		if cut {
			victim.Restore(t)
		}
	}()
	go func() {
		defer close(watchDone)
		for {
			if target.nodeDown(victim) {
				detected.Store(int64(time.Since(start)))
				return
			}
			select {
			case <-stopWatch:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	deadline := start.Add(fbWait)
	var lastErr error
	for {
		per := target.running(survivors)
		if n := sum(per); n == fbReplicas {
			if r.replaced == 0 {
				r.replaced = time.Since(start)
			}
			if lastErr = target.answer(survivors[0]); lastErr == nil {
				r.failover = time.Since(start)
				break
			}
		} else {
			lastErr = fmt.Errorf("running on the survivors: %v", per)
		}
		if time.Now().After(deadline) {
			close(stopWatch)
			<-watchDone
			t.Fatalf("failover after cutting %s: not within %s: %v", victim.Name, fbWait, lastErr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The node is normally seen down well before its replicas are replaced;
	// give the watcher a moment in case it is still on its way.
	select {
	case <-watchDone:
	case <-time.After(5 * time.Second):
		close(stopWatch)
		<-watchDone
	}
	r.detected = time.Duration(detected.Load())

	victim.Restore(t)
	cut = false
	restored := time.Now()
	eventually(t, fbWait, victim.Name+" back and ready, 6 replicas running in all", func() error {
		if r.ready == 0 {
			if !target.nodeReady(victim) {
				return fmt.Errorf("%s not ready", victim.Name)
			}
			r.ready = time.Since(restored)
		}
		if per := target.running(hosts); sum(per) != fbReplicas {
			return fmt.Errorf("running per host %v", per)
		}
		return nil
	})
	r.settled = time.Since(restored)
	// And it stays settled: nothing runs twice once the node is back.
	time.Sleep(3 * time.Second)
	if per := target.running(hosts); sum(per) != fbReplicas {
		t.Fatalf("3s after settling, running per host %v, want %d in all", per, fbReplicas)
	}
	return r
}

// fbGet GETs url from the root namespace and wants the test app's answer.
func fbGet(url string) error {
	c := http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if !strings.Contains(string(b), "hello from ") {
		return fmt.Errorf("GET %s: %s %q", url, resp.Status, b)
	}
	return nil
}

func fbRecord(tool, note string, rs []fbRun) results.Record {
	rec := results.Record{Measure: "failover", Case: fbCase, Tool: tool, Unit: "s", Note: note, Extra: map[string]float64{}}
	var down, ready, settle []float64
	for _, r := range rs {
		rec.Runs = append(rec.Runs, fbSeconds(r.failover))
		if r.detected > 0 {
			down = append(down, fbSeconds(r.detected))
		}
		ready = append(ready, fbSeconds(r.ready))
		settle = append(settle, fbSeconds(r.settled))
	}
	if len(down) > 0 {
		rec.Extra["node_down_s"] = fbMedian(down)
	}
	rec.Extra["ready_s"] = fbMedian(ready)
	rec.Extra["settle_s"] = fbMedian(settle)
	return rec
}

func fbLogRuns(t *testing.T, label string, rs []fbRun) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s: failover per run (victim: cut -> node down / 6 running / port answering; restore -> ready / settled):\n", label)
	for i, r := range rs {
		fmt.Fprintf(&b, "  run %d (%s): %.1fs / %.1fs / %.1fs; %.1fs / %.1fs\n", i+1, r.victim,
			r.detected.Seconds(), r.replaced.Seconds(), r.failover.Seconds(), r.ready.Seconds(), r.settled.Seconds())
	}
	t.Log(b.String())
}

// benchRuns is DEV_BENCH_RUNS, the runs a benchmark makes (def when unset).
func benchRuns(t *testing.T, def int) int {
	t.Helper()
	s := os.Getenv("DEV_BENCH_RUNS")
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("DEV_BENCH_RUNS=%q: want a positive integer", s)
	}
	return n
}

func fbSeconds(d time.Duration) float64 { return float64(d.Milliseconds()) / 1000 }

func fbMedian(v []float64) float64 { return results.Record{Runs: v}.Median() }
