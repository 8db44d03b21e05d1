package events

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// view builds a state view of nodes, controllers and pods.
func view(index uint64, items ...any) state.View {
	v := state.View{Index: index}
	for _, it := range items {
		switch x := it.(type) {
		case api.Node:
			v.Nodes = append(v.Nodes, x)
		case api.ReplicationController:
			v.RCs = append(v.RCs, x)
		case api.Pod:
			v.Pods = append(v.Pods, x)
		default:
			panic(fmt.Sprintf("view: unexpected %T", it))
		}
	}
	state.SortPods(v.Pods)
	return v
}

func node(name, status string) api.Node { return api.Node{Name: name, Status: status} }

func rc(service string, replicas int) api.ReplicationController {
	return api.ReplicationController{Project: "hello", Service: service, Replicas: replicas}
}

// pod is hello-<service>-<i>, created at index 1, on node.
func pod(service string, i int, node string, st api.PodStatus) api.Pod {
	return api.Pod{
		Name: api.PodName("hello", service, i), Project: "hello", Service: service, Index: i,
		Node: node, Status: st, CreateIndex: 1,
	}
}

func web(i int, node string, st api.PodStatus) api.Pod { return pod("web", i, node, st) }

func pending(msg string) api.PodStatus { return api.PodStatus{State: api.PodPending, Message: msg} }

func running(cid string, restarts int) api.PodStatus {
	return api.PodStatus{State: api.PodRunning, ContainerID: cid, Restarts: restarts}
}

func exited(cid string, code int, msg string) api.PodStatus {
	return api.PodStatus{State: api.PodExited, ContainerID: cid, ExitCode: code, Message: msg}
}

func with(p api.Pod, fn func(*api.Pod)) api.Pod { fn(&p); return p }

func ev(reason, kind, name, node, msg string) api.Event {
	return api.Event{Reason: reason, Kind: kind, Name: name, Node: node, Message: msg}
}

func warn(e api.Event) api.Event { e.Warning = true; return e }

func stamp(evs []api.Event, index uint64, at time.Time) []api.Event {
	out := make([]api.Event, len(evs))
	for i, e := range evs {
		e.Index, e.Time = index, at
		out[i] = e
	}
	return out
}

func render(evs []api.Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "  %d %s warning=%v %s/%s node=%q %q\n", e.Index, e.Reason, e.Warning, e.Kind, e.Name, e.Node, e.Message)
	}
	return b.String()
}

type diffTest struct {
	name      string
	prev, cur []any
	want      []api.Event
}

func diffTests() []diffTest {
	svc := rc("web", 2)
	h1, h2, h3 := node("h1", api.NodeReady), node("h2", api.NodeReady), node("h3", api.NodeReady)
	h3down := node("h3", api.NodeDown)
	return []diffTest{
		{
			name: "nothing changed",
			prev: []any{h1, svc, web(1, "h1", running("c1", 0))},
			cur:  []any{h1, svc, web(1, "h1", running("c1", 0))},
		},
		{
			name: "node joined",
			prev: []any{h1},
			cur:  []any{h1, api.Node{Name: "h2", Address: "10.0.0.2", Status: api.NodeReady}},
			want: []api.Event{ev(api.EventNodeJoined, "node", "h2", "h2", "h2 joined at 10.0.0.2")},
		},
		{
			name: "node down",
			prev: []any{h1},
			cur:  []any{api.Node{Name: "h1", Status: api.NodeDown, Heartbeat: t0.Add(-20 * time.Second)}},
			want: []api.Event{warn(ev(api.EventNodeDown, "node", "h1", "h1", "h1 is down (last heartbeat 20s ago)"))},
		},
		{
			name: "node down without heartbeat",
			prev: []any{h1},
			cur:  []any{node("h1", api.NodeDown)},
			want: []api.Event{warn(ev(api.EventNodeDown, "node", "h1", "h1", "h1 is down"))},
		},
		{
			name: "node ready again",
			prev: []any{node("h1", api.NodeDown)},
			cur:  []any{h1},
			want: []api.Event{ev(api.EventNodeReady, "node", "h1", "h1", "h1 is ready")},
		},
		{
			name: "node ready after leaving",
			prev: []any{node("h1", api.NodeLeft)},
			cur:  []any{h1},
			want: []api.Event{ev(api.EventNodeReady, "node", "h1", "h1", "h1 is ready")},
		},
		{
			name: "engine unreachable",
			prev: []any{h1},
			cur:  []any{api.Node{Name: "h1", Status: api.NodeReady, EngineUnreachable: true}},
			want: []api.Event{warn(ev(api.EventEngineUnreachable, "node", "h1", "h1",
				"the Docker Engine of h1 does not answer: no new pods go there; its pods stay (their containers may still run)"))},
		},
		{
			name: "engine back",
			prev: []any{api.Node{Name: "h1", Status: api.NodeReady, EngineUnreachable: true}},
			cur:  []any{h1},
			want: []api.Event{ev(api.EventEngineReachable, "node", "h1", "h1", "the Docker Engine of h1 answers again")},
		},
		{
			name: "node draining",
			prev: []any{h1},
			cur:  []any{api.Node{Name: "h1", Status: api.NodeReady, Cordoned: true, Draining: true}},
			want: []api.Event{ev(api.EventNodeDraining, "node", "h1", "h1", "draining h1: its pods move to other nodes")},
		},
		{
			name: "node drained",
			prev: []any{api.Node{Name: "h1", Status: api.NodeReady, Cordoned: true, Draining: true}},
			cur:  []any{api.Node{Name: "h1", Status: api.NodeReady, Cordoned: true}},
			want: []api.Event{ev(api.EventNodeDrained, "node", "h1", "h1", "h1 drained; it stays cordoned")},
		},
		{
			name: "drain stopped",
			prev: []any{api.Node{Name: "h1", Status: api.NodeReady, Cordoned: true, Draining: true}},
			cur:  []any{h1},
			want: []api.Event{ev(api.EventNodeDrained, "node", "h1", "h1", "drain of h1 stopped: uncordoned")},
		},
		{
			name: "node left",
			prev: []any{h1, h2},
			cur:  []any{h1, node("h2", api.NodeLeft)},
			want: []api.Event{ev(api.EventNodeLeft, "node", "h2", "h2", "h2 left")},
		},
		{
			name: "node forgotten without leaving",
			prev: []any{h1, node("h2", api.NodeDown)},
			cur:  []any{h1},
			want: []api.Event{ev(api.EventNodeLeft, "node", "h2", "h2", "h2 left")},
		},
		{
			name: "node forgotten after leaving",
			prev: []any{h1, node("h2", api.NodeLeft)},
			cur:  []any{h1},
		},
		{
			name: "service created",
			prev: []any{h1},
			cur:  []any{h1, rc("web", 2), rc("db", 1)},
			want: []api.Event{
				ev(api.EventCreated, "service", "hello/db", "", "created hello/db with 1 replica"),
				ev(api.EventCreated, "service", "hello/web", "", "created hello/web with 2 replicas"),
			},
		},
		{
			name: "service scaled",
			prev: []any{rc("web", 2)},
			cur:  []any{rc("web", 5)},
			want: []api.Event{ev(api.EventScaled, "service", "hello/web", "", "scaled hello/web from 2 to 5")},
		},
		{
			name: "service deleted",
			prev: []any{rc("web", 2)},
			cur:  []any{},
			want: []api.Event{ev(api.EventDeleted, "service", "hello/web", "", "removed hello/web")},
		},
		{
			name: "pod created unscheduled says nothing",
			prev: []any{h1, svc},
			cur:  []any{h1, svc, web(3, "", pending(""))},
		},
		{
			name: "pod scheduled",
			prev: []any{h2, svc, web(3, "", pending(""))},
			cur:  []any{h2, svc, web(3, "h2", pending(""))},
			want: []api.Event{ev(api.EventScheduled, "pod", "hello-web-3", "h2", "placed web-3 on h2")},
		},
		{
			name: "pod first seen with a node",
			prev: []any{h2, svc},
			cur:  []any{h2, svc, web(3, "h2", pending(""))},
			want: []api.Event{ev(api.EventScheduled, "pod", "hello-web-3", "h2", "placed web-3 on h2")},
		},
		{
			name: "pod pending",
			prev: []any{svc, web(3, "", pending(""))},
			cur:  []any{svc, web(3, "", pending("no node has 2 CPUs free"))},
			want: []api.Event{warn(ev(api.EventPending, "pod", "hello-web-3", "", "cannot place web-3: no node has 2 CPUs free"))},
		},
		{
			name: "pod pending for the same reason",
			prev: []any{svc, web(3, "", pending("no node has 2 CPUs free"))},
			cur:  []any{svc, web(3, "", pending("no node has 2 CPUs free"))},
		},
		{
			name: "pod pending for another reason",
			prev: []any{svc, web(3, "", pending("no node has 2 CPUs free"))},
			cur:  []any{svc, web(3, "", pending("no ready node"))},
			want: []api.Event{warn(ev(api.EventPending, "pod", "hello-web-3", "", "cannot place web-3: no ready node"))},
		},
		{
			name: "pod started",
			prev: []any{h1, svc, web(1, "h1", pending(""))},
			cur:  []any{h1, svc, web(1, "h1", running("c1", 0))},
			want: []api.Event{ev(api.EventStarted, "pod", "hello-web-1", "h1", "started web-1")},
		},
		{
			name: "pod scheduled and started in one step",
			prev: []any{h1, svc, web(1, "", pending(""))},
			cur:  []any{h1, svc, web(1, "h1", running("c1", 0))},
			want: []api.Event{
				ev(api.EventScheduled, "pod", "hello-web-1", "h1", "placed web-1 on h1"),
				ev(api.EventStarted, "pod", "hello-web-1", "h1", "started web-1"),
			},
		},
		{
			name: "pod restarted in place",
			prev: []any{h1, svc, web(1, "h1", running("c1", 0))},
			cur:  []any{h1, svc, web(1, "h1", running("c1", 1))},
			want: []api.Event{ev(api.EventStarted, "pod", "hello-web-1", "h1", "restarted web-1 (1 restart)")},
		},
		{
			name: "pod restarted with a new container",
			prev: []any{h1, svc, web(1, "h1", running("c1", 2))},
			cur:  []any{h1, svc, web(1, "h1", running("c2", 3))},
			want: []api.Event{ev(api.EventStarted, "pod", "hello-web-1", "h1", "restarted web-1 (3 restarts)")},
		},
		{
			name: "pod container replaced without a count",
			prev: []any{h1, svc, web(1, "h1", running("c1", 0))},
			cur:  []any{h1, svc, web(1, "h1", running("c2", 0))},
			want: []api.Event{ev(api.EventStarted, "pod", "hello-web-1", "h1", "restarted web-1")},
		},
		{
			name: "pod restarted after exiting",
			prev: []any{h1, svc, web(1, "h1", exited("c1", 1, ""))},
			cur:  []any{h1, svc, web(1, "h1", running("c1", 1))},
			want: []api.Event{ev(api.EventStarted, "pod", "hello-web-1", "h1", "restarted web-1 (1 restart)")},
		},
		{
			name: "pod failed",
			prev: []any{h1, svc, web(1, "h1", pending(""))},
			cur:  []any{h1, svc, web(1, "h1", api.PodStatus{State: api.PodFailed, Message: "image web not found on node h1"})},
			want: []api.Event{warn(ev(api.EventFailed, "pod", "hello-web-1", "h1", "web-1 failed: image web not found on node h1"))},
		},
		{
			name: "pod failed again the same way",
			prev: []any{h1, svc, web(1, "h1", api.PodStatus{State: api.PodFailed, Message: "boom"})},
			cur:  []any{h1, svc, web(1, "h1", api.PodStatus{State: api.PodFailed, Message: "boom"})},
		},
		{
			name: "pod exited with an error",
			prev: []any{h1, svc, web(1, "h1", running("c1", 0))},
			cur:  []any{h1, svc, web(1, "h1", exited("c1", 137, "out of memory"))},
			want: []api.Event{warn(ev(api.EventFailed, "pod", "hello-web-1", "h1", "web-1 exited with code 137: out of memory"))},
		},
		{
			name: "pod exited again after a restart",
			prev: []any{h1, svc, web(1, "h1", exited("c1", 1, ""))},
			cur:  []any{h1, svc, web(1, "h1", api.PodStatus{State: api.PodExited, ContainerID: "c1", ExitCode: 1, Restarts: 1})},
			want: []api.Event{warn(ev(api.EventFailed, "pod", "hello-web-1", "h1", "web-1 exited with code 1"))},
		},
		{
			name: "pod exited",
			prev: []any{h1, svc, web(1, "h1", running("c1", 0))},
			cur:  []any{h1, svc, web(1, "h1", exited("c1", 0, ""))},
			want: []api.Event{ev(api.EventExited, "pod", "hello-web-1", "h1", "web-1 exited with code 0")},
		},
		{
			name: "pod stopped by the user",
			prev: []any{h1, svc, web(1, "h1", running("c1", 0))},
			cur:  []any{h1, svc, with(web(1, "h1", exited("c1", 143, api.PodStoppedMessage)), func(p *api.Pod) { p.Stopped = true })},
			want: []api.Event{ev(api.EventExited, "pod", "hello-web-1", "h1", "web-1 stopped (dev stop)")},
		},
		{
			name: "pod unhealthy",
			prev: []any{h1, svc, web(1, "h1", api.PodStatus{State: api.PodRunning, ContainerID: "c1", Health: api.HealthHealthy})},
			cur:  []any{h1, svc, web(1, "h1", api.PodStatus{State: api.PodRunning, ContainerID: "c1", Health: api.HealthUnhealthy})},
			want: []api.Event{warn(ev(api.EventUnhealthy, "pod", "hello-web-1", "h1", "web-1 is unhealthy"))},
		},
		{
			name: "pod still unhealthy",
			prev: []any{h1, svc, web(1, "h1", api.PodStatus{State: api.PodRunning, ContainerID: "c1", Health: api.HealthUnhealthy})},
			cur:  []any{h1, svc, web(1, "h1", api.PodStatus{State: api.PodRunning, ContainerID: "c1", Health: api.HealthUnhealthy})},
		},
		{
			name: "pod marked deleting says nothing",
			prev: []any{h1, svc, web(1, "h1", running("c1", 0))},
			cur:  []any{h1, svc, with(web(1, "h1", exited("c1", 143, "")), func(p *api.Pod) { p.Deleting = true })},
		},
		{
			name: "pod removed",
			prev: []any{h1, svc, with(web(2, "h1", running("c1", 0)), func(p *api.Pod) { p.Deleting = true })},
			cur:  []any{h1, svc},
			want: []api.Event{ev(api.EventRemoved, "pod", "hello-web-2", "h1", "removed web-2")},
		},
		{
			name: "pod of a removed service removed",
			prev: []any{h3down, svc, web(2, "h3", running("c1", 0))},
			cur:  []any{h3down},
			want: []api.Event{
				ev(api.EventDeleted, "service", "hello/web", "", "removed hello/web"),
				ev(api.EventRemoved, "pod", "hello-web-2", "h3", "removed web-2"),
			},
		},
		{
			name: "pod lost with its node down",
			prev: []any{h1, h3down, svc, web(2, "h3", running("c1", 0))},
			cur:  []any{h1, h3down, svc},
			want: []api.Event{ev(api.EventRemoved, "pod", "hello-web-2", "h3", "web-2 lost with node h3 (down)")},
		},
		{
			name: "pod lost with its node gone",
			prev: []any{h1, h3, svc, web(2, "h3", running("c1", 0))},
			cur:  []any{h1, svc},
			want: []api.Event{
				ev(api.EventNodeLeft, "node", "h3", "h3", "h3 left"),
				ev(api.EventRemoved, "pod", "hello-web-2", "h3", "web-2 lost with node h3 (left)"),
			},
		},
		{
			name: "pod replaced under the same name in one step",
			prev: []any{h1, h3down, svc, web(2, "h3", running("c1", 0))},
			cur:  []any{h1, h3down, svc, with(web(2, "h1", pending("")), func(p *api.Pod) { p.CreateIndex = 7 })},
			want: []api.Event{
				ev(api.EventRemoved, "pod", "hello-web-2", "h3", "web-2 lost with node h3 (down)"),
				ev(api.EventScheduled, "pod", "hello-web-2", "h1", "placed web-2 on h1"),
			},
		},
		{
			name: "order: nodes, services, pods, each by name",
			prev: []any{h1, rc("web", 1), web(1, "", pending(""))},
			cur: []any{h1, h2, rc("web", 2), rc("db", 1),
				web(1, "h2", running("c1", 0)), pod("db", 1, "h1", pending(""))},
			want: []api.Event{
				ev(api.EventNodeJoined, "node", "h2", "h2", "h2 joined"),
				ev(api.EventCreated, "service", "hello/db", "", "created hello/db with 1 replica"),
				ev(api.EventScaled, "service", "hello/web", "", "scaled hello/web from 1 to 2"),
				ev(api.EventScheduled, "pod", "hello-db-1", "h1", "placed db-1 on h1"),
				ev(api.EventScheduled, "pod", "hello-web-1", "h2", "placed web-1 on h2"),
				ev(api.EventStarted, "pod", "hello-web-1", "h2", "started web-1"),
			},
		},
	}
}

func TestDiff(t *testing.T) {
	for _, tt := range diffTests() {
		t.Run(tt.name, func(t *testing.T) {
			got := Diff(view(1, tt.prev...), view(2, tt.cur...), t0)
			want := stamp(tt.want, 2, t0)
			if len(got) == 0 && len(want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Diff:\n%swant:\n%s", render(got), render(want))
			}
		})
	}
}

// TestDiffCoversEveryReason keeps the Diff table honest: every reason but
// Rescheduled (the Tracker's, see tracker_test.go) has a case.
func TestDiffCoversEveryReason(t *testing.T) {
	seen := map[string]bool{}
	for _, tt := range diffTests() {
		for _, e := range tt.want {
			seen[e.Reason] = true
		}
	}
	for _, r := range []string{
		api.EventScheduled, api.EventPending, api.EventStarted, api.EventFailed, api.EventExited,
		api.EventUnhealthy, api.EventRemoved, api.EventScaled, api.EventCreated, api.EventDeleted,
		api.EventNodeJoined, api.EventNodeReady, api.EventNodeDown, api.EventNodeLeft,
		api.EventNodeDraining, api.EventNodeDrained, api.EventEngineUnreachable, api.EventEngineReachable,
	} {
		if !seen[r] {
			t.Errorf("no Diff case wants a %s event", r)
		}
	}
}
