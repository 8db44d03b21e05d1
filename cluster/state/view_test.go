package state_test

import (
	"context"
	"reflect"
	"sync"
	"testing"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

func TestView(t *testing.T) {
	w := newWriter(t)
	w.must(
		&state.PutNode{Node: api.Node{Name: "n2", Status: api.NodeReady}},
		&state.PutNode{Node: api.Node{Name: "n1", Status: api.NodeDown, Labels: map[string]string{"zone": "a"}}},
		&state.ApplyProject{Project: api.Project{Name: "p", Services: []api.ServiceSpec{svc("p", "web", 2), svc("p", "db", 1)}}},
		&state.CreatePods{Pods: []api.Pod{pod("p", "web", 2, "h"), pod("p", "db", 1, "h"), pod("p", "web", 1, "h")}},
	)
	v := w.st.View()

	if v.Index != 4 {
		t.Errorf("Index = %d, want 4", v.Index)
	}
	var nodes, rcs []string
	for _, n := range v.Nodes {
		nodes = append(nodes, n.Name)
	}
	for _, rc := range v.RCs {
		rcs = append(rcs, rc.Key())
	}
	if want := []string{"n1", "n2"}; !reflect.DeepEqual(nodes, want) {
		t.Errorf("Nodes = %v, want %v", nodes, want)
	}
	if want := []string{"p/db", "p/web"}; !reflect.DeepEqual(rcs, want) {
		t.Errorf("RCs = %v, want %v", rcs, want)
	}
	if got, want := podNames(v.Pods), []string{"p-db-1", "p-web-1", "p-web-2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Pods = %v, want %v", got, want)
	}
	// The same as the single reads.
	if !reflect.DeepEqual(v.Nodes, w.st.Nodes()) || !reflect.DeepEqual(v.RCs, w.st.RCs("")) ||
		!reflect.DeepEqual(v.Pods, w.st.Pods(state.PodFilter{})) {
		t.Error("View differs from Nodes, RCs and Pods")
	}

	// Copies: changing the view changes nothing in the store.
	v.Nodes[0].Labels["zone"] = "b"
	v.Pods[0].Labels[api.LabelProject] = "other"
	v.RCs[0].Replicas = 9
	if n, _ := w.st.Node("n1"); n.Labels["zone"] != "a" {
		t.Errorf("node labels changed through the view: %v", n.Labels)
	}
	if p, _ := w.st.Pod("p-db-1"); p.Labels[api.LabelProject] != "p" {
		t.Errorf("pod labels changed through the view: %v", p.Labels)
	}
	if rc, _ := w.st.RC("p/db"); rc.Replicas != 1 {
		t.Errorf("rc changed through the view: replicas %d", rc.Replicas)
	}
}

func TestViewIsConsistent(t *testing.T) {
	// Update i creates one pod: every view must hold exactly Index pods.
	st := state.New()
	const n = 200
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		defer cancel()
		for i := 1; i <= n; i++ {
			cmd := &state.CreatePods{Pods: []api.Pod{pod("p", "web", i, "h")}}
			if err := st.Update(uint64(i), func(tx *state.Txn) error { return tx.Apply(cmd) }); err != nil {
				t.Errorf("update %d: %v", i, err)
				return
			}
		}
	})
	for ctx.Err() == nil {
		if v := st.View(); uint64(len(v.Pods)) != v.Index {
			t.Errorf("view at index %d has %d pods", v.Index, len(v.Pods))
			break
		}
	}
	wg.Wait()
	if v := st.View(); v.Index != n || len(v.Pods) != n {
		t.Fatalf("final view: index %d, %d pods; want %d", v.Index, len(v.Pods), n)
	}
}
