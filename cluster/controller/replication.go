// Package controller holds the leader's reconcile loops: replication
// controllers, scheduling of pending pods, and the node monitor. It reads
// cluster/state and proposes commands; it knows nothing of raft or Docker.
package controller

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/scheduler"
	"github.com/devhq/dev/cluster/state"
)

// Writer proposes commands to the cluster store.
type Writer interface {
	Apply(ctx context.Context, cmd state.Command) (uint64, error)
}

// Options tune the controller.
type Options struct {
	// Resync is the period of a full pass even without changes.
	Resync time.Duration
	// NodeTimeout marks a node down when its heartbeat is older.
	NodeTimeout time.Duration
	// NodeGrace is how long a node may be down before its pods are
	// recreated elsewhere.
	NodeGrace time.Duration
}

// Controller runs the leader's reconcile loops.
type Controller struct {
	st   *state.Store
	w    Writer
	opts Options
	log  *slog.Logger
	now  func() time.Time
}

// New returns a controller; it starts nothing.
func New(st *state.Store, w Writer, opts Options, log *slog.Logger) *Controller {
	if opts.Resync == 0 {
		opts.Resync = 5 * time.Second
	}
	if opts.NodeTimeout == 0 {
		opts.NodeTimeout = 15 * time.Second
	}
	if opts.NodeGrace == 0 {
		opts.NodeGrace = 10 * time.Second
	}
	return &Controller{st: st, w: w, opts: opts, log: log.With("component", "controller"), now: time.Now}
}

// Run reconciles whenever the state changes and at every resync tick, until
// ctx ends. Errors of one pass are logged and retried at the next.
func (c *Controller) Run(ctx context.Context) error {
	tick := time.NewTicker(c.opts.Resync)
	defer tick.Stop()
	for {
		changed := c.st.Changed()
		if err := c.Reconcile(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("reconcile", "err", err)
			// Back off a little so a persistent error does not spin.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(200 * time.Millisecond):
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-tick.C:
		}
	}
}

// Reconcile computes one pass and proposes its commands.
func (c *Controller) Reconcile(ctx context.Context) error {
	for _, cmd := range Plan(c.st, c.now(), c.opts) {
		if _, err := c.w.Apply(ctx, cmd); err != nil {
			return fmt.Errorf("apply %T: %w", cmd, err)
		}
	}
	return nil
}

// Plan is one reconcile pass over a state view: the commands that move the
// cluster towards what its controllers ask for. It is pure.
func Plan(st *state.Store, now time.Time, opts ...Options) []state.Command {
	o := Options{NodeTimeout: 15 * time.Second, NodeGrace: 10 * time.Second}
	if len(opts) > 0 && opts[0].NodeTimeout > 0 {
		o.NodeTimeout = opts[0].NodeTimeout
	}
	if len(opts) > 0 && opts[0].NodeGrace > 0 {
		o.NodeGrace = opts[0].NodeGrace
	}
	var cmds []state.Command
	pods := st.Pods(state.PodFilter{})
	rcs := st.RCs("")

	byRC := map[string][]api.Pod{}
	for _, p := range pods {
		byRC[api.RCKey(p.Project, p.Service)] = append(byRC[api.RCKey(p.Project, p.Service)], p)
	}

	var create []api.Pod
	var del []string
	for _, rc := range rcs {
		rcPods := byRC[rc.Key()]
		if !rc.Released {
			if ok, _ := DependenciesMet(st, rc); ok {
				cmds = append(cmds, &state.ReleaseRC{Key: rc.Key()})
			}
			// Creation waits for the release to be committed.
			rc.Replicas = min(rc.Replicas, countLive(rcPods))
		}
		c, d := reconcileRC(rc, rcPods)
		create = append(create, c...)
		del = append(del, d...)
	}
	// Pods whose controller is gone.
	for _, p := range pods {
		if _, ok := st.RC(api.RCKey(p.Project, p.Service)); !ok && !p.Deleting {
			del = append(del, p.Name)
		}
	}
	if len(del) > 0 {
		sort.Strings(del)
		cmds = append(cmds, &state.MarkPodsDeleting{Names: del})
	}
	if len(create) > 0 {
		cmds = append(cmds, &state.CreatePods{Pods: create})
	}

	// Deleting pods that never reached a node have nothing to stop; pods of
	// a node that left, or that has been down longer than the grace period,
	// are forgotten so that their controllers recreate them elsewhere (the
	// node's agent removes their containers if it comes back).
	nodeByName := map[string]api.Node{}
	for _, n := range st.Nodes() {
		nodeByName[n.Name] = n
	}
	var gone []string
	for _, p := range pods {
		if p.Node == "" {
			if p.Deleting {
				gone = append(gone, p.Name)
			}
			continue
		}
		n, ok := nodeByName[p.Node]
		switch {
		case !ok, n.Status == api.NodeLeft:
			gone = append(gone, p.Name)
		case n.Status == api.NodeDown && !n.DownSince.IsZero() && now.Sub(n.DownSince) > o.NodeGrace:
			gone = append(gone, p.Name)
		}
	}
	if len(gone) > 0 {
		cmds = append(cmds, &state.DeletePods{Names: gone})
	}

	// Node monitor.
	nodes := st.Nodes()
	for i := range nodes {
		n := &nodes[i] // in place: the scheduler below must see the node down
		if n.Status == api.NodeReady && !n.Heartbeat.IsZero() && now.Sub(n.Heartbeat) > o.NodeTimeout {
			n.Status = api.NodeDown
			n.DownSince = now.UTC()
			cmds = append(cmds, &state.PutNode{Node: *n})
		}
	}

	// Scheduling.
	plan := scheduler.Schedule(nodes, pods, st.RC)
	for name, reason := range plan.Unschedulable {
		if p, ok := st.Pod(name); ok && p.Status.Message == reason {
			delete(plan.Unschedulable, name) // already recorded
		}
	}
	if len(plan.Assign) > 0 || len(plan.Unschedulable) > 0 {
		cmds = append(cmds, &state.AssignPods{Nodes: plan.Assign, Unschedulable: plan.Unschedulable, Pins: plan.Pins})
	}
	return cmds
}

func countLive(pods []api.Pod) int {
	n := 0
	for _, p := range pods {
		if !p.Deleting {
			n++
		}
	}
	return n
}

// reconcileRC is the classic replication loop for one controller: pods of an
// old template are replaced; then pods are created or deleted until the live
// count matches. Pod names stay "<project>-<service>-<n>" with n in
// 1..replicas: a slot still held by a deleting pod is reused once it is gone.
func reconcileRC(rc api.ReplicationController, pods []api.Pod) (create []api.Pod, del []string) {
	used := map[int]bool{}
	var live []api.Pod
	for _, p := range pods {
		used[p.Index] = true
		if p.Deleting {
			continue
		}
		if p.SpecHash != rc.SpecHash {
			del = append(del, p.Name) // recreate from the new template
			continue
		}
		live = append(live, p)
	}
	switch {
	case len(live) > rc.Replicas:
		// Remove unscheduled first, then not ready, then the highest index.
		sort.Slice(live, func(i, j int) bool {
			a, b := live[i], live[j]
			if (a.Node == "") != (b.Node == "") {
				return a.Node == ""
			}
			if a.Ready() != b.Ready() {
				return !a.Ready()
			}
			return a.Index > b.Index
		})
		for _, p := range live[:len(live)-rc.Replicas] {
			del = append(del, p.Name)
		}
	case len(live) < rc.Replicas:
		missing := rc.Replicas - len(live)
		for i := 1; i <= rc.Replicas && missing > 0; i++ {
			if used[i] {
				continue
			}
			create = append(create, newPod(rc, i))
			missing--
		}
	}
	return create, del
}

func newPod(rc api.ReplicationController, index int) api.Pod {
	name := api.PodName(rc.Project, rc.Service, index)
	labels := map[string]string{}
	for k, v := range rc.Template.Labels {
		labels[k] = v
	}
	labels[api.LabelProject] = rc.Project
	labels[api.LabelService] = rc.Service
	labels[api.LabelPod] = name
	return api.Pod{
		Name:     name,
		Project:  rc.Project,
		Service:  rc.Service,
		Index:    index,
		Labels:   labels,
		SpecHash: rc.SpecHash,
		Status:   api.PodStatus{State: api.PodPending},
	}
}

// DependenciesMet reports whether every depends_on condition of rc holds, and
// if not, which one is waited for. A condition that can no longer hold (a
// dependency completed with a failure) is reported as an error.
func DependenciesMet(st *state.Store, rc api.ReplicationController) (bool, error) {
	for _, dep := range rc.Template.DependsOn {
		depRC, ok := st.RC(api.RCKey(rc.Project, dep.Service))
		if !ok {
			if dep.Required {
				return false, nil
			}
			continue
		}
		var pods []api.Pod
		for _, p := range st.Pods(state.PodFilter{Selector: depRC.Selector()}) {
			if !p.Deleting && p.SpecHash == depRC.SpecHash {
				pods = append(pods, p)
			}
		}
		if len(pods) < depRC.Replicas {
			return false, nil
		}
		for _, p := range pods {
			switch dep.Condition {
			case api.ConditionHealthy:
				if p.Status.State != api.PodRunning || (p.Status.Health != "" && p.Status.Health != api.HealthHealthy) {
					return false, nil
				}
			case api.ConditionCompletedSuccessfully:
				if p.Status.State == api.PodExited && p.Status.ExitCode != 0 {
					return false, fmt.Errorf("dependency %s exited with code %d", p.Name, p.Status.ExitCode)
				}
				if p.Status.State != api.PodExited {
					return false, nil
				}
			default: // service_started
				if p.Status.State != api.PodRunning && p.Status.State != api.PodExited {
					return false, nil
				}
			}
		}
	}
	return true, nil
}
