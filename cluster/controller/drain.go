package controller

import (
	"maps"
	"slices"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/scheduler"
	"github.com/devhq/dev/cluster/state"
)

// Movable reports whether a drain may move rc's pods to another node: not
// when they keep data on theirs (named volumes, bind mounts), which pins
// the service to it.
func Movable(rc api.ReplicationController) bool {
	return rc.PinnedNode == "" && !rc.Template.HasHostData()
}

// resting reports whether p is not meant to run: stopped by the user (dev
// stop, dev kill), or exited and not to be restarted by its restart
// policy (a finished job). It counts neither as serving nor as starting,
// and a drain moves it without running it.
func resting(p api.Pod, spec api.ServiceSpec) bool {
	return p.Stopped || p.Node != "" && p.Status.State == api.PodExited && !api.RestartsAfter(spec.RestartPolicy(), p.Status.ExitCode)
}

// placeable is whether the scheduler could place a new pod of a service
// now, given every pod: a stop-first drain stops a pod only then.
func placeable(st *state.Store, pods []api.Pod) func(api.ReplicationController) bool {
	return func(rc api.ReplicationController) bool {
		probe := newPod(rc, 1<<30) // a name no pod holds
		plan := scheduler.Schedule(st.Nodes(), append(slices.Clone(pods), probe), st.RC)
		_, ok := plan.Assign[probe.Name]
		return ok
	}
}

// drain moves the pods of rc off draining nodes (leaving) the way a
// rolling update replaces pods, in the service's update order and
// parallelism (delay and monitor apart: nothing is being verified):
//   - start-first: a replacement is started first, placed by the
//     scheduler on another node (a draining node is cordoned), and a
//     leaving pod is retired only once a replacement is ready, so that
//     the ready pods never drop below the replicas; a replacement that
//     cannot be placed or never gets ready keeps the old pod serving;
//   - stop-first: a batch of leaving pods is stopped once the pods
//     elsewhere are ready and a replacement can be placed (fits), and
//     replacements take their names.
//
// A leaving pod that is not ready serves nothing and goes at once. One
// that rests (stopped, or a finished job) is replaced by a pod that rests
// too: the drain starts nothing the user stopped.
func drain(rc api.ReplicationController, cur, leaving []api.Pod, deleting int, used map[int]bool, fits func(api.ReplicationController) bool) rcPlan {
	var out rcPlan
	cfg := rc.Template.UpdateSettings(false)
	par := cfg.Parallelism
	if par <= 0 {
		par = max(rc.Replicas, 1)
	}
	if len(cur) > rc.Replicas {
		// More pods elsewhere than replicas (scaled down meanwhile).
		for _, p := range retireOrder(cur)[:len(cur)-rc.Replicas] {
			out.del = append(out.del, p.Name)
		}
		return out
	}
	// want is the pods meant to run: the replicas but those that rest.
	want := rc.Replicas
	active := 0 // cur's pods meant to run
	ready, inflight := 0, 0
	for _, p := range cur {
		switch {
		case resting(p, rc.Template):
			want--
		case p.Ready():
			ready++
			active++
		default:
			inflight++
			active++
		}
	}
	var moving []api.Pod
	readyLeaving := 0
	for _, p := range leaving {
		if resting(p, rc.Template) {
			// Moved as it is: a replacement that rests, then this one goes.
			want--
			rest := newPods(rc, used, 1, len(used)+1)
			for i := range rest {
				rest[i].Stopped = true
			}
			out.create = append(out.create, rest...)
			out.del = append(out.del, p.Name)
			continue
		}
		moving = append(moving, p)
		if p.Ready() {
			readyLeaving++
		}
	}
	switch cfg.Order {
	case api.OrderStopFirst:
		// A batch starts once the last one is done (its pods gone and
		// replaced, the replacements ready), and only if a replacement
		// can be placed: else the pods go on serving where they are.
		if inflight == 0 && deleting == 0 && active+len(moving) >= want && len(moving) > 0 && fits(rc) {
			n := min(par, len(moving))
			for _, p := range retireOrder(moving)[:n] {
				out.del = append(out.del, p.Name)
			}
			moving = retireOrder(moving)[n:]
		}
		out.create = append(out.create, newPods(rc, used, want-active-len(moving), rc.Replicas)...)
	default: // start-first
		k := len(moving) - readyLeaving + max(0, ready+readyLeaving-want)
		if k = min(k, len(moving)); k > 0 {
			for _, p := range retireOrder(moving)[:k] {
				out.del = append(out.del, p.Name)
			}
		}
		if n := min(par-inflight, want-active); n > 0 {
			// Names beyond the replicas while the leaving pods hold theirs.
			out.create = append(out.create, newPods(rc, used, n, len(used)+n)...)
		}
	}
	return out
}

// finishDrains ends the drain of each draining node that holds no pod
// but those that cannot move (data on the node); deleting pods must be
// gone first (stopped and removed).
func finishDrains(st *state.Store, draining map[string]bool, pods []api.Pod) []state.Command {
	busy := map[string]bool{}
	for _, p := range pods {
		if !draining[p.Node] || busy[p.Node] {
			continue
		}
		if p.Deleting {
			busy[p.Node] = true
			continue
		}
		if rc, ok := st.RC(api.RCKey(p.Project, p.Service)); !ok || Movable(rc) {
			busy[p.Node] = true
		}
	}
	var cmds []state.Command
	for _, name := range slices.Sorted(maps.Keys(draining)) {
		if !busy[name] {
			cmds = append(cmds, &state.FinishDrain{Name: name})
		}
	}
	return cmds
}

// DrainTargets are the nodes other than node that could take its pods:
// ready, placing new pods (not cordoned, not draining) and with an engine
// that answers. A drain with none moves nothing.
func DrainTargets(nodes []api.Node, node string) []string {
	var out []string
	for _, n := range nodes {
		if n.Name != node && n.Status == api.NodeReady && !n.Cordoned && !n.Draining && !n.EngineUnreachable {
			out = append(out, n.Name)
		}
	}
	return out
}
