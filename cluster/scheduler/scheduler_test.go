package scheduler_test

import (
	"math/rand"
	"reflect"
	"strings"
	"testing"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/scheduler"
)

const gib = 1 << 30

func node(name, status string, cpu, mem int64) api.Node {
	return api.Node{Name: name, Status: status, Allocatable: api.ResourceAmounts{NanoCPUs: cpu, MemoryBytes: mem}}
}

func ready(names ...string) []api.Node {
	var out []api.Node
	for _, n := range names {
		out = append(out, node(n, api.NodeReady, 4e9, 8*gib))
	}
	return out
}

// pending returns pods 1..n of service, unassigned.
func pending(service string, n int) []api.Pod {
	var out []api.Pod
	for i := 1; i <= n; i++ {
		out = append(out, api.Pod{Name: api.PodName("p", service, i), Project: "p", Service: service, Index: i})
	}
	return out
}

func on(p api.Pod, node string) api.Pod {
	p.Node = node
	return p
}

func deleting(p api.Pod) api.Pod {
	p.Deleting = true
	return p
}

// templates serves one spec per service of project "p", with a memory and
// CPU reservation.
func templates(res map[string]api.ResourceAmounts) scheduler.Controllers {
	return func(key string) (api.ReplicationController, bool) {
		for svc, r := range res {
			if api.RCKey("p", svc) == key {
				return api.ReplicationController{Project: "p", Service: svc,
					Template: api.ServiceSpec{Project: "p", Name: svc, Resources: api.Resources{Reservations: r}}}, true
			}
		}
		return api.ReplicationController{}, false
	}
}

func mem(b int64) api.ResourceAmounts { return api.ResourceAmounts{MemoryBytes: b} }

func perNode(plan scheduler.Plan) map[string]int {
	out := map[string]int{}
	for _, n := range plan.Assign {
		out[n]++
	}
	return out
}

func TestSchedule(t *testing.T) {
	noRes := templates(map[string]api.ResourceAmounts{"web": {}, "db": {}})
	tests := []struct {
		name      string
		nodes     []api.Node
		pods      []api.Pod
		templates scheduler.Controllers
		want      map[string]string // pod -> node
		wantUnsch map[string]string // pod -> reason
	}{
		{
			name:      "spread 6 replicas over 3 nodes",
			nodes:     ready("a", "b", "c"),
			pods:      pending("web", 6),
			templates: noRes,
			want: map[string]string{
				"p-web-1": "a", "p-web-2": "b", "p-web-3": "c",
				"p-web-4": "a", "p-web-5": "b", "p-web-6": "c",
			},
		},
		{
			name:      "skips nodes not ready",
			nodes:     []api.Node{node("a", api.NodeDown, 4e9, 8*gib), node("b", api.NodeReady, 4e9, 8*gib), node("c", api.NodeLeft, 4e9, 8*gib)},
			pods:      pending("web", 3),
			templates: noRes,
			want:      map[string]string{"p-web-1": "b", "p-web-2": "b", "p-web-3": "b"},
		},
		{
			name:      "no ready node",
			nodes:     []api.Node{node("a", api.NodeDown, 4e9, 8*gib), node("b", api.NodeDown, 4e9, 8*gib)},
			pods:      pending("web", 1),
			templates: noRes,
			wantUnsch: map[string]string{"p-web-1": "0/2 nodes available: 2 node not ready"},
		},
		{
			name:      "memory reservation: third pod fits nowhere",
			nodes:     []api.Node{node("a", api.NodeReady, 4e9, 1*gib), node("b", api.NodeReady, 4e9, 1*gib)},
			pods:      pending("web", 3),
			templates: templates(map[string]api.ResourceAmounts{"web": mem(600 << 20)}),
			want:      map[string]string{"p-web-1": "a", "p-web-2": "b"},
			wantUnsch: map[string]string{"p-web-3": "0/2 nodes available: 2 insufficient memory"},
		},
		{
			name:      "cpu reservation",
			nodes:     []api.Node{node("a", api.NodeReady, 1e9, 8*gib)},
			pods:      pending("web", 3),
			templates: templates(map[string]api.ResourceAmounts{"web": {NanoCPUs: 5e8}}),
			want:      map[string]string{"p-web-1": "a", "p-web-2": "a"},
			wantUnsch: map[string]string{"p-web-3": "0/1 nodes available: 1 insufficient cpu"},
		},
		{
			name:      "mixed reasons, sorted",
			nodes:     []api.Node{node("a", api.NodeDown, 4e9, 8*gib), node("b", api.NodeReady, 4e9, 256<<20), node("c", api.NodeReady, 4e9, 256<<20)},
			pods:      pending("web", 1),
			templates: templates(map[string]api.ResourceAmounts{"web": mem(512 << 20)}),
			wantUnsch: map[string]string{"p-web-1": "0/3 nodes available: 1 node not ready, 2 insufficient memory"},
		},
		{
			name:      "zero allocatable means unlimited",
			nodes:     []api.Node{node("a", api.NodeReady, 0, 0)},
			pods:      pending("web", 2),
			templates: templates(map[string]api.ResourceAmounts{"web": {NanoCPUs: 64e9, MemoryBytes: 512 * gib}}),
			want:      map[string]string{"p-web-1": "a", "p-web-2": "a"},
		},
		{
			name:      "assigned pods count toward spread",
			nodes:     ready("a", "b"),
			pods:      append([]api.Pod{on(pending("web", 1)[0], "a"), on(pending("web", 2)[1], "a")}, pending("web", 4)[2:]...),
			templates: noRes,
			want:      map[string]string{"p-web-3": "b", "p-web-4": "b"},
		},
		{
			name:  "assigned pods count toward reservations",
			nodes: []api.Node{node("a", api.NodeReady, 4e9, 1*gib), node("b", api.NodeReady, 4e9, 2*gib)},
			pods: []api.Pod{
				on(pending("db", 1)[0], "b"), // reserves 1.5GiB of b
				pending("web", 2)[0], pending("web", 2)[1],
			},
			templates: templates(map[string]api.ResourceAmounts{"db": mem(1536 << 20), "web": mem(768 << 20)}),
			want:      map[string]string{"p-web-1": "a"},
			wantUnsch: map[string]string{"p-web-2": "0/2 nodes available: 2 insufficient memory"},
		},
		{
			name:  "least allocated breaks spread ties",
			nodes: []api.Node{node("a", api.NodeReady, 4e9, 4*gib), node("b", api.NodeReady, 4e9, 4*gib)},
			pods:  []api.Pod{on(pending("db", 1)[0], "a"), pending("web", 1)[0]},
			templates: templates(map[string]api.ResourceAmounts{
				"db": mem(2 * gib), "web": mem(gib),
			}),
			want: map[string]string{"p-web-1": "b"},
		},
		{
			name:      "deleting pods are ignored",
			nodes:     []api.Node{node("a", api.NodeReady, 4e9, 1*gib)},
			pods:      []api.Pod{deleting(on(pending("db", 1)[0], "a")), deleting(pending("web", 2)[1]), pending("web", 1)[0]},
			templates: templates(map[string]api.ResourceAmounts{"db": mem(900 << 20), "web": mem(512 << 20)}),
			want:      map[string]string{"p-web-1": "a"},
		},
		{
			name:      "pods on unknown nodes are ignored",
			nodes:     ready("a"),
			pods:      []api.Pod{on(pending("web", 1)[0], "gone"), pending("web", 2)[1]},
			templates: noRes,
			want:      map[string]string{"p-web-2": "a"},
		},
		{
			name:      "no nodes",
			pods:      pending("web", 2),
			templates: noRes,
			wantUnsch: map[string]string{"p-web-1": "no nodes registered", "p-web-2": "no nodes registered"},
		},
		{
			name:      "no template",
			nodes:     ready("a"),
			pods:      pending("cache", 1),
			templates: noRes,
			wantUnsch: map[string]string{"p-cache-1": "no pod template (service removed?)"},
		},
		{
			name:      "nothing pending",
			nodes:     ready("a"),
			pods:      []api.Pod{on(pending("web", 1)[0], "a")},
			templates: noRes,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := scheduler.Schedule(tt.nodes, tt.pods, tt.templates)
			want, wantUnsch := tt.want, tt.wantUnsch
			if want == nil {
				want = map[string]string{}
			}
			if wantUnsch == nil {
				wantUnsch = map[string]string{}
			}
			if !reflect.DeepEqual(plan.Assign, want) {
				t.Errorf("Assign = %v, want %v", plan.Assign, want)
			}
			if !reflect.DeepEqual(plan.Unschedulable, wantUnsch) {
				t.Errorf("Unschedulable = %v, want %v", plan.Unschedulable, wantUnsch)
			}
		})
	}
}

func TestScheduleSpreadsEachServiceIndependently(t *testing.T) {
	pods := append(pending("web", 4), pending("db", 2)...)
	plan := scheduler.Schedule(ready("a", "b"), pods, templates(map[string]api.ResourceAmounts{"web": {}, "db": {}}))
	count := map[string]map[string]int{}
	for pod, n := range plan.Assign {
		svc := "web"
		if strings.HasPrefix(pod, "p-db-") {
			svc = "db"
		}
		if count[svc] == nil {
			count[svc] = map[string]int{}
		}
		count[svc][n]++
	}
	want := map[string]map[string]int{"web": {"a": 2, "b": 2}, "db": {"a": 1, "b": 1}}
	if !reflect.DeepEqual(count, want) {
		t.Errorf("per service per node = %v, want %v", count, want)
	}
	if got := perNode(plan); got["a"] != 3 || got["b"] != 3 {
		t.Errorf("per node = %v, want 3/3", got)
	}
}

func TestScheduleDeterministic(t *testing.T) {
	nodes := append(ready("c", "a", "b"), node("d", api.NodeReady, 4e9, 1*gib), node("e", api.NodeDown, 4e9, 8*gib))
	pods := append(append(pending("web", 7), pending("db", 3)...), on(pending("cache", 1)[0], "b"))
	tmpl := templates(map[string]api.ResourceAmounts{"web": mem(700 << 20), "db": mem(2 * gib), "cache": mem(gib)})
	first := scheduler.Schedule(nodes, pods, tmpl)
	if len(first.Assign) != 10 {
		t.Fatalf("assigned %d pods, want 10: %v (unschedulable %v)", len(first.Assign), first.Assign, first.Unschedulable)
	}
	r := rand.New(rand.NewSource(1))
	for i := range 50 {
		n := append([]api.Node(nil), nodes...)
		p := append([]api.Pod(nil), pods...)
		r.Shuffle(len(n), func(i, j int) { n[i], n[j] = n[j], n[i] })
		r.Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
		got := scheduler.Schedule(n, p, tmpl)
		if !reflect.DeepEqual(got, first) {
			t.Fatalf("run %d with shuffled input:\n got %v\nwant %v", i, got, first)
		}
	}
}

func TestScheduleDoesNotMutateInput(t *testing.T) {
	pods := pending("web", 3)
	nodes := ready("a")
	scheduler.Schedule(nodes, pods, templates(map[string]api.ResourceAmounts{"web": {}}))
	for _, p := range pods {
		if p.Node != "" {
			t.Errorf("Schedule set Node on input pod %s", p.Name)
		}
	}
}
