package scheduler_test

// referenceSchedule is the scheduler as it was before it was optimized for
// scale (a sort of every fitting node per pod): the executable statement of
// its semantics. TestScheduleMatchesReference checks that Schedule places
// every pod exactly as it does.

import (
	"fmt"
	"math/rand"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/scheduler"
	"github.com/devhq/dev/cluster/state"
)

// referenceSchedule assigns every pending pod (no node, not deleting) in pods to a
// node. pods is the full pod list: assigned pods count towards each node's
// reserved resources and the spread of their service.
//
// Filters: node ready, resource reservations, placement constraints, max
// replicas per node, and the pinned node of services with host data. Scores:
// spread preferences over node labels, then spread of the service's
// replicas over nodes, then least allocated.
func referenceSchedule(nodes []api.Node, pods []api.Pod, controllers scheduler.Controllers) scheduler.Plan {
	plan := scheduler.Plan{Assign: map[string]string{}, Unschedulable: map[string]string{}, Pins: map[string]string{}}
	tallies := make(map[string]*refTally, len(nodes))
	for _, n := range nodes {
		tallies[n.Name] = &refTally{node: n, perService: map[string]int{}}
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
		constraints, err := api.ParsePlacement(spec.Placement)
		if err != nil {
			plan.Unschedulable[p.Name] = err.Error()
			continue
		}
		pinned := rc.PinnedNode
		if pinned == "" {
			pinned = pins[key]
		}
		res := spec.Resources.Reservations
		var fit []*refTally
		reasons := map[string]int{}
		for _, n := range nodes {
			t := tallies[n.Name]
			if why := t.rejects(res); why != "" {
				reasons[why]++
				continue
			}
			if why := refRejectsPlacement(n, t, key, pinned, spec.Placement.MaxPerNode, constraints); why != "" {
				reasons[why]++
				continue
			}
			fit = append(fit, t)
		}
		if len(fit) == 0 {
			plan.Unschedulable[p.Name] = refUnschedulableReason(len(nodes), reasons)
			continue
		}
		groups := refSpreadGroups(spec.Placement.Preferences, tallies, key)
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

// refRejectsPlacement returns why the node cannot take a pod of service key
// under its placement rules, or "".
func refRejectsPlacement(n api.Node, t *refTally, key, pinned string, maxPerNode int, cs []api.Constraint) string {
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

// refSpreadGroups returns, for each spread preference (node.labels.K), a
// function giving the number of the service's pods already on nodes that
// share the candidate's value of K.
func refSpreadGroups(prefs []string, tallies map[string]*refTally, key string) []func(*refTally) int {
	var out []func(*refTally) int
	for _, pref := range prefs {
		label := strings.TrimPrefix(pref, "node.labels.")
		out = append(out, func(t *refTally) int {
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

// refTally is what one node already carries during a pass.
type refTally struct {
	node       api.Node
	cpu, mem   int64
	pods       int
	perService map[string]int
}

func (t *refTally) add(p api.Pod, res api.ResourceAmounts) {
	t.cpu += res.NanoCPUs
	t.mem += res.MemoryBytes
	t.pods++
	t.perService[api.RCKey(p.Project, p.Service)]++
}

// rejects returns why the node cannot take a pod reserving res, or "".
func (t *refTally) rejects(res api.ResourceAmounts) string {
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
func (t *refTally) load() int64 {
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

// refUnschedulableReason renders "0/3 nodes available: 2 insufficient memory, 1 node not ready".
func refUnschedulableReason(total int, reasons map[string]int) string {
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

// TestScheduleMatchesReference places random pods on random clusters with
// both schedulers and wants the same plan: filters, scores, reasons, pins.
func TestScheduleMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	pick := func(xs ...string) string { return xs[rng.Intn(len(xs))] }
	for iter := range 3000 {
		var nodes []api.Node
		for _, i := range rng.Perm(rng.Intn(12)) {
			n := api.Node{
				Name:   fmt.Sprintf("n%02d", i),
				Status: pick(api.NodeReady, api.NodeReady, api.NodeReady, api.NodeDown, api.NodeLeft),
				Labels: map[string]string{},
				Allocatable: api.ResourceAmounts{
					NanoCPUs:    []int64{0, 1e9, 2e9, 4e9}[rng.Intn(4)],
					MemoryBytes: []int64{0, 1 << 30, 2 << 30, 8 << 30}[rng.Intn(4)],
				},
			}
			if z := pick("a", "b", "c", "", "-"); z != "-" {
				n.Labels["zone"] = z
			}
			if r := pick("r1", "r2", "-"); r != "-" {
				n.Labels["rack"] = r
			}
			nodes = append(nodes, n)
		}
		rcs := map[string]api.ReplicationController{}
		var pods []api.Pod
		for s := range 1 + rng.Intn(5) {
			project := pick("p", "q")
			svc := fmt.Sprintf("s%d", s)
			spec := api.ServiceSpec{Project: project, Name: svc}
			spec.Resources.Reservations = api.ResourceAmounts{
				NanoCPUs:    []int64{0, 0, 25e7, 5e8, 1e9}[rng.Intn(5)],
				MemoryBytes: []int64{0, 0, 256 << 20, 512 << 20, 1 << 30}[rng.Intn(5)],
			}
			for range rng.Intn(3) {
				spec.Placement.Constraints = append(spec.Placement.Constraints,
					pick("node.labels.zone==a", "node.labels.zone!=b", "node.labels.rack==r1", "node.hostname==n03", "node.id!=n01", "node.labels.zone==", "zone==a"))
			}
			switch rng.Intn(5) {
			case 0:
				spec.Placement.Preferences = []string{"node.labels.zone"}
			case 1:
				spec.Placement.Preferences = []string{"node.labels.rack", "node.labels.zone"}
			case 2:
				if rng.Intn(10) == 0 {
					spec.Placement.Preferences = []string{"zone"}
				}
			}
			spec.Placement.MaxPerNode = rng.Intn(4)
			if rng.Intn(4) == 0 {
				spec.Volumes = []api.VolumeMount{{Type: api.MountVolume, Source: "data", Target: "/data"}}
			}
			rc := api.ReplicationController{Project: project, Service: svc, Template: spec}
			if spec.HasHostData() && rng.Intn(2) == 0 {
				rc.PinnedNode = pick("n01", "n02", "n05", "gone")
			}
			if rng.Intn(8) != 0 {
				rcs[rc.Key()] = rc
			}
			for i := 1; i <= rng.Intn(15); i++ {
				p := api.Pod{Name: api.PodName(project, svc, i), Project: project, Service: svc, Index: i}
				switch rng.Intn(6) {
				case 0, 1:
					p.Node = fmt.Sprintf("n%02d", rng.Intn(13))
				case 2:
					p.Deleting = true
					if rng.Intn(2) == 0 {
						p.Node = "n01"
					}
				}
				pods = append(pods, p)
			}
		}
		rng.Shuffle(len(pods), func(i, j int) { pods[i], pods[j] = pods[j], pods[i] })
		controllers := func(key string) (api.ReplicationController, bool) {
			rc, ok := rcs[key]
			return rc, ok
		}
		want := referenceSchedule(nodes, pods, controllers)
		got := scheduler.Schedule(nodes, pods, controllers)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("iteration %d: nodes %v\npods %v\nrcs %v\ngot  %+v\nwant %+v", iter, nodes, pods, rcs, got, want)
		}
	}
}
