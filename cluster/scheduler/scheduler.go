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
}

// Templates returns the pod template of a service by controller key.
type Templates func(rcKey string) (api.ServiceSpec, bool)

// Schedule assigns every pending pod (no node, not deleting) in pods to a
// node. pods is the full pod list: assigned pods count towards each node's
// reserved resources and the spread of their service.
func Schedule(nodes []api.Node, pods []api.Pod, templates Templates) Plan {
	plan := Plan{Assign: map[string]string{}, Unschedulable: map[string]string{}}
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
			spec, _ := templates(api.RCKey(p.Project, p.Service))
			t.add(p, spec.Resources.Reservations)
		}
	}
	state.SortPods(pending)

	for _, p := range pending {
		spec, ok := templates(api.RCKey(p.Project, p.Service))
		if !ok {
			plan.Unschedulable[p.Name] = "no pod template (service removed?)"
			continue
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
			fit = append(fit, t)
		}
		if len(fit) == 0 {
			plan.Unschedulable[p.Name] = unschedulableReason(len(nodes), reasons)
			continue
		}
		svc := api.RCKey(p.Project, p.Service)
		sort.Slice(fit, func(i, j int) bool {
			a, b := fit[i], fit[j]
			if a.perService[svc] != b.perService[svc] {
				return a.perService[svc] < b.perService[svc] // spread replicas
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
	}
	return plan
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
