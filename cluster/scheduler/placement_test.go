package scheduler_test

import (
	"strings"
	"testing"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/scheduler"
)

func labelled(name string, labels map[string]string) api.Node {
	return api.Node{Name: name, Status: api.NodeReady, Labels: labels}
}

func rcWith(spec api.ServiceSpec, pinned string) scheduler.Controllers {
	return func(key string) (api.ReplicationController, bool) {
		if key != api.RCKey(spec.Project, spec.Name) {
			return api.ReplicationController{}, false
		}
		return api.ReplicationController{Project: spec.Project, Service: spec.Name, Template: spec, PinnedNode: pinned}, true
	}
}

func pendingPods(service string, n int) []api.Pod {
	var pods []api.Pod
	for i := 1; i <= n; i++ {
		pods = append(pods, api.Pod{Name: api.PodName("p", service, i), Project: "p", Service: service, Index: i})
	}
	return pods
}

func TestPlacement(t *testing.T) {
	nodes := []api.Node{
		labelled("a", map[string]string{"zone": "east", "disk": "ssd"}),
		labelled("b", map[string]string{"zone": "east"}),
		labelled("c", map[string]string{"zone": "west"}),
	}
	tests := []struct {
		name      string
		placement api.Placement
		volumes   []api.VolumeMount
		pinned    string
		pods      int
		want      map[string]int // node -> pods
		wantPin   string
		wantWhy   string // substring of the unschedulable reason
	}{
		{name: "hostname", placement: api.Placement{Constraints: []string{"node.hostname==b"}}, pods: 3, want: map[string]int{"b": 3}},
		{name: "label equal", placement: api.Placement{Constraints: []string{"node.labels.zone==east"}}, pods: 4, want: map[string]int{"a": 2, "b": 2}},
		{name: "label not equal", placement: api.Placement{Constraints: []string{"node.labels.zone != east"}}, pods: 2, want: map[string]int{"c": 2}},
		{name: "missing label matches !=", placement: api.Placement{Constraints: []string{"node.labels.disk!=ssd"}}, pods: 2, want: map[string]int{"b": 1, "c": 1}},
		{name: "no node matches", placement: api.Placement{Constraints: []string{"node.labels.zone==north"}}, pods: 1,
			wantWhy: "0/3 nodes available: 3 constraint node.labels.zone==north not met"},
		{name: "bad constraint", placement: api.Placement{Constraints: []string{"node.role==manager"}}, pods: 1, wantWhy: "not supported"},
		{name: "spread over zones", placement: api.Placement{Preferences: []string{"node.labels.zone"}}, pods: 4,
			want: map[string]int{"a": 1, "b": 1, "c": 2}},
		{name: "max per node", placement: api.Placement{MaxPerNode: 1}, pods: 4, want: map[string]int{"a": 1, "b": 1, "c": 1},
			wantWhy: "3 max 1 replicas per node reached"},
		{name: "named volume pins to first node", volumes: []api.VolumeMount{{Type: api.MountVolume, Source: "data", Target: "/d"}},
			pods: 3, want: map[string]int{"a": 3}, wantPin: "a"},
		{name: "pinned elsewhere", pinned: "c", volumes: []api.VolumeMount{{Type: api.MountBind, Source: "/x", Target: "/d"}},
			pods: 2, want: map[string]int{"c": 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := api.ServiceSpec{Project: "p", Name: "web", Placement: tt.placement, Volumes: tt.volumes}
			plan := scheduler.Schedule(nodes, pendingPods("web", tt.pods), rcWith(spec, tt.pinned))
			got := perNode(plan)
			for n, c := range tt.want {
				if got[n] != c {
					t.Errorf("node %s got %d pods, want %d (all: %v)", n, got[n], c, got)
				}
			}
			if tt.want != nil && len(got) != len(tt.want) {
				t.Errorf("placement %v, want %v", got, tt.want)
			}
			if tt.wantWhy != "" {
				found := false
				for _, why := range plan.Unschedulable {
					found = found || strings.Contains(why, tt.wantWhy)
				}
				if !found {
					t.Errorf("unschedulable reasons %v, want one containing %q", plan.Unschedulable, tt.wantWhy)
				}
			} else if len(plan.Unschedulable) > 0 {
				t.Errorf("unexpected unschedulable pods: %v", plan.Unschedulable)
			}
			if got := plan.Pins[api.RCKey("p", "web")]; got != tt.wantPin {
				t.Errorf("pin = %q, want %q", got, tt.wantPin)
			}
		})
	}
}

// TestSidecarReservations: a pod reserves its service's resources and its
// sidecars': it goes only where both fit.
func TestSidecarReservations(t *testing.T) {
	spec := api.ServiceSpec{Project: "shop", Name: "web", Image: "x", Replicas: 1,
		Resources: api.Resources{Reservations: api.ResourceAmounts{MemoryBytes: 100 << 20}},
		Sidecars: []api.ServiceSpec{{Project: "shop", Name: "logs", Image: "y",
			Resources: api.Resources{Reservations: api.ResourceAmounts{MemoryBytes: 100 << 20}}}}}
	small := api.Node{Name: "small", Status: api.NodeReady, Allocatable: api.ResourceAmounts{MemoryBytes: 150 << 20}}
	big := api.Node{Name: "big", Status: api.NodeReady, Allocatable: api.ResourceAmounts{MemoryBytes: 300 << 20}}
	pods := []api.Pod{{Name: "shop-web-1", Project: "shop", Service: "web", Labels: map[string]string{}}}
	if plan := scheduler.Schedule([]api.Node{small, big}, pods, rcWith(spec, "")); plan.Assign["shop-web-1"] != "big" {
		t.Errorf("assign %v (unschedulable %v), want big: small fits web alone, not web and its sidecar", plan.Assign, plan.Unschedulable)
	}
	if plan := scheduler.Schedule([]api.Node{small}, pods, rcWith(spec, "")); plan.Assign["shop-web-1"] != "" || !strings.Contains(plan.Unschedulable["shop-web-1"], "memory") {
		t.Errorf("on small alone: assign %v, unschedulable %v; want unschedulable for memory", plan.Assign, plan.Unschedulable)
	}
}

// TestHostNetworkPorts: two host-network pods that serve one port never
// share a node, whichever services they belong to; a pod that fits
// nowhere stays pending with the port as the reason. Pods on the pod
// network take no node port.
func TestHostNetworkPorts(t *testing.T) {
	specs := map[string]api.ServiceSpec{}
	for _, s := range []api.ServiceSpec{
		{Project: "p", Name: "agent", HostNetwork: true, Expose: []string{"9100"}},
		{Project: "p", Name: "other", HostNetwork: true, Ports: []api.PortSpec{{Target: 9100, Protocol: "tcp"}}},
		{Project: "p", Name: "udp", HostNetwork: true, Expose: []string{"9100/udp"}},
		{Project: "p", Name: "web", Expose: []string{"9100"}},
	} {
		specs[api.RCKey(s.Project, s.Name)] = s
	}
	controllers := func(key string) (api.ReplicationController, bool) {
		s, ok := specs[key]
		return api.ReplicationController{Project: s.Project, Service: s.Name, Template: s}, ok
	}
	nodes := []api.Node{labelled("a", nil), labelled("b", nil)}
	// other's pod already runs on a.
	pods := append([]api.Pod{{Name: "p-other-1", Project: "p", Service: "other", Node: "a"}}, pendingPods("agent", 2)...)
	pods = append(pods, pendingPods("udp", 2)...)
	pods = append(pods, pendingPods("web", 3)...)
	plan := scheduler.Schedule(nodes, pods, controllers)
	if got := plan.Assign["p-agent-1"]; got != "b" {
		t.Errorf("agent-1 on %q, want b (a's 9100/tcp is other's)", got)
	}
	if why := plan.Unschedulable["p-agent-2"]; why != "0/2 nodes available: 2 host port 9100/tcp in use" {
		t.Errorf("agent-2: assigned %q, reason %q; want pending for the port", plan.Assign["p-agent-2"], why)
	}
	if a, b := plan.Assign["p-udp-1"], plan.Assign["p-udp-2"]; a == "" || b == "" || a == b {
		t.Errorf("udp pods on %q and %q, want one on each node (9100/udp is another port)", a, b)
	}
	for i := 1; i <= 3; i++ {
		if plan.Assign[api.PodName("p", "web", i)] == "" {
			t.Errorf("web-%d not placed: %v", i, plan.Unschedulable)
		}
	}
}

// TestCordonedNode: a cordoned node takes no new pod, and one that fits
// nowhere else stays pending with the reason; what runs there counts on.
func TestCordonedNode(t *testing.T) {
	spec := api.ServiceSpec{Project: "p", Name: "web"}
	controllers := func(key string) (api.ReplicationController, bool) {
		return api.ReplicationController{Project: "p", Service: "web", Template: spec}, key == api.RCKey("p", "web")
	}
	a, b := labelled("a", nil), labelled("b", nil)
	b.Cordoned = true
	pods := append([]api.Pod{{Name: "p-web-1", Project: "p", Service: "web", Node: "b"}}, pendingPods("web", 3)[1:]...)
	plan := scheduler.Schedule([]api.Node{a, b}, pods, controllers)
	for _, p := range []string{"p-web-2", "p-web-3"} {
		if got := plan.Assign[p]; got != "a" {
			t.Errorf("%s on %q, want a (b is cordoned)", p, got)
		}
	}
	a.Cordoned = true
	plan = scheduler.Schedule([]api.Node{a, b}, pods, controllers)
	if why := plan.Unschedulable["p-web-2"]; why != "0/2 nodes available: 2 node cordoned" {
		t.Errorf("both cordoned: p-web-2 assigned %q, reason %q", plan.Assign["p-web-2"], why)
	}
}

// TestEngineUnreachableNode: a node whose Docker Engine does not answer
// takes no new pod (it could not start it); one that fits nowhere else
// waits with the reason, and what runs there counts on.
func TestEngineUnreachableNode(t *testing.T) {
	spec := api.ServiceSpec{Project: "p", Name: "web"}
	controllers := func(key string) (api.ReplicationController, bool) {
		return api.ReplicationController{Project: "p", Service: "web", Template: spec}, key == api.RCKey("p", "web")
	}
	a, b := labelled("a", nil), labelled("b", nil)
	b.EngineUnreachable = true
	pods := append([]api.Pod{{Name: "p-web-1", Project: "p", Service: "web", Node: "a"}}, pendingPods("web", 3)[1:]...)
	plan := scheduler.Schedule([]api.Node{a, b}, pods, controllers)
	for _, p := range []string{"p-web-2", "p-web-3"} {
		if got := plan.Assign[p]; got != "a" {
			t.Errorf("%s on %q, want a (b's engine does not answer)", p, got)
		}
	}
	plan = scheduler.Schedule([]api.Node{b}, pods, controllers)
	if why := plan.Unschedulable["p-web-2"]; why != "0/1 nodes available: 1 engine unreachable" {
		t.Errorf("only b: p-web-2 assigned %q, reason %q", plan.Assign["p-web-2"], why)
	}
}
