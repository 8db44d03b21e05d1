package main

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/devhq/dev/bench/results"
	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/controller"
	"github.com/devhq/dev/cluster/manager"
	"github.com/devhq/dev/cluster/state"
)

// The steady state: o.nodes nodes, every pod placed, nothing changing, and
// every agent reporting every heartbeatEvery, for a window. Two ways of
// taking a report run in the same process one after the other:
//
//	before: the report is a raft write (what RegisterNode did until issue 13)
//	after:  manager.RegisterNode, which notes it in the leader's memory and
//	        writes only a changed record
//
// It prints raft writes/s and the process's CPU (user+system, the leader's
// whole work: raft, FSM, controller) per second of the window.

const heartbeatEvery = 5 * time.Second

type steadyFigures struct {
	writesPerSec, cpuPercent float64
}

func steady(o options, window time.Duration) ([]results.Record, error) {
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	r, log, closeStore, err := openStore(ctx, o.nodes)
	if err != nil {
		return nil, err
	}
	defer closeStore()
	st := r.State()
	// The leader's controller runs throughout, with the manager's liveness
	// as its node monitor's clock (as in an agent).
	mgr := manager.New(r, manager.Options{Node: "bench", Controller: controller.Options{NodeTimeout: time.Hour}}, log)
	mctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = mgr.Run(mctx) }()
	defer func() { stop(); <-done }()
	for _, p := range projects(o) {
		if _, err := r.Apply(ctx, &state.ApplyProject{Project: p, ServiceCIDR: "10.96.0.0/12"}); err != nil {
			return nil, fmt.Errorf("apply project %s: %w", p.Name, err)
		}
	}
	if err := waitAssigned(ctx, st, o.pods); err != nil {
		return nil, err
	}
	nodes := st.Nodes()
	report := func(n api.Node) api.Node {
		n.Role, n.Pods, n.Reserved = "", 0, api.ResourceAmounts{} // as an agent sends it
		return n
	}
	measure := func(take func(api.Node) error) (steadyFigures, error) {
		var f steadyFigures
		// Each node reports once per heartbeatEvery, spread evenly.
		gap := heartbeatEvery / time.Duration(len(nodes))
		tick := time.NewTicker(gap)
		defer tick.Stop()
		idx0, cpu0, t0 := st.Index(), cpuTime(), time.Now()
		for i := 0; time.Since(t0) < window; i++ {
			<-tick.C
			if err := take(report(nodes[i%len(nodes)])); err != nil {
				return f, err
			}
		}
		el := time.Since(t0).Seconds()
		f.writesPerSec = float64(st.Index()-idx0) / el
		f.cpuPercent = (cpuTime() - cpu0).Seconds() / el * 100
		return f, nil
	}
	before, err := measure(func(n api.Node) error {
		n.Heartbeat = time.Now().UTC()
		_, err := r.Apply(ctx, &state.PutNode{Node: n})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("heartbeats as raft writes: %w", err)
	}
	after, err := measure(func(n api.Node) error {
		_, err := mgr.RegisterNode(ctx, n)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("heartbeats in memory: %w", err)
	}
	fmt.Printf("steady state, %d nodes reporting every %s, %d pods placed, %s window:\n", len(nodes), heartbeatEvery, o.pods, window)
	fmt.Printf("  before (each report a raft write): %.1f raft writes/s, leader CPU %.1f%%\n", before.writesPerSec, before.cpuPercent)
	fmt.Printf("  after (reports in the leader's memory): %.1f raft writes/s, leader CPU %.1f%%\n", after.writesPerSec, after.cpuPercent)
	kase := fmt.Sprintf("steady: %d nodes heartbeating, %d pods", len(nodes), o.pods)
	note := fmt.Sprintf("in process: single-voter raft, the manager and controller; every node reports every %s; %s window; "+
		"before = each report a raft write (the code until issue 13), after = manager.RegisterNode", heartbeatEvery, window)
	return []results.Record{
		{Measure: "controlplane-steady", Case: kase + ": raft writes/s", Tool: "dev (before: heartbeats in raft)", Unit: "writes/s", Runs: []float64{before.writesPerSec}, Note: note},
		{Measure: "controlplane-steady", Case: kase + ": raft writes/s", Tool: "dev", Unit: "writes/s", Runs: []float64{after.writesPerSec}, Note: note},
		{Measure: "controlplane-steady", Case: kase + ": leader CPU", Tool: "dev (before: heartbeats in raft)", Unit: "% of a core", Runs: []float64{before.cpuPercent}, Note: note},
		{Measure: "controlplane-steady", Case: kase + ": leader CPU", Tool: "dev", Unit: "% of a core", Runs: []float64{after.cpuPercent}, Note: note},
	}, nil
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
