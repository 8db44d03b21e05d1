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
	// LastSeen is when a node's agent last reported, as the leader keeps it
	// in memory (heartbeats are not written to raft); nil or zero: the
	// heartbeat in the node's record.
	LastSeen func(node string) time.Time
}

// nodeTimers returns the node monitor's timers of opts, defaults filled in.
func nodeTimers(opts []Options) Options {
	o := Options{NodeTimeout: 15 * time.Second, NodeGrace: 10 * time.Second}
	if len(opts) > 0 {
		o.LastSeen = opts[0].LastSeen
	}
	if len(opts) > 0 && opts[0].NodeTimeout > 0 {
		o.NodeTimeout = opts[0].NodeTimeout
	}
	if len(opts) > 0 && opts[0].NodeGrace > 0 {
		o.NodeGrace = opts[0].NodeGrace
	}
	return o
}

// SeenAt is when the node's agent last reported: the later of LastSeen
// and the heartbeat in its record.
func (o Options) SeenAt(n api.Node) time.Time {
	if o.LastSeen != nil {
		if t := o.LastSeen(n.Name); t.After(n.Heartbeat) {
			return t
		}
	}
	return n.Heartbeat
}

// NextDeadline is the earliest moment after now at which Plan decides
// something new although the state has not changed: a down node's grace
// period running out (its pods are then recreated elsewhere), or a ready
// node's heartbeat growing too old (it is then marked down). Zero when no
// such moment is pending. It is pure.
func NextDeadline(st *state.Store, now time.Time, opts ...Options) time.Time {
	o := nodeTimers(opts)
	var next time.Time
	consider := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, n := range st.Nodes() {
		switch {
		case n.Status == api.NodeDown && !n.DownSince.IsZero():
			// Plan acts once the grace is strictly exceeded.
			consider(n.DownSince.Add(o.NodeGrace + time.Millisecond))
		case n.Status == api.NodeReady && !o.SeenAt(n).IsZero():
			consider(o.SeenAt(n).Add(o.NodeTimeout + time.Millisecond))
		}
	}
	return next
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

// Run reconciles whenever the state changes, when a node's grace period or
// heartbeat timeout runs out (NextDeadline: a lost node's pods move as soon
// as its grace is over, not at the next tick), and at every resync tick,
// until ctx ends. Errors of one pass are logged and retried at the next.
func (c *Controller) Run(ctx context.Context) error {
	tick := time.NewTicker(c.opts.Resync)
	defer tick.Stop()
	deadline := time.NewTimer(time.Hour)
	defer deadline.Stop()
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
		wake := time.Hour // bounded: the resync tick comes first anyway
		if next := NextDeadline(c.st, c.now(), c.opts); !next.IsZero() {
			wake = max(next.Sub(c.now()), time.Millisecond)
		}
		deadline.Reset(wake)
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-tick.C:
		case <-deadline.C:
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
	o := nodeTimers(opts)
	var cmds []state.Command
	pods := st.Pods(state.PodFilter{})
	rcs := st.RCs("")

	byRC := map[string][]api.Pod{}
	for _, p := range pods {
		byRC[api.RCKey(p.Project, p.Service)] = append(byRC[api.RCKey(p.Project, p.Service)], p)
	}
	draining := map[string]bool{}
	for _, n := range st.Nodes() {
		if n.Draining {
			draining[n.Name] = true
		}
	}

	fits := placeable(st, pods)
	var create []api.Pod
	var del []string
	var balance []api.ReplicationController // settled: the rebalance may move a pod
	for _, rc := range rcs {
		rcPods := byRC[rc.Key()]
		if !rc.Released {
			if ok, _ := DependenciesMet(st, rc); ok {
				cmds = append(cmds, &state.ReleaseRC{Key: rc.Key()})
			}
			// Creation waits for the release to be committed; pods
			// created stopped (dev up --no-start) need not wait.
			if !rc.CreateStopped {
				rc.Replicas = min(rc.Replicas, countLive(rcPods))
			}
		}
		out := reconcileRC(rc, rcPods, now, draining, fits)
		create = append(create, out.create...)
		del = append(del, out.del...)
		if out.rollback != "" {
			cmds = append(cmds, &state.RollbackRC{Key: rc.Key(), Reason: out.rollback})
		}
		if out.status != nil {
			cmds = append(cmds, &state.SetUpdate{Key: rc.Key(), Hash: rc.SpecHash, Status: *out.status})
		}
		if len(out.create) == 0 && len(out.del) == 0 && out.status == nil && out.rollback == "" {
			balance = append(balance, rc)
		}
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
	cmds = append(cmds, finishDrains(st, draining, pods)...)

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
		if seen := o.SeenAt(*n); n.Status == api.NodeReady && !seen.IsZero() && now.Sub(seen) > o.NodeTimeout {
			n.Status = api.NodeDown
			n.DownSince = now.UTC()
			n.Heartbeat = seen // the record says when it was last heard of
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
	return append(cmds, rebalance(st, nodes, pods, balance, byRC)...)
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

// rcPlan is what one reconcile pass decides for a controller.
type rcPlan struct {
	create []api.Pod
	del    []string
	// status is a new rolling-update status to record, if any.
	status *api.UpdateStatus
	// rollback, when set, is why the controller must roll back.
	rollback string
}

// reconcileRC is the replication loop for one controller. Pod names stay
// "<project>-<service>-<n>": a slot still held by a deleting pod is reused
// once it is gone. When the template changed, pods of the old template are
// replaced as its update settings say (see rollingUpdate); then pods on
// draining nodes, and pods the rebalance moves, are moved (see drain);
// otherwise live pods are created or deleted until their count matches.
func reconcileRC(rc api.ReplicationController, pods []api.Pod, now time.Time, draining map[string]bool, fits func(api.ReplicationController) bool) rcPlan {
	used := map[int]bool{}
	var cur, old, leaving []api.Pod
	deleting := 0
	movable := Movable(rc)
	for _, p := range pods {
		used[p.Index] = true
		switch {
		case p.Deleting:
			deleting++
		case p.SpecHash != rc.SpecHash:
			old = append(old, p)
		case (draining[p.Node] || p.Moving) && movable:
			leaving = append(leaving, p)
		default:
			cur = append(cur, p)
		}
	}
	if len(old) > 0 {
		// An update first: it replaces the old pods off the cordoned
		// node already; the drain moves the rest once it is done.
		return rollingUpdate(rc, append(cur, leaving...), old, deleting, used, now)
	}
	if len(leaving) > 0 {
		return drain(rc, cur, leaving, deleting, used, fits)
	}
	var out rcPlan
	out.create, out.del = scaleTo(rc, cur, used, rc.Replicas, rc.Replicas)
	if u := rc.Update; u != nil && (u.State == api.UpdateUpdating || u.State == api.UpdateRollingBack) &&
		len(out.create) == 0 && len(out.del) == 0 && allReady(cur) {
		done := *u
		done.State, done.Message = api.UpdateCompleted, ""
		if u.State == api.UpdateRollingBack {
			done.State, done.Message = api.UpdateRolledBack, u.Message
		}
		out.status = &done
	}
	return out
}

// scaleTo creates or deletes live pods until there are want, naming new
// pods with the lowest free index up to maxIndex.
func scaleTo(rc api.ReplicationController, live []api.Pod, used map[int]bool, want, maxIndex int) (create []api.Pod, del []string) {
	switch {
	case len(live) > want:
		for _, p := range retireOrder(live)[:len(live)-want] {
			del = append(del, p.Name)
		}
	case len(live) < want:
		create = newPods(rc, used, want-len(live), maxIndex)
	}
	return create, del
}

// retireOrder sorts pods in the order they should go: unscheduled first,
// then not ready, then the highest index.
func retireOrder(pods []api.Pod) []api.Pod {
	out := append([]api.Pod(nil), pods...)
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if (a.Node == "") != (b.Node == "") {
			return a.Node == ""
		}
		if a.Ready() != b.Ready() {
			return !a.Ready()
		}
		return a.Index > b.Index
	})
	return out
}

// newPods makes n pods from the template in free slots 1..maxIndex.
func newPods(rc api.ReplicationController, used map[int]bool, n, maxIndex int) []api.Pod {
	var out []api.Pod
	for i := 1; i <= maxIndex && len(out) < n; i++ {
		if used[i] {
			continue
		}
		used[i] = true
		out = append(out, newPod(rc, i))
	}
	return out
}

func allReady(pods []api.Pod) bool {
	for _, p := range pods {
		if !p.Ready() {
			return false
		}
	}
	return true
}

// rollingUpdate replaces old pods with pods of the current template, a batch
// of `parallelism` at a time, `delay` apart:
//   - start-first: new pods are started next to the old ones (names beyond
//     the replica count when needed); an old pod is retired once a new one
//     has been ready for `monitor`, so the ready count never drops below
//     the replicas;
//   - stop-first: a batch of old pods is stopped first, and new pods take
//     their names.
//
// New pods that fail (failed, exited, unhealthy, restarted) count against
// max_failure_ratio; past it, failure_action pauses the update, ignores the
// failure (continue), or rolls back to the previous template.
func rollingUpdate(rc api.ReplicationController, cur, old []api.Pod, deleting int, used map[int]bool, now time.Time) rcPlan {
	var out rcPlan
	u := api.UpdateStatus{State: api.UpdateUpdating}
	if rc.Update != nil {
		u = *rc.Update
	}
	rollingBack := u.State == api.UpdateRollingBack
	cfg := rc.Template.UpdateSettings(rollingBack)
	if u.State == api.UpdatePaused {
		// Keep what runs; only make up for pods that are gone.
		out.create = newPods(rc, used, rc.Replicas-len(cur)-len(old), rc.Replicas)
		return out
	}
	if u.StartedAt.IsZero() {
		u.StartedAt = now.UTC()
		out.status = &u
	}

	monitor := time.Duration(*cfg.Monitor)
	var failed, settled, inflight int
	for _, p := range cur {
		switch {
		case podFailed(p, rc.Template):
			failed++
		case p.Ready() && !p.Status.StartedAt.IsZero() && now.Sub(p.Status.StartedAt) >= monitor:
			settled++
		default:
			inflight++
		}
	}
	if failed > 0 && cfg.FailureAction != api.FailureContinue &&
		float64(failed)/float64(len(cur)) > cfg.MaxFailureRatio {
		why := fmt.Sprintf("%d of %d new pods failed", failed, len(cur))
		if cfg.FailureAction == api.FailureRollback && !rollingBack && rc.Previous != nil {
			out.rollback = "update failed: " + why + "; rolled back"
			out.status = nil
			return out
		}
		u.State, u.Message = api.UpdatePaused, "update paused: "+why+"; fix the service and run dev up again, or dev rollback"
		out.status = &u
		return out
	}

	// More pods of the new template than replicas (scaled down meanwhile).
	if len(cur) > rc.Replicas {
		for _, p := range retireOrder(cur)[:len(cur)-rc.Replicas] {
			out.del = append(out.del, p.Name)
		}
		return out
	}
	par := cfg.Parallelism
	if par <= 0 {
		par = max(rc.Replicas, 1)
	}
	delayed := cfg.Delay != nil && !u.LastBatchAt.IsZero() && now.Sub(u.LastBatchAt) < time.Duration(*cfg.Delay)
	batch := func() {
		u.LastBatchAt = now.UTC()
		out.status = &u
	}
	switch cfg.Order {
	case api.OrderStopFirst:
		// A batch starts once the last one is done: its old pods gone and
		// its new pods settled.
		if inflight == 0 && deleting == 0 && len(cur) < rc.Replicas && !delayed {
			n := min(par, len(old))
			for _, p := range retireOrder(old)[:n] {
				out.del = append(out.del, p.Name)
			}
			if n > 0 {
				batch()
			}
			old = retireOrder(old)[n:]
		}
		out.create = newPods(rc, used, rc.Replicas-len(cur)-len(old), rc.Replicas)
	default: // start-first
		// Retire old pods that serve nothing, and ready ones that settled
		// new pods cover, so that ready pods never drop below the replicas.
		readyOld := 0
		for _, p := range old {
			if p.Ready() {
				readyOld++
			}
		}
		k := len(old) - readyOld + max(0, settled+readyOld-rc.Replicas)
		if k = min(k, len(old)); k > 0 {
			for _, p := range retireOrder(old)[:k] {
				out.del = append(out.del, p.Name)
			}
		}
		if n := min(par-inflight, rc.Replicas-len(cur)); n > 0 && !delayed {
			out.create = newPods(rc, used, n, rc.Replicas+par)
			if len(out.create) > 0 {
				batch()
			}
		}
	}
	return out
}

// podFailed reports whether a new pod failed during an update.
func podFailed(p api.Pod, spec api.ServiceSpec) bool {
	st := p.Status
	switch {
	case p.Stopped:
		return false // created stopped (dev up --no-start): it waits for dev start
	case st.State == api.PodFailed, st.Health == api.HealthUnhealthy, st.Restarts > 0:
		return true
	case st.State == api.PodExited:
		policy := spec.RestartPolicy()
		return st.ExitCode != 0 || policy == api.RestartAlways || policy == api.RestartUnlessStopped
	}
	return false
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
		Stopped:  rc.CreateStopped,
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
