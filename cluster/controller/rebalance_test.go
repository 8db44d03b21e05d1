package controller_test

import (
	"reflect"
	"testing"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// spreadOf counts the live pods per node.
func spreadOf(pods []api.Pod) map[string]int {
	out := map[string]int{}
	for _, p := range pods {
		if !p.Deleting && p.Node != "" {
			out[p.Node]++
		}
	}
	return out
}

func moving(pods []api.Pod) []string {
	out := []string{}
	for _, p := range pods {
		if p.Moving {
			out = append(out, p.Name)
		}
	}
	return out
}

// TestPlanRebalanceAfterUncordon: six pods on two nodes while the third
// is cordoned; once it is uncordoned they are moved one at a time, each
// retired only after its replacement is ready, until the spread is
// 2/2/2, and then nothing more moves.
func TestPlanRebalanceAfterUncordon(t *testing.T) {
	h := newHarness(t)
	for _, n := range []string{"n1", "n2", "n3"} {
		h.addNode(n)
	}
	h.apply(&state.CordonNode{Name: "n3", Cordoned: true})
	h.apply(project(web(6)))
	h.converge()
	h.agentStep(running)
	h.converge()
	if got := spreadOf(h.pods()); !reflect.DeepEqual(got, map[string]int{"n1": 3, "n2": 3}) {
		t.Fatalf("spread with n3 cordoned: %v, want 3 and 3", got)
	}

	h.apply(&state.CordonNode{Name: "n3"})
	want := map[string]int{"n1": 2, "n2": 2, "n3": 2}
	for step := 0; ; step++ {
		if step == 30 {
			t.Fatalf("no even spread after %d steps: %v", step, spreadOf(h.pods()))
		}
		h.converge()
		if r := readyCount(h.pods()); r < 6 {
			t.Fatalf("step %d: %d ready pods, want >= 6 (%v)", step, r, live(h.pods()))
		}
		if l := len(live(h.pods())); l > 7 {
			t.Fatalf("step %d: %d live pods, want <= 7: one move at a time (%v)", step, l, live(h.pods()))
		}
		if m := moving(h.pods()); len(m) > 1 {
			t.Fatalf("step %d: pods moving at once: %v, want one at a time", step, m)
		}
		if reflect.DeepEqual(spreadOf(h.pods()), want) && readyCount(h.pods()) == 6 && len(live(h.pods())) == 6 {
			break
		}
		h.agentStep(running)
	}
	if cmds := h.plan(); len(cmds) != 0 {
		t.Errorf("a rebalanced cluster still plans %s", describe(cmds))
	}
}

// TestPlanRebalanceBalancedMovesNothing: a balanced service, and a dev up
// of the unchanged project, plan no move.
func TestPlanRebalanceBalancedMovesNothing(t *testing.T) {
	h := runningHarness(t, []string{"n1", "n2", "n3"}, web(6))
	h.converge()
	before := names(h.pods())
	if cmds := h.plan(); len(cmds) != 0 {
		t.Fatalf("a balanced cluster plans %s, want nothing", describe(cmds))
	}
	h.apply(project(web(6))) // dev up, nothing changed
	if cmds := h.plan(); len(cmds) != 0 {
		t.Errorf("dev up of an unchanged project plans %s, want nothing", describe(cmds))
	}
	if after := names(h.pods()); !reflect.DeepEqual(after, before) {
		t.Errorf("pods after dev up: %v, want %v", after, before)
	}
}

// TestPlanRebalanceOffByOne: five pods on two nodes, a third joins: one
// pod moves there, and 2/2/1 (as even as five go on three) stays.
func TestPlanRebalanceOffByOne(t *testing.T) {
	h := runningHarness(t, []string{"n1", "n2"}, web(5))
	h.addNode("n3")
	h.converge()
	h.agentStep(running)
	h.converge()
	h.agentStep(running)
	if got := spreadOf(h.pods()); !reflect.DeepEqual(got, map[string]int{"n1": 2, "n2": 2, "n3": 1}) {
		t.Fatalf("spread after n3 joined: %v, want 2/2/1", got)
	}
	if cmds := h.plan(); len(cmds) != 0 {
		t.Errorf("a 2/2/1 spread plans %s, want nothing", describe(cmds))
	}
}

// TestPlanRebalanceKeepsPinnedPods: a service whose pods keep data on
// their node stays there when a node joins.
func TestPlanRebalanceKeepsPinnedPods(t *testing.T) {
	db := api.ServiceSpec{Project: "shop", Name: "db", Image: "db:1", Replicas: 2,
		Volumes: []api.VolumeMount{{Type: api.MountVolume, Source: "data", Target: "/data"}}}
	h := runningHarness(t, []string{"n1"}, db)
	h.addNode("n2")
	if cmds := h.plan(); len(cmds) != 0 {
		t.Errorf("a pinned service plans %s after a node joined, want nothing", describe(cmds))
	}
}

// TestPlanRebalanceCalledOffWithoutRoom: a move whose replacement fits
// nowhere (the target was cordoned meanwhile) is called off: the pod
// stays, the replacement goes, and nothing more moves.
func TestPlanRebalanceCalledOffWithoutRoom(t *testing.T) {
	h := runningHarness(t, []string{"n1"}, web(2))
	h.addNode("n2")
	cmds := h.plan()
	mv, ok := cmdOf[*state.MovePod](cmds)
	if !ok || !mv.Moving || mv.Node != "n1" {
		t.Fatalf("plan after n2 joined: %s, want a pod moved off n1", describe(cmds))
	}
	h.apply(cmds...)
	h.apply(&state.CordonNode{Name: "n2", Cordoned: true})
	h.converge()
	h.agentStep(running)
	h.converge()
	if got := spreadOf(h.pods()); !reflect.DeepEqual(got, map[string]int{"n1": 2}) || len(live(h.pods())) != 2 || readyCount(h.pods()) != 2 {
		t.Errorf("after the target was cordoned: spread %v, live %v, want both pods kept on n1", got, live(h.pods()))
	}
	if m := moving(h.pods()); len(m) != 0 {
		t.Errorf("pods still moving: %v", m)
	}
}
