package apiserver

import (
	"errors"
	"net/http"
	"slices"
	"testing"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// TestRemove: `dev rm` lists (dry run) then removes the stopped pods of the
// services asked, lowering their replicas; a running pod stays; an
// unknown service or project is 404.
func TestRemove(t *testing.T) {
	st := state.New()
	err := st.Update(1, func(tx *state.Txn) error {
		for _, cmd := range []state.Command{
			&state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{
				{Project: "shop", Name: "web", Image: "x", Replicas: 2}, {Project: "shop", Name: "db", Image: "x", Replicas: 1}}}},
			&state.CreatePods{Pods: []api.Pod{
				{Name: "shop-web-1", Project: "shop", Service: "web", Index: 1, Labels: map[string]string{}},
				{Name: "shop-web-2", Project: "shop", Service: "web", Index: 2, Labels: map[string]string{}},
				{Name: "shop-db-1", Project: "shop", Service: "db", Index: 1, Labels: map[string]string{}},
			}},
			&state.AssignPods{Nodes: map[string]string{"shop-web-1": "n1", "shop-web-2": "n1", "shop-db-1": "n1"}},
			&state.PodStatus{Name: "shop-web-1", Node: "n1", Status: api.PodStatus{State: api.PodExited}},
			&state.SetPodStopped{Name: "shop-web-1", Stopped: true},
			&state.SetPodStopped{Name: "shop-db-1", Stopped: true},
			&state.PodStatus{Name: "shop-web-2", Node: "n1", Status: api.PodStatus{State: api.PodRunning}},
		} {
			if err := tx.Apply(cmd); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c := serveTestAPI(t, st, nil)
	ctx := t.Context()

	res, err := c.Remove(ctx, "shop", api.RemoveRequest{Services: []string{"web"}, DryRun: true})
	if err != nil || !slices.Equal(res.Removed, []string{"shop-web-1"}) {
		t.Fatalf("dry run: %+v, %v; want shop-web-1", res, err)
	}
	if p, _ := st.Pod("shop-web-1"); p.Deleting {
		t.Fatal("a dry run removed the pod")
	}
	res, err = c.Remove(ctx, "shop", api.RemoveRequest{Services: []string{"web"}})
	if err != nil || !slices.Equal(res.Removed, []string{"shop-web-1"}) || res.Index == 0 {
		t.Fatalf("rm web: %+v, %v", res, err)
	}
	if p, _ := st.Pod("shop-web-1"); !p.Deleting {
		t.Error("shop-web-1 not removed")
	}
	if p, _ := st.Pod("shop-db-1"); p.Deleting {
		t.Error("shop-db-1 removed, but only web was asked")
	}
	if rc, _ := st.RC(api.RCKey("shop", "web")); rc.Replicas != 1 {
		t.Errorf("web replicas %d, want 1", rc.Replicas)
	}
	var ae *api.APIError
	if _, err := c.Remove(ctx, "shop", api.RemoveRequest{Services: []string{"nope"}}); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Errorf("rm nope: %v, want 404", err)
	}
	if _, err := c.Remove(ctx, "nope", api.RemoveRequest{}); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Errorf("rm in no project: %v, want 404", err)
	}
}
