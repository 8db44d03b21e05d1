package controller_test

import (
	"sort"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// agentStep plays the node agent: running pods report ready at now,
// deleting pods disappear.
func (h *harness) agentStep(ready func(api.Pod) api.PodStatus) {
	h.t.Helper()
	var gone []string
	for _, p := range h.pods() {
		switch {
		case p.Deleting:
			gone = append(gone, p.Name)
		case p.Stopped:
			// An agent starts no stopped pod.
		case p.Node != "" && p.Status.State != api.PodRunning && p.Status.State != api.PodFailed && p.Status.State != api.PodExited:
			h.report(p.Name, ready(p))
		}
	}
	if len(gone) > 0 {
		h.apply(&state.DeletePods{Names: gone})
	}
}

func hashes(pods []api.Pod) map[string]int {
	out := map[string]int{}
	for _, p := range pods {
		if !p.Deleting {
			out[p.SpecHash]++
		}
	}
	return out
}

func readyCount(pods []api.Pod) int {
	n := 0
	for _, p := range pods {
		if p.Ready() {
			n++
		}
	}
	return n
}

func TestPlanStartFirstUpdateKeepsReplicasReady(t *testing.T) {
	h := newHarness(t)
	h.addNode("n1")
	h.apply(project(web(2)))
	h.converge()
	h.now = t0
	h.agentStep(func(api.Pod) api.PodStatus { return api.PodStatus{State: api.PodRunning, StartedAt: t0} })

	monitor := api.Duration(2 * time.Second)
	changed := web(2)
	changed.Environment = map[string]string{"MODE": "v2"}
	changed.Update = &api.UpdateConfig{Parallelism: 1, Order: api.OrderStartFirst, Monitor: &monitor}
	h.apply(project(changed))

	minReady := 2
	for step := 0; step < 40; step++ {
		h.now = t0.Add(time.Duration(step) * time.Second)
		h.converge()
		if r := readyCount(h.pods()); r < minReady {
			t.Fatalf("step %d: only %d ready pods during a start-first update; want >= 2 (%v)", step, r, names(h.pods()))
		}
		if live := len(live(h.pods())); live > 3 {
			t.Fatalf("step %d: %d live pods, want at most replicas+parallelism = 3", step, live)
		}
		now := h.now
		h.agentStep(func(api.Pod) api.PodStatus { return api.PodStatus{State: api.PodRunning, StartedAt: now} })
		if hs := hashes(h.pods()); hs[changed.Hash()] == 2 && len(hs) == 1 && len(h.pods()) == 2 {
			rc, _ := h.st.RC(api.RCKey("shop", "web"))
			h.converge()
			rc, _ = h.st.RC(api.RCKey("shop", "web"))
			if rc.Update == nil || rc.Update.State != api.UpdateCompleted {
				t.Fatalf("update state = %+v, want completed", rc.Update)
			}
			return
		}
	}
	t.Fatalf("update did not finish: pods %v hashes %v", names(h.pods()), hashes(h.pods()))
}

func TestPlanFailedUpdateRollsBack(t *testing.T) {
	h := newHarness(t)
	h.addNode("n1")
	v1 := web(2)
	h.apply(project(v1))
	h.converge()
	h.agentStep(func(api.Pod) api.PodStatus { return api.PodStatus{State: api.PodRunning, StartedAt: t0} })

	v2 := web(2)
	v2.Environment = map[string]string{"MODE": "broken"}
	v2.Update = &api.UpdateConfig{Parallelism: 1, FailureAction: api.FailureRollback}
	h.apply(project(v2))
	h.now = t0.Add(time.Second)
	h.converge()
	// The new pod crashes.
	h.agentStep(func(api.Pod) api.PodStatus { return api.PodStatus{State: api.PodExited, ExitCode: 1} })
	h.converge()

	rc, _ := h.st.RC(api.RCKey("shop", "web"))
	if rc.SpecHash != v1.Hash() || rc.Update == nil || (rc.Update.State != api.UpdateRollingBack && rc.Update.State != api.UpdateRolledBack) {
		t.Fatalf("after a failed new pod: hash %s (v1 %s), update %+v; want rolling back to v1", rc.SpecHash, v1.Hash(), rc.Update)
	}
	// The old pods kept running throughout.
	var old []string
	for _, p := range h.pods() {
		if p.SpecHash == v1.Hash() && !p.Deleting && p.Ready() {
			old = append(old, p.Name)
		}
	}
	sort.Strings(old)
	if len(old) != 2 {
		t.Fatalf("ready v1 pods = %v, want both still serving", old)
	}
	for step := 0; step < 10; step++ {
		h.agentStep(func(api.Pod) api.PodStatus { return api.PodStatus{State: api.PodRunning, StartedAt: t0} })
		h.converge()
	}
	rc, _ = h.st.RC(api.RCKey("shop", "web"))
	if rc.Update == nil || rc.Update.State != api.UpdateRolledBack {
		t.Fatalf("update = %+v, want rolled_back", rc.Update)
	}
	if hs := hashes(h.pods()); hs[v1.Hash()] != 2 || len(hs) != 1 {
		t.Fatalf("pods after rollback: %v", hs)
	}
}

func TestPlanFailedUpdatePauses(t *testing.T) {
	h := newHarness(t)
	h.addNode("n1")
	h.apply(project(web(2)))
	h.converge()
	h.agentStep(func(api.Pod) api.PodStatus { return api.PodStatus{State: api.PodRunning, StartedAt: t0} })
	v2 := web(2)
	v2.Environment = map[string]string{"MODE": "broken"}
	h.apply(project(v2)) // default failure action: pause
	h.converge()
	h.agentStep(func(api.Pod) api.PodStatus { return api.PodStatus{State: api.PodFailed, Message: "image missing"} })
	h.converge()
	rc, _ := h.st.RC(api.RCKey("shop", "web"))
	if rc.Update == nil || rc.Update.State != api.UpdatePaused {
		t.Fatalf("update = %+v, want paused", rc.Update)
	}
	before := names(h.pods())
	h.now = t0.Add(time.Minute)
	h.converge()
	if after := names(h.pods()); len(after) != len(before) {
		t.Fatalf("a paused update went on: %v -> %v", before, after)
	}
}

func TestRollbackCommand(t *testing.T) {
	h := newHarness(t)
	v1 := web(1)
	h.apply(project(v1))
	if err := h.tryApply(&state.RollbackRC{Key: api.RCKey("shop", "web")}); err == nil {
		t.Fatal("rollback of a service without a previous version succeeded")
	}
	v2 := web(1)
	v2.Image = "web:2"
	h.apply(project(v2))
	h.apply(&state.RollbackRC{Key: api.RCKey("shop", "web"), Reason: "dev rollback"})
	rc, _ := h.st.RC(api.RCKey("shop", "web"))
	if rc.Template.Image != "web:1" || rc.SpecHash != v1.Hash() || rc.Previous == nil || rc.Previous.Image != "web:2" {
		t.Fatalf("after rollback: image %s hash %s previous %+v", rc.Template.Image, rc.SpecHash, rc.Previous)
	}
}
