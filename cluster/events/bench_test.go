package events

import (
	"fmt"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// BenchmarkViewAndDiff is the recorder's work per state change at the
// control-plane benchmark's scale (1,000 nodes, 10,000 pods): one
// consistent View of the store and a Diff against the previous one, in
// which one pod changed.
func BenchmarkViewAndDiff(b *testing.B) {
	for _, size := range []struct{ nodes, pods int }{{10, 100}, {1000, 10000}} {
		b.Run(fmt.Sprintf("nodes=%d/pods=%d", size.nodes, size.pods), func(b *testing.B) {
			st := state.New()
			idx := uint64(0)
			apply := func(c state.Command) {
				idx++
				if err := st.Update(idx, func(tx *state.Txn) error { return tx.Apply(c) }); err != nil {
					b.Fatal(err)
				}
			}
			for i := range size.nodes {
				apply(&state.PutNode{Node: api.Node{Name: fmt.Sprintf("n%04d", i), Status: api.NodeReady}})
			}
			apply(&state.ApplyProject{Project: api.Project{Name: "hello", Services: []api.ServiceSpec{
				{Project: "hello", Name: "web", Image: "web", Replicas: size.pods}}}})
			pods := make([]api.Pod, size.pods)
			assign := map[string]string{}
			for i := range pods {
				pods[i] = newPod("web", i+1)
				assign[pods[i].Name] = fmt.Sprintf("n%04d", i%size.nodes)
			}
			apply(&state.CreatePods{Pods: pods})
			apply(&state.AssignPods{Nodes: assign})
			prev := st.View()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				name := pods[i%len(pods)].Name
				apply(&state.PodStatus{Name: name, Status: api.PodStatus{State: api.PodRunning, IP: "10.0.0.1"}})
				cur := st.View()
				if evs := Diff(prev, cur, time.Time{}); len(evs) > 1 {
					b.Fatalf("%d events for one change", len(evs))
				}
				prev = cur
			}
		})
	}
}
