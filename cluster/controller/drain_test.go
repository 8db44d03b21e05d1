package controller_test

import (
	"strings"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// onNode lists the pods bound to node, deleting ones included.
func onNode(pods []api.Pod, node string) []string {
	out := []string{}
	for _, p := range pods {
		if p.Node == node {
			out = append(out, p.Name)
		}
	}
	return out
}

func running(api.Pod) api.PodStatus { return api.PodStatus{State: api.PodRunning, StartedAt: t0} }

// drainUntilDone plays the leader and the agents until node is drained
// (FinishDrain written), checking after every step that at least minReady
// pods of the service are ready and at most maxLive are live.
func drainUntilDone(t *testing.T, h *harness, node string, minReady, maxLive int) {
	t.Helper()
	for step := 0; step < 30; step++ {
		h.converge()
		if r := readyCount(h.pods()); r < minReady {
			t.Fatalf("step %d: %d ready pods during the drain, want >= %d (%v)", step, r, minReady, live(h.pods()))
		}
		if l := len(live(h.pods())); l > maxLive {
			t.Fatalf("step %d: %d live pods during the drain, want <= %d (%v)", step, l, maxLive, live(h.pods()))
		}
		if n, _ := h.st.Node(node); !n.Draining {
			return
		}
		h.agentStep(running)
	}
	n, _ := h.st.Node(node)
	t.Fatalf("drain of %s did not finish: node %+v, pods there %v", node, n, onNode(h.pods(), node))
}

// TestPlanDrainStartFirst: a drained node's pods are replaced on the other
// nodes one at a time (parallelism 1), each removed only once its
// replacement is ready, so the ready count never drops below the replicas;
// the node then holds nothing and stays cordoned.
func TestPlanDrainStartFirst(t *testing.T) {
	h := runningHarness(t, []string{"n1", "n2", "n3"}, web(6))
	if got := onNode(h.pods(), "n1"); len(got) != 2 {
		t.Fatalf("pods on n1 before the drain: %v, want 2 (spread)", got)
	}

	h.apply(&state.CordonNode{Name: "n1", Cordoned: true, Drain: true})
	drainUntilDone(t, h, "n1", 6, 7)

	if got := onNode(h.pods(), "n1"); len(got) != 0 {
		t.Errorf("pods left on n1 after the drain: %v", got)
	}
	if n, _ := h.st.Node("n1"); !n.Cordoned || n.Draining {
		t.Errorf("n1 after the drain: cordoned %v draining %v, want cordoned, not draining", n.Cordoned, n.Draining)
	}
	h.agentStep(running)
	h.converge()
	if r, l := readyCount(h.pods()), len(live(h.pods())); r != 6 || l != 6 {
		t.Errorf("after the drain: %d ready, %d live; want 6 and 6 (%v)", r, l, live(h.pods()))
	}
	if cmds := h.plan(); len(cmds) != 0 {
		t.Errorf("a drained cluster still plans %s", describe(cmds))
	}
}

// TestPlanDrainStopFirst: a service that asks for stop-first updates is
// moved the same way: a pod stopped, then its replacement started, never
// more pods than replicas.
func TestPlanDrainStopFirst(t *testing.T) {
	spec := web(4)
	spec.Update = &api.UpdateConfig{Parallelism: 1, Order: api.OrderStopFirst}
	h := runningHarness(t, []string{"n1", "n2"}, spec)

	h.apply(&state.CordonNode{Name: "n1", Cordoned: true, Drain: true})
	drainUntilDone(t, h, "n1", 3, 4)
	h.agentStep(running)
	h.converge()
	if got := onNode(h.pods(), "n2"); len(got) != 4 {
		t.Errorf("pods on n2 after the drain: %v, want all 4", got)
	}
}

// TestPlanDrainKeepsPinnedPods: a pod whose data is on the node (a named
// volume) is not moved, and does not hold the drain up: the drain ends
// with it still running there, while the other services moved.
func TestPlanDrainKeepsPinnedPods(t *testing.T) {
	db := api.ServiceSpec{Project: "shop", Name: "db", Image: "db:1", Replicas: 1,
		Volumes: []api.VolumeMount{{Type: api.MountVolume, Source: "data", Target: "/data"}}}
	h := runningHarness(t, []string{"n1"}, web(1), db)
	h.addNode("n2")

	h.apply(&state.CordonNode{Name: "n1", Cordoned: true, Drain: true})
	drainUntilDone(t, h, "n1", 2, 3)
	if got := onNode(h.pods(), "n1"); len(got) != 1 || got[0] != "shop-db-1" {
		t.Errorf("pods on n1 after the drain: %v, want the pinned db-1 only", got)
	}
	if p := h.pod("shop-db-1"); !p.Ready() {
		t.Errorf("db-1 after the drain: %+v, want still running", p.Status)
	}
	if got := onNode(h.pods(), "n2"); len(got) != 1 || !strings.HasPrefix(got[0], "shop-web-") {
		t.Errorf("pods on n2: %v, want web's", got)
	}
}

// TestPlanDrainWaitsForRoom: a pod whose replacement fits nowhere keeps
// running on the draining node (the replacement waits with the reason),
// and the drain goes on; an uncordon stops it and returns to the replicas.
func TestPlanDrainWaitsForRoom(t *testing.T) {
	spec := web(2)
	spec.Placement.MaxPerNode = 1
	h := runningHarness(t, []string{"n1", "n2"}, spec)

	h.apply(&state.CordonNode{Name: "n1", Cordoned: true, Drain: true})
	for range 3 {
		h.converge()
		h.agentStep(running)
	}
	if got := onNode(h.pods(), "n1"); len(got) != 1 || readyCount([]api.Pod{h.pod(got[0])}) != 1 {
		t.Fatalf("pods on n1 while the drain waits: %v, want the ready pod kept", got)
	}
	var pending api.Pod
	for _, p := range h.pods() {
		if p.Node == "" {
			pending = p
		}
	}
	if !strings.Contains(pending.Status.Message, "max 1 replicas per node") || !strings.Contains(pending.Status.Message, "node cordoned") {
		t.Errorf("the replacement's reason: %q, want why it fits nowhere", pending.Status.Message)
	}
	if n, _ := h.st.Node("n1"); !n.Draining {
		t.Errorf("n1 no longer draining with a pod left to move")
	}

	h.apply(&state.CordonNode{Name: "n1"})
	h.converge()
	h.agentStep(running)
	h.converge()
	if l, r := len(live(h.pods())), readyCount(h.pods()); l != 2 || r != 2 {
		t.Errorf("after the uncordon: %d live, %d ready (%v), want 2 and 2", l, r, live(h.pods()))
	}
	if n, _ := h.st.Node("n1"); n.Draining || n.Cordoned {
		t.Errorf("n1 after the uncordon: %+v", n)
	}
}

// TestPlanDrainEmptyNode: a node with nothing to move is drained at once.
func TestPlanDrainEmptyNode(t *testing.T) {
	h := newHarness(t)
	h.addNode("n1")
	h.apply(&state.CordonNode{Name: "n1", Cordoned: true, Drain: true})
	fin, ok := cmdOf[*state.FinishDrain](h.plan())
	if !ok || fin.Name != "n1" {
		t.Fatalf("plan for an empty draining node: %s, want FinishDrain n1", describe(h.plan()))
	}
}

// TestPlanEngineUnreachableKeepsPods: a node that reports but whose Engine
// does not answer keeps its pods (they are not made again elsewhere: their
// containers may still serve) and takes no new one.
func TestPlanEngineUnreachableKeepsPods(t *testing.T) {
	h := runningHarness(t, []string{"n1", "n2"}, web(2))
	before := onNode(h.pods(), "n1")
	h.apply(&state.PutNode{Node: api.Node{Name: "n1", Status: api.NodeReady, Heartbeat: t0, EngineUnreachable: true,
		Allocatable: api.ResourceAmounts{NanoCPUs: 4e9, MemoryBytes: 8 << 30}}})
	h.now = t0.Add(5 * time.Second) // heartbeats go on: within the node timeout
	h.converge()
	if got := onNode(h.pods(), "n1"); len(got) != 1 || got[0] != before[0] || len(live(h.pods())) != 2 {
		t.Errorf("pods after n1's engine stopped answering: on n1 %v (was %v), live %v", got, before, live(h.pods()))
	}
	h.apply(&state.Scale{Project: "shop", Replicas: map[string]int{"web": 4}})
	h.converge()
	if got := onNode(h.pods(), "n1"); len(got) != 1 {
		t.Errorf("pods on n1 after scaling up: %v, want no new one", got)
	}
	if got := onNode(h.pods(), "n2"); len(got) != 3 {
		t.Errorf("pods on n2 after scaling up: %v, want the 2 new ones there", got)
	}
}

// TestPlanDrainMovesRestingPods: a pod the user stopped, and a finished
// job, are moved off a drained node as they are (their replacements rest
// too: nothing the user stopped is started, no job runs again); a
// stopped pod on another node does not hold the drain up.
func TestPlanDrainMovesRestingPods(t *testing.T) {
	job := api.ServiceSpec{Project: "shop", Name: "migrate", Image: "migrate:1", Replicas: 1, Restart: api.RestartNo}
	h := runningHarness(t, []string{"n1"}, web(3), job)
	h.report("shop-migrate-1", api.PodStatus{State: api.PodExited, ExitCode: 0})
	h.apply(&state.SetPodStopped{Name: "shop-web-1", Stopped: true})
	h.report("shop-web-1", api.PodStatus{State: api.PodExited, ExitCode: 137})
	h.addNode("n2")
	h.addNode("n3")
	// A replica the user stopped elsewhere, which must not stall the drain.
	h.apply(&state.CordonNode{Name: "n1", Cordoned: true, Drain: true})
	drainUntilDone(t, h, "n1", 2, 5)
	if got := onNode(h.pods(), "n1"); len(got) != 0 {
		t.Errorf("pods left on n1: %v", got)
	}
	stopped, runningWeb := 0, 0
	for _, p := range h.pods() {
		if p.Deleting {
			continue
		}
		switch {
		case p.Service == "migrate" && (!p.Stopped || p.Ready()):
			t.Errorf("the finished job was run again: %+v", p)
		case p.Service == "web" && p.Stopped:
			stopped++
			if p.Ready() {
				t.Errorf("the stopped pod's replacement runs: %s", p.Name)
			}
		case p.Service == "web" && p.Ready():
			runningWeb++
		}
	}
	if stopped != 1 || runningWeb != 2 {
		t.Errorf("web after the drain: %d stopped, %d running; want 1 and 2 (%v)", stopped, runningWeb, live(h.pods()))
	}

	// A stopped replica on n2 while n3 drains: the drain still ends.
	h.apply(&state.CordonNode{Name: "n1", Cordoned: false})
	h.apply(&state.CordonNode{Name: "n3", Cordoned: true, Drain: true})
	drainUntilDone(t, h, "n3", 2, 5)
}

// TestPlanDrainStopFirstWithoutRoom: a stop-first service whose
// replacement fits nowhere is not stopped: its pod goes on serving on the
// draining node, which stays draining.
func TestPlanDrainStopFirstWithoutRoom(t *testing.T) {
	spec := web(2)
	spec.Placement.MaxPerNode = 1
	spec.Update = &api.UpdateConfig{Parallelism: 1, Order: api.OrderStopFirst}
	h := runningHarness(t, []string{"n1", "n2"}, spec)
	h.apply(&state.CordonNode{Name: "n1", Cordoned: true, Drain: true})
	for step := 0; step < 5; step++ {
		h.converge()
		h.agentStep(running)
	}
	if r := readyCount(h.pods()); r != 2 {
		t.Errorf("%d ready pods, want 2: the pod on n1 was stopped with nowhere to go (%v)", r, live(h.pods()))
	}
	if n, _ := h.st.Node("n1"); !n.Draining {
		t.Error("n1 finished draining with its pod nowhere else")
	}
}
