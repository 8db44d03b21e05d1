package scheduler_test

import (
	"reflect"
	"testing"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/scheduler"
)

// spread places pods 1.. of service web on nodes, counts[i] on nodes[i].
func spread(nodes []string, counts ...int) []api.Pod {
	var out []api.Pod
	i := 1
	for k, n := range counts {
		for range n {
			out = append(out, on(pending("web", i)[i-1], nodes[k]))
			i++
		}
	}
	return out
}

// spec serves one controller, p/web, with the template edit applies.
func spec(edit func(*api.ServiceSpec)) scheduler.Controllers {
	return func(key string) (api.ReplicationController, bool) {
		if key != "p/web" {
			return api.ReplicationController{}, false
		}
		s := api.ServiceSpec{Project: "p", Name: "web", Image: "web"}
		if edit != nil {
			edit(&s)
		}
		return api.ReplicationController{Project: "p", Service: "web", Template: s}, true
	}
}

func TestRebalance(t *testing.T) {
	names := []string{"n1", "n2", "n3"}
	cordoned := ready(names...)
	cordoned[2].Cordoned = true
	unreachable := ready(names...)
	unreachable[2].EngineUnreachable = true
	down := ready(names...)
	down[0].Status = api.NodeDown
	labelled := ready(names...)
	labelled[0].Labels = map[string]string{"zone": "a"}
	labelled[1].Labels = map[string]string{"zone": "a"}
	moving := spread(names, 3, 3, 0)
	moving[5].Moving = true
	tests := []struct {
		name  string
		nodes []api.Node
		pods  []api.Pod
		tmpl  scheduler.Controllers
		want  map[string]scheduler.Move
	}{
		{"a node came back empty: the highest pod of the fullest node (by name of equals) goes there",
			ready(names...), spread(names, 3, 3, 0), spec(nil),
			map[string]scheduler.Move{"p/web": {Pod: "p-web-3", From: "n1", To: "n3"}}},
		{"balanced: nothing", ready(names...), spread(names, 2, 2, 2), spec(nil), map[string]scheduler.Move{}},
		{"off by one: nothing", ready(names...), spread(names, 3, 2, 2), spec(nil), map[string]scheduler.Move{}},
		{"the empty node is cordoned: nothing", cordoned, spread(names, 3, 3, 0), spec(nil), map[string]scheduler.Move{}},
		{"the empty node's engine does not answer: nothing", unreachable, spread(names, 3, 3, 0), spec(nil), map[string]scheduler.Move{}},
		{"pods on a down node stay", down, spread(names, 4, 1, 1), spec(nil), map[string]scheduler.Move{}},
		{"a pod already moving: nothing more", ready(names...), moving, spec(nil), map[string]scheduler.Move{}},
		{"the empty node does not meet the constraint: nothing", labelled, spread(names, 3, 3, 0),
			spec(func(s *api.ServiceSpec) { s.Placement.Constraints = []string{"node.labels.zone==a"} }), map[string]scheduler.Move{}},
		{"max replicas per node reached on the emptier node: nothing", ready(names...), spread(names, 4, 2, 2),
			spec(func(s *api.ServiceSpec) { s.Placement.MaxPerNode = 2 }), map[string]scheduler.Move{}},
		{"no room on the empty node: nothing", []api.Node{node("n1", api.NodeReady, 4e9, 8*gib), node("n2", api.NodeReady, 4e9, 8*gib), node("n3", api.NodeReady, 4e9, gib/2)},
			spread(names, 3, 3, 0),
			spec(func(s *api.ServiceSpec) { s.Resources.Reservations = mem(gib) }), map[string]scheduler.Move{}},
		{"host port taken on the emptier node: nothing", ready(names...), append(spread(names, 3, 3, 0),
			api.Pod{Name: "p-proxy-1", Project: "p", Service: "proxy", Index: 1, Node: "n3"}),
			func(key string) (api.ReplicationController, bool) {
				if key == "p/proxy" {
					s := api.ServiceSpec{Project: "p", Name: "proxy", HostNetwork: true, Ports: []api.PortSpec{{Target: 80, Protocol: "tcp"}}}
					return api.ReplicationController{Project: "p", Service: "proxy", Template: s}, true
				}
				return spec(func(s *api.ServiceSpec) {
					s.HostNetwork = true
					s.Ports = []api.PortSpec{{Target: 80, Protocol: "tcp"}}
				})(key)
			}, map[string]scheduler.Move{}},
		{"named volume (data on the node): nothing", ready(names...), spread(names, 3, 3, 0),
			spec(func(s *api.ServiceSpec) {
				s.Volumes = []api.VolumeMount{{Type: api.MountVolume, Source: "data", Target: "/data"}}
			}), map[string]scheduler.Move{}},
		{"spread preferences: left to them", labelled, spread(names, 3, 3, 0),
			spec(func(s *api.ServiceSpec) { s.Placement.Preferences = []string{"node.labels.zone"} }), map[string]scheduler.Move{}},
		{"a pod waiting for a node: nothing", ready(names...), append(spread(names, 3, 3, 0), pending("web", 7)[6]), spec(nil), map[string]scheduler.Move{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := scheduler.Rebalance(tt.nodes, tt.pods, tt.tmpl, []string{"p/web"})
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Rebalance = %+v, want %+v", got, tt.want)
			}
		})
	}
}
