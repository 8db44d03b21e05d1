package controller

import (
	"maps"
	"slices"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/scheduler"
	"github.com/devhq/dev/cluster/state"
)

// rebalance moves the pods of settled services towards an even spread
// over the nodes they may use, one pod per service at a time: it marks
// the pod to move (state.MovePod), and reconcileRC then replaces it as a
// drain does (start-first: the replacement placed off the pod's node and
// ready before the pod is retired; stop-first when the service asks).
// Which pod and where is the scheduler's call (scheduler.Rebalance: a
// node holding two more of the service's pods than the node a new pod
// would go to). A service is settled when every one of its pods is of
// its current template, placed, ready and none is moving or deleting,
// with as many as its replicas, and no update is under way; so a
// balanced cluster, and a dev up that changes nothing, move nothing.
//
// A move whose replacement fits nowhere is called off (the pod stays,
// the replacement goes as a surplus pod); one whose replacement never
// gets ready keeps the old pod serving, as a drain does.
//
// candidates are the controllers reconcileRC left as they are this pass.
func rebalance(st *state.Store, nodes []api.Node, pods []api.Pod, candidates []api.ReplicationController, byRC map[string][]api.Pod) []state.Command {
	var cmds []state.Command
	var keys []string
	for _, rc := range candidates {
		rcPods := byRC[rc.Key()]
		if stuck := movesStuck(rcPods); len(stuck) > 0 {
			cmds = append(cmds, stuck...)
			continue
		}
		if settled(rc, rcPods) {
			keys = append(keys, rc.Key())
		}
	}
	if len(keys) == 0 {
		return cmds
	}
	moves := scheduler.Rebalance(nodes, pods, st.RC, keys)
	for _, key := range slices.Sorted(maps.Keys(moves)) {
		m := moves[key]
		cmds = append(cmds, &state.MovePod{Name: m.Pod, Node: m.From, Moving: true})
	}
	return cmds
}

// movesStuck calls off the moves of a service whose replacement fits on
// no node (the scheduler recorded why): the moving pods are unmarked, and
// the replication loop retires the replacement as a surplus pod.
func movesStuck(pods []api.Pod) []state.Command {
	var moving []api.Pod
	stuck := false
	for _, p := range pods {
		switch {
		case p.Deleting:
		case p.Moving:
			moving = append(moving, p)
		case p.Node == "" && p.Status.Message != "":
			stuck = true
		}
	}
	if !stuck {
		return nil
	}
	var cmds []state.Command
	for _, p := range moving {
		cmds = append(cmds, &state.MovePod{Name: p.Name, Node: p.Node, Moving: false})
	}
	return cmds
}

// settled reports whether rc's pods may be rebalanced: as many as its
// replicas (two at least), all of its template, placed, ready, none
// moving, stopped or deleting, no update under way, and none of them
// keeping data on its node (Movable).
func settled(rc api.ReplicationController, pods []api.Pod) bool {
	if !rc.Released || !Movable(rc) || rc.Replicas < 2 || len(pods) != rc.Replicas {
		return false
	}
	if u := rc.Update; u != nil && (u.State == api.UpdateUpdating || u.State == api.UpdateRollingBack || u.State == api.UpdatePaused) {
		return false
	}
	for _, p := range pods {
		if p.Deleting || p.Moving || p.Stopped || p.SpecHash != rc.SpecHash || p.Node == "" || !p.Ready() {
			return false
		}
	}
	return true
}
