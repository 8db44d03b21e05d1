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
// Filters: node ready, not cordoned, its Engine answering, resource reservations, placement constraints, max
// replicas per node, the pinned node of services with host data, and the
// node ports of host-network pods. Scores,
// in order: spread preferences over node labels, then spread of the
// service's replicas over nodes, then least allocated, then fewest pods, then
// the node name.
//
// It is built for 1,000s of nodes and 10,000s of pods in one pass: a pod
// costs one scan of the nodes without allocating (see the comments on
// service and tally), not a sort of them.
func Schedule(nodes []api.Node, pods []api.Pod, controllers Controllers) Plan {
	plan := Plan{Assign: map[string]string{}, Unschedulable: map[string]string{}, Pins: map[string]string{}}
	ps := newPass(nodes, pods, controllers)
	tallies := ps.tallies
	state.SortPods(ps.pending)

	for _, p := range ps.pending {
		s := ps.lookup(api.RCKey(p.Project, p.Service))
		if !s.ok {
			plan.Unschedulable[p.Name] = "no pod template (service removed?)"
			continue
		}
		if s.err != nil {
			plan.Unschedulable[p.Name] = s.err.Error()
			continue
		}
		if s.onNode == nil {
			s.countPods(tallies)
		}
		// The best node is the first in score order among those that fit:
		// one pass keeping the best so far.
		var best *tally
		for _, t := range tallies {
			if s.rejects(t) != "" {
				continue
			}
			if best == nil || s.before(t, best) {
				best = t
			}
		}
		if best == nil {
			// Only now count why each node refused.
			reasons := map[string]int{}
			for _, t := range tallies {
				reasons[s.rejects(t)]++
			}
			plan.Unschedulable[p.Name] = unschedulableReason(len(nodes), reasons)
			continue
		}
		s.place(p, best)
		plan.Assign[p.Name] = best.node.Name
		if s.hostData && s.pinned == "" {
			s.pin(best.node.Name)
			plan.Pins[s.key] = best.node.Name
		}
	}
	return plan
}

// pass is what one pass knows: the nodes with what they carry, the
// services met so far, and the pods still to place.
type pass struct {
	tallies     []*tally
	byName      map[string]*tally
	services    map[string]*service
	controllers Controllers
	pending     []api.Pod
	// bound lists each service's assigned live pods, by controller key.
	bound map[string][]api.Pod
}

// newPass counts the assigned live pods of pods on nodes.
func newPass(nodes []api.Node, pods []api.Pod, controllers Controllers) *pass {
	ps := &pass{
		tallies:     make([]*tally, len(nodes)),
		byName:      make(map[string]*tally, len(nodes)),
		services:    map[string]*service{},
		controllers: controllers,
		bound:       map[string][]api.Pod{},
	}
	for i, n := range nodes {
		ps.tallies[i] = &tally{index: i, node: n, perService: map[string]int{}}
		ps.byName[n.Name] = ps.tallies[i]
	}
	for _, p := range pods {
		if p.Deleting {
			continue
		}
		if p.Node == "" {
			ps.pending = append(ps.pending, p)
			continue
		}
		key := api.RCKey(p.Project, p.Service)
		ps.bound[key] = append(ps.bound[key], p)
		if t, ok := ps.byName[p.Node]; ok {
			s := ps.lookup(key)
			t.add(p, s)
			if p.Moving {
				// Its replacement goes elsewhere.
				if s.movingOff == nil {
					s.movingOff = map[string]bool{}
				}
				s.movingOff[p.Node] = true
			}
		}
	}
	return ps
}

// lookup returns the service of a controller key. One lookup per
// controller and pass, not one per pod: controllers returns a copy of the
// whole template.
func (ps *pass) lookup(key string) *service {
	s, ok := ps.services[key]
	if !ok {
		s = newService(key, ps.controllers)
		ps.services[key] = s
	}
	return s
}

// service is what a pass knows of one controller, worked out once rather
// than per pod or per node: its template, parsed placement, the reasons a
// node may be refused (so that filtering a node allocates nothing), and its
// pods per node and per spread label value, kept up to date as its pods
// are placed (so that scoring a node is a few slice and map lookups).
type service struct {
	key         string
	ok          bool // the controller exists
	res         api.ResourceAmounts
	constraints []api.Constraint
	err         error // of the placement
	maxPerNode  int
	hostData    bool
	hostPorts   []string // node ports each pod takes (host network)
	prefs       []string // spread preferences: node label keys

	// pinned is the node the service's pods must go to ("" for any): the
	// controller's pinned node, or where this pass placed its first pod.
	pinned string

	// movingOff holds the nodes a pod of the service is being moved off
	// (rebalance): its replacement must not land there again.
	movingOff map[string]bool

	// Reasons a node is refused, rendered once.
	pinnedWhy     string
	constraintWhy []string
	maxWhy        string
	hostPortWhy   []string

	// Filled in by countPods before the service's first pending pod:
	// onNode[i] is the number of its pods on nodes[i]; spread[k][v] the
	// number on nodes whose label prefs[k] has the v-th value, and
	// group[k][i] is v for nodes[i] (values numbered once, so that scoring
	// indexes slices rather than hashing label values).
	onNode []int
	spread [][]int
	group  [][]int
}

func newService(key string, controllers Controllers) *service {
	s := &service{key: key}
	rc, ok := controllers(key)
	if !ok {
		return s
	}
	spec := rc.Template
	s.ok = true
	s.res = spec.PodReservations() // the sidecars' with the service's
	s.constraints, s.err = api.ParsePlacement(spec.Placement)
	s.maxPerNode = spec.Placement.MaxPerNode
	s.maxWhy = fmt.Sprintf("max %d replicas per node reached", s.maxPerNode)
	s.hostData = spec.HasHostData()
	s.hostPorts = spec.HostPorts()
	for _, p := range s.hostPorts {
		s.hostPortWhy = append(s.hostPortWhy, "host port "+p+" in use")
	}
	for _, c := range s.constraints {
		s.constraintWhy = append(s.constraintWhy, "constraint "+c.String()+" not met")
	}
	for _, pref := range spec.Placement.Preferences {
		s.prefs = append(s.prefs, strings.TrimPrefix(pref, "node.labels."))
	}
	if rc.PinnedNode != "" {
		s.pin(rc.PinnedNode)
	}
	return s
}

// pin restricts the service's pods to node.
func (s *service) pin(node string) {
	s.pinned = node
	s.pinnedWhy = "volumes pinned to node " + node
}

// countPods fills in onNode, spread and group from the pods already on
// nodes.
func (s *service) countPods(tallies []*tally) {
	s.onNode = make([]int, len(tallies))
	for i, t := range tallies {
		s.onNode[i] = t.perService[s.key]
	}
	s.spread = make([][]int, len(s.prefs))
	s.group = make([][]int, len(s.prefs))
	for k, label := range s.prefs {
		values := map[string]int{} // label value -> its number
		s.group[k] = make([]int, len(tallies))
		for i, t := range tallies {
			v, ok := values[t.node.Labels[label]] // nodes without the label share ""
			if !ok {
				v = len(values)
				values[t.node.Labels[label]] = v
				s.spread[k] = append(s.spread[k], 0)
			}
			s.group[k][i] = v
			s.spread[k][v] += s.onNode[i]
		}
	}
}

// place records a pod of the service on t.
func (s *service) place(p api.Pod, t *tally) {
	t.add(p, s)
	s.onNode[t.index]++
	for k := range s.prefs {
		s.spread[k][s.group[k][t.index]]++
	}
}

// rejects returns why node t cannot take the service's next pod, or "".
func (s *service) rejects(t *tally) string {
	if why := t.rejects(s.res); why != "" {
		return why
	}
	if s.pinned != "" && t.node.Name != s.pinned {
		return s.pinnedWhy
	}
	for k, c := range s.constraints {
		if !c.Matches(t.node) {
			return s.constraintWhy[k]
		}
	}
	if s.movingOff[t.node.Name] {
		return "pod moving off this node"
	}
	if s.maxPerNode > 0 && s.onNode[t.index] >= s.maxPerNode {
		return s.maxWhy
	}
	for k, p := range s.hostPorts {
		if t.hostPorts[p] {
			return s.hostPortWhy[k]
		}
	}
	return ""
}

// before reports whether node a scores better than node b for the
// service's next pod. Names are unique, so this is a strict total order and
// the best node does not depend on the order nodes are visited in.
func (s *service) before(a, b *tally) bool {
	for k := range s.prefs {
		if ga, gb := s.spread[k][s.group[k][a.index]], s.spread[k][s.group[k][b.index]]; ga != gb {
			return ga < gb // spread over label values first
		}
	}
	if na, nb := s.onNode[a.index], s.onNode[b.index]; na != nb {
		return na < nb // spread replicas
	}
	if a.load != b.load {
		return a.load < b.load // least allocated
	}
	if a.pods != b.pods {
		return a.pods < b.pods
	}
	return a.node.Name < b.node.Name
}

// tally is what one node already carries during a pass.
type tally struct {
	index    int // in Schedule's nodes
	node     api.Node
	cpu, mem int64
	pods     int
	// load is the larger of the reserved CPU and memory fractions, in
	// 1/1000, kept by add rather than divided out at every comparison.
	load       int64
	perService map[string]int
	hostPorts  map[string]bool // taken by host-network pods, as "80/tcp"
}

// add records a pod of service s on the node.
func (t *tally) add(p api.Pod, s *service) {
	res := s.res
	for _, port := range s.hostPorts {
		if t.hostPorts == nil {
			t.hostPorts = map[string]bool{}
		}
		t.hostPorts[port] = true
	}
	t.cpu += res.NanoCPUs
	t.mem += res.MemoryBytes
	t.pods++
	t.perService[api.RCKey(p.Project, p.Service)]++
	t.load = 0
	if a := t.node.Allocatable.NanoCPUs; a > 0 {
		t.load = t.cpu * 1000 / a
	}
	if a := t.node.Allocatable.MemoryBytes; a > 0 {
		t.load = max(t.load, t.mem*1000/a)
	}
}

// rejects returns why the node cannot take a pod reserving res, or "".
func (t *tally) rejects(res api.ResourceAmounts) string {
	if t.node.Status != api.NodeReady {
		return "node not ready"
	}
	if t.node.Cordoned {
		return "node cordoned"
	}
	if t.node.EngineUnreachable {
		return "engine unreachable"
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
