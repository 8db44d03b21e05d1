// Package scheduler places pods on nodes. It is pure: a read-only view of
// nodes, pods and pod templates in, a placement plan out.
package scheduler

import (
	"fmt"
	"sort"
	"strings"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// Plan is the outcome of one scheduling pass.
type Plan struct {
	// Assign maps pod name to node name.
	Assign map[string]string
	// Unschedulable maps pod name to the reason no node fits.
	Unschedulable map[string]string
	// Pins maps controller key to the node its pods are now pinned to (the
	// first placement of a service with host data).
	Pins map[string]string
}

// Controllers returns a service's replication controller (its pod template
// and pinned node) by controller key.
type Controllers func(rcKey string) (api.ReplicationController, bool)

// Schedule assigns every pending pod (no node, not deleting) in pods to a
// node. pods is the full pod list: assigned pods count towards each node's
// reserved resources and the spread of their service.
//
// Filters: node ready, resource reservations, placement constraints, max
// replicas per node, and the pinned node of services with host data. Scores:
// spread preferences over node labels, then spread of the service's
// replicas over nodes, then least allocated.
func Schedule(nodes []api.Node, pods []api.Pod, controllers Controllers) Plan {
	plan := Plan{Assign: map[string]string{}, Unschedulable: map[string]string{}, Pins: map[string]string{}}
	tallies := make(map[string]*tally, len(nodes))
	for _, n := range nodes {
		tallies[n.Name] = &tally{node: n, perService: map[string]int{}}
	}
	var pending []api.Pod
	for _, p := range pods {
		if p.Deleting {
			continue
		}
		if p.Node == "" {
			pending = append(pending, p)
			continue
		}
		if t, ok := tallies[p.Node]; ok {
			rc, _ := controllers(api.RCKey(p.Project, p.Service))
			t.add(p, rc.Template.Resources.Reservations)
		}
	}
	state.SortPods(pending)

	pins := map[string]string{}
	for _, p := range pending {
		key := api.RCKey(p.Project, p.Service)
		rc, ok := controllers(key)
		if !ok {
			plan.Unschedulable[p.Name] = "no pod template (service removed?)"
			continue
		}
		spec := rc.Template
		constraints, err := ParsePlacement(spec.Placement)
		if err != nil {
			plan.Unschedulable[p.Name] = err.Error()
			continue
		}
		pinned := rc.PinnedNode
		if pinned == "" {
			pinned = pins[key]
		}
		res := spec.Resources.Reservations
		var fit []*tally
		reasons := map[string]int{}
		for _, n := range nodes {
			t := tallies[n.Name]
			if why := t.rejects(res); why != "" {
				reasons[why]++
				continue
			}
			if why := rejectsPlacement(n, t, key, pinned, spec.Placement.MaxPerNode, constraints); why != "" {
				reasons[why]++
				continue
			}
			fit = append(fit, t)
		}
		if len(fit) == 0 {
			plan.Unschedulable[p.Name] = unschedulableReason(len(nodes), reasons)
			continue
		}
		groups := spreadGroups(spec.Placement.Preferences, tallies, key)
		sort.Slice(fit, func(i, j int) bool {
			a, b := fit[i], fit[j]
			for _, g := range groups {
				if ga, gb := g(a), g(b); ga != gb {
					return ga < gb // spread over label values first
				}
			}
			if a.perService[key] != b.perService[key] {
				return a.perService[key] < b.perService[key] // spread replicas
			}
			if la, lb := a.load(), b.load(); la != lb {
				return la < lb // least allocated
			}
			if a.pods != b.pods {
				return a.pods < b.pods
			}
			return a.node.Name < b.node.Name
		})
		best := fit[0]
		best.add(p, res)
		plan.Assign[p.Name] = best.node.Name
		if spec.HasHostData() && pinned == "" {
			pins[key] = best.node.Name
			plan.Pins[key] = best.node.Name
		}
	}
	return plan
}

// rejectsPlacement returns why the node cannot take a pod of service key
// under its placement rules, or "".
func rejectsPlacement(n api.Node, t *tally, key, pinned string, maxPerNode int, cs []Constraint) string {
	if pinned != "" && n.Name != pinned {
		return "volumes pinned to node " + pinned
	}
	for _, c := range cs {
		if !c.Matches(n) {
			return "constraint " + c.String() + " not met"
		}
	}
	if maxPerNode > 0 && t.perService[key] >= maxPerNode {
		return fmt.Sprintf("max %d replicas per node reached", maxPerNode)
	}
	return ""
}

// spreadGroups returns, for each spread preference (node.labels.K), a
// function giving the number of the service's pods already on nodes that
// share the candidate's value of K.
func spreadGroups(prefs []string, tallies map[string]*tally, key string) []func(*tally) int {
	var out []func(*tally) int
	for _, pref := range prefs {
		label := strings.TrimPrefix(pref, "node.labels.")
		out = append(out, func(t *tally) int {
			v := t.node.Labels[label]
			n := 0
			for _, o := range tallies {
				if o.node.Labels[label] == v {
					n += o.perService[key]
				}
			}
			return n
		})
	}
	return out
}

// tally is what one node already carries during a pass.
type tally struct {
	node       api.Node
	cpu, mem   int64
	pods       int
	perService map[string]int
}

func (t *tally) add(p api.Pod, res api.ResourceAmounts) {
	t.cpu += res.NanoCPUs
	t.mem += res.MemoryBytes
	t.pods++
	t.perService[api.RCKey(p.Project, p.Service)]++
}

// rejects returns why the node cannot take a pod reserving res, or "".
func (t *tally) rejects(res api.ResourceAmounts) string {
	if t.node.Status != api.NodeReady {
		return "node not ready"
	}
	alloc := t.node.Allocatable
	if res.NanoCPUs > 0 && alloc.NanoCPUs > 0 && t.cpu+res.NanoCPUs > alloc.NanoCPUs {
		return "insufficient cpu"
	}
	if res.MemoryBytes > 0 && alloc.MemoryBytes > 0 && t.mem+res.MemoryBytes > alloc.MemoryBytes {
		return "insufficient memory"
	}
	return ""
}

// load is the larger of the reserved CPU and memory fractions, in 1/1000.
func (t *tally) load() int64 {
	var l int64
	if a := t.node.Allocatable.NanoCPUs; a > 0 {
		l = t.cpu * 1000 / a
	}
	if a := t.node.Allocatable.MemoryBytes; a > 0 {
		if m := t.mem * 1000 / a; m > l {
			l = m
		}
	}
	return l
}

// unschedulableReason renders "0/3 nodes available: 2 insufficient memory, 1 node not ready".
func unschedulableReason(total int, reasons map[string]int) string {
	if total == 0 {
		return "no nodes registered"
	}
	parts := make([]string, 0, len(reasons))
	for why, n := range reasons {
		parts = append(parts, fmt.Sprintf("%d %s", n, why))
	}
	sort.Strings(parts)
	return fmt.Sprintf("0/%d nodes available: %s", total, strings.Join(parts, ", "))
}
