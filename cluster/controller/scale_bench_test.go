package controller_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/controller"
	"github.com/devhq/dev/cluster/state"
)

// The control plane at scale, without raft (bench/controlplane measures it
// with the real raft store):
//
//	go test -run '^$' -bench Scale -benchmem ./cluster/controller/

// scaleState returns a store with nodes ready nodes (4 CPU / 16 GiB, three
// zones) and services controllers of pods/services replicas each, released,
// reserving 0.1 CPU / 128 MiB per pod. When created, the pods exist, still
// unassigned; when assigned too, they are bound to nodes.
func scaleState(b *testing.B, nodes, pods, services int, prefs []string, created, assigned bool) *state.Store {
	b.Helper()
	h := &harness{st: state.New()}
	h.w = &storeWriter{st: h.st}
	apply := func(cmd state.Command) {
		b.Helper()
		if _, err := h.w.Apply(context.Background(), cmd); err != nil {
			b.Fatalf("apply %T: %v", cmd, err)
		}
	}
	for i := range nodes {
		apply(&state.PutNode{Node: api.Node{
			Name: fmt.Sprintf("node-%04d", i+1), Status: api.NodeReady,
			Labels:      map[string]string{"zone": fmt.Sprintf("zone-%d", i%3)},
			Allocatable: api.ResourceAmounts{NanoCPUs: 4e9, MemoryBytes: 16 << 30},
		}})
	}
	p := api.Project{Name: "bench"}
	for s := range services {
		p.Services = append(p.Services, api.ServiceSpec{
			Project: "bench", Name: fmt.Sprintf("svc%03d", s+1), Image: "app:1",
			Replicas:  pods / services,
			Resources: api.Resources{Reservations: api.ResourceAmounts{NanoCPUs: 1e8, MemoryBytes: 128 << 20}},
			Placement: api.Placement{Preferences: prefs},
		})
	}
	apply(&state.ApplyProject{Project: p})
	for _, rc := range h.st.RCs("") {
		apply(&state.ReleaseRC{Key: rc.Key()})
	}
	if !created {
		return h.st
	}
	for _, cmd := range controller.Plan(h.st, t0) {
		if _, ok := cmd.(*state.CreatePods); ok {
			apply(cmd)
		}
	}
	if !assigned {
		return h.st
	}
	for _, cmd := range controller.Plan(h.st, t0) {
		apply(cmd)
	}
	return h.st
}

// BenchmarkScalePlanSchedule is one reconcile pass that places every pod:
// 10,000 pending pods on 1,000 nodes.
func BenchmarkScalePlanSchedule(b *testing.B) {
	for _, tc := range []struct {
		nodes, pods, services int
		prefs                 []string
	}{
		{100, 1000, 10, nil},
		{1000, 10000, 100, nil},
		{100, 1000, 10, []string{"node.labels.zone"}},
		{1000, 10000, 100, []string{"node.labels.zone"}},
	} {
		name := fmt.Sprintf("nodes=%d/pods=%d/spread=none", tc.nodes, tc.pods)
		if tc.prefs != nil {
			name = fmt.Sprintf("nodes=%d/pods=%d/spread=zone", tc.nodes, tc.pods)
		}
		b.Run(name, func(b *testing.B) {
			st := scaleState(b, tc.nodes, tc.pods, tc.services, tc.prefs, true, false)
			var assigned int
			for b.Loop() {
				cmds := controller.Plan(st, t0)
				a, ok := cmdOf[*state.AssignPods](cmds)
				if !ok {
					b.Fatalf("no assignment: %s", describe(cmds))
				}
				assigned = len(a.Nodes)
			}
			if assigned != tc.pods {
				b.Fatalf("assigned %d pods, want %d", assigned, tc.pods)
			}
			b.ReportMetric(float64(tc.pods)*float64(b.N)/b.Elapsed().Seconds(), "pods/s")
		})
	}
}

// BenchmarkScalePlanSteady is a pass with nothing to do over 10,000 bound
// pods: what every state change and resync costs the leader at that scale.
func BenchmarkScalePlanSteady(b *testing.B) {
	st := scaleState(b, 1000, 10000, 100, nil, true, true)
	for b.Loop() {
		if cmds := controller.Plan(st, t0); len(cmds) != 0 {
			b.Fatalf("steady state planned %s", describe(cmds))
		}
	}
}

// BenchmarkScaleConverge is the whole controller, from the submitted
// project (controllers released) to every pod bound, over the fake raft.
func BenchmarkScaleConverge(b *testing.B) {
	const nodes, pods, services = 1000, 10000, 100
	for b.Loop() {
		b.StopTimer()
		st := scaleState(b, nodes, pods, services, nil, false, false)
		w := &storeWriter{st: st, idx: st.Index()}
		c := controller.New(st, w, controller.Options{NodeTimeout: time.Hour}, slog.New(slog.DiscardHandler))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var wg sync.WaitGroup
		b.StartTimer()

		wg.Add(1)
		go func() { defer wg.Done(); _ = c.Run(ctx) }()
		for idx := uint64(0); ctx.Err() == nil; {
			if n := countAssigned(st); n == pods {
				break
			}
			idx = st.WaitIndex(ctx, idx)
		}

		b.StopTimer()
		err := ctx.Err()
		cancel()
		wg.Wait()
		if err != nil {
			b.Fatalf("pods not all assigned: %v", err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(pods)*float64(b.N)/b.Elapsed().Seconds(), "pods/s")
}

func countAssigned(st *state.Store) int {
	n := 0
	for _, p := range st.Pods(state.PodFilter{}) {
		if p.Node != "" {
			n++
		}
	}
	return n
}
