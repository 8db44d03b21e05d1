package state_test

import (
	"testing"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// TestRemoveStoppedPods: `dev rm` marks only the removable pods deleting
// (stopped by the user and no longer running, or finished under a policy that does not restart
// them) and lowers their controllers' replicas by as many, so that nothing
// replaces them; the next apply of the project sets the replicas again.
func TestRemoveStoppedPods(t *testing.T) {
	st := state.New()
	web := api.ServiceSpec{Project: "shop", Name: "web", Image: "web:1", Replicas: 3}
	job := api.ServiceSpec{Project: "shop", Name: "job", Image: "job:1", Replicas: 1, Restart: api.RestartNo}
	project := api.Project{Name: "shop", Services: []api.ServiceSpec{web, job}}
	apply := func(cmds ...state.Command) {
		t.Helper()
		err := st.Update(st.Index()+1, func(tx *state.Txn) error {
			for _, c := range cmds {
				if err := tx.Apply(c); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	apply(&state.ApplyProject{Project: project})
	webRC, _ := st.RC(api.RCKey("shop", "web"))
	jobRC, _ := st.RC(api.RCKey("shop", "job"))
	pods := []api.Pod{
		pod("shop", "web", 1, webRC.SpecHash), pod("shop", "web", 2, webRC.SpecHash), pod("shop", "web", 3, webRC.SpecHash),
		pod("shop", "job", 1, jobRC.SpecHash),
	}
	apply(&state.CreatePods{Pods: pods}, &state.AssignPods{Nodes: map[string]string{
		"shop-web-1": "n1", "shop-web-2": "n1", "shop-web-3": "n1", "shop-job-1": "n1"}})
	apply(
		&state.PodStatus{Name: "shop-web-1", Node: "n1", Status: api.PodStatus{State: api.PodExited, ExitCode: 137}},
		&state.SetPodStopped{Name: "shop-web-1", Stopped: true},
		// Exited between two restarts of restart: always: not removable.
		&state.PodStatus{Name: "shop-web-2", Node: "n1", Status: api.PodStatus{State: api.PodExited, ExitCode: 1}},
		// Stopped, but still running (in its stop grace period): not
		// removable, as compose rm never removes a running container.
		&state.PodStatus{Name: "shop-web-3", Node: "n1", Status: api.PodStatus{State: api.PodRunning}},
		&state.SetPodStopped{Name: "shop-web-3", Stopped: true},
		&state.PodStatus{Name: "shop-job-1", Node: "n1", Status: api.PodStatus{State: api.PodExited}},
	)

	apply(&state.RemoveStoppedPods{Names: []string{"shop-web-1", "shop-web-2", "shop-web-3", "shop-job-1", "shop-nope-1"}})
	for name, want := range map[string]bool{"shop-web-1": true, "shop-web-2": false, "shop-web-3": false, "shop-job-1": true} {
		if p, _ := st.Pod(name); p.Deleting != want {
			t.Errorf("%s deleting = %v, want %v", name, p.Deleting, want)
		}
	}
	for svc, want := range map[string]int{"web": 2, "job": 0} {
		if rc, _ := st.RC(api.RCKey("shop", svc)); rc.Replicas != want {
			t.Errorf("%s replicas = %d, want %d", svc, rc.Replicas, want)
		}
	}
	// Again: already deleting, nothing lowered twice.
	apply(&state.RemoveStoppedPods{Names: []string{"shop-web-1"}})
	if rc, _ := st.RC(api.RCKey("shop", "web")); rc.Replicas != 2 {
		t.Errorf("web replicas after a second rm = %d, want 2", rc.Replicas)
	}

	// dev up: the file's replicas again.
	apply(&state.ApplyProject{Project: project})
	for svc, want := range map[string]int{"web": 3, "job": 1} {
		if rc, _ := st.RC(api.RCKey("shop", svc)); rc.Replicas != want {
			t.Errorf("after up: %s replicas = %d, want %d", svc, rc.Replicas, want)
		}
	}
}
