package scheduler

import (
	"github.com/devhq/dev/cluster/api"
)

// Move is one pod to move towards an even spread of its service.
type Move struct {
	// Pod is the pod to retire once its replacement is ready.
	Pod string
	// From is the node it runs on, To the node Schedule picks for a new
	// pod of its service now.
	From, To string
}

// Rebalance proposes, for each controller key in keys, at most one pod to
// move: from the node that holds the most of the service's pods to the
// node Schedule would pick for a new one, when the first holds at least
// two more. Both are nodes the service may use (ready, not cordoned, its
// Engine answering, the placement constraints met), and the target fits
// one more pod (every filter of Schedule: resources, max replicas per
// node, host ports). Left as they are: services with spread preferences
// (they spread over label values first, not over nodes), services whose
// pods keep data on their node (pinned), and services with a pod waiting
// for a node or a pod moving already. Each move lowers the sum of the squares of the service's
// pods per node, so moving again and again ends.
func Rebalance(nodes []api.Node, pods []api.Pod, controllers Controllers, keys []string) map[string]Move {
	ps := newPass(nodes, pods, controllers)
	waiting := map[string]bool{}
	for _, p := range ps.pending {
		waiting[api.RCKey(p.Project, p.Service)] = true
	}
	moves := map[string]Move{}
	for _, key := range keys {
		s := ps.lookup(key)
		if !s.ok || s.err != nil || len(s.prefs) > 0 || s.hostData || s.pinned != "" || waiting[key] || len(s.movingOff) > 0 {
			continue
		}
		s.countPods(ps.tallies)
		var to, from *tally
		for _, t := range ps.tallies {
			if s.rejects(t) == "" && (to == nil || s.before(t, to)) {
				to = t
			}
			if s.onNode[t.index] > 0 && s.mayLeave(t) &&
				(from == nil || s.onNode[t.index] > s.onNode[from.index] ||
					s.onNode[t.index] == s.onNode[from.index] && t.node.Name < from.node.Name) {
				from = t
			}
		}
		if to == nil || from == nil || s.onNode[from.index]-s.onNode[to.index] < 2 {
			continue
		}
		// The pod of the highest index there: the one a scale down
		// would retire first.
		var pick *api.Pod
		for i, p := range ps.bound[key] {
			if p.Node == from.node.Name && !p.Moving && (pick == nil || p.Index > pick.Index) {
				pick = &ps.bound[key][i]
			}
		}
		if pick != nil {
			moves[key] = Move{Pod: pick.Name, From: from.node.Name, To: to.node.Name}
		}
	}
	return moves
}

// mayLeave reports whether the service's pods on t count in its spread:
// a node it may use (ready, not cordoned, its Engine answering, the
// constraints met). Pods elsewhere stay where they are: a cordoned node
// keeps its pods until it is drained, an unreachable Engine's pods may
// still serve, a down node's are made again once its grace is over.
func (s *service) mayLeave(t *tally) bool {
	n := t.node
	if n.Status != api.NodeReady || n.Cordoned || n.EngineUnreachable {
		return false
	}
	for _, c := range s.constraints {
		if !c.Matches(n) {
			return false
		}
	}
	return true
}
