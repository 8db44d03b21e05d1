package controller_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/controller"
	"github.com/devhq/dev/cluster/state"
)

// storeWriter is the fake raft: it encodes and decodes each command as the
// FSM does and applies it to a real store at the next index.
type storeWriter struct {
	mu  sync.Mutex
	st  *state.Store
	idx uint64
	// failFirst makes the first n Apply calls fail, as a lost leader would.
	failFirst int
	calls     int
}

var _ controller.Writer = (*storeWriter)(nil)

func (w *storeWriter) Apply(_ context.Context, cmd state.Command) (uint64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls++
	if w.calls <= w.failFirst {
		return 0, errors.New("not the leader")
	}
	b, err := state.Encode(cmd)
	if err != nil {
		return 0, err
	}
	dec, err := state.Decode(b)
	if err != nil {
		return 0, err
	}
	w.idx++
	return w.idx, w.st.Update(w.idx, func(tx *state.Txn) error { return tx.Apply(dec) })
}

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

type harness struct {
	t  *testing.T
	st *state.Store
	w  *storeWriter
	// now is the time plans are made at (t0 when zero).
	now time.Time
}

func newHarness(t *testing.T) *harness {
	st := state.New()
	return &harness{t: t, st: st, w: &storeWriter{st: st}}
}

// runningHarness is a harness with ready nodes and the project of svcs
// applied, placed and reported running.
func runningHarness(t *testing.T, nodes []string, svcs ...api.ServiceSpec) *harness {
	t.Helper()
	h := newHarness(t)
	for _, n := range nodes {
		h.addNode(n)
	}
	h.apply(project(svcs...))
	h.converge()
	h.agentStep(running)
	return h
}

func (h *harness) apply(cmds ...state.Command) {
	h.t.Helper()
	for _, c := range cmds {
		if _, err := h.w.Apply(context.Background(), c); err != nil {
			h.t.Fatalf("apply %T: %v", c, err)
		}
	}
}

func (h *harness) tryApply(cmd state.Command) error {
	_, err := h.w.Apply(context.Background(), cmd)
	return err
}

func (h *harness) plan() []state.Command {
	now := h.now
	if now.IsZero() {
		now = t0
	}
	return controller.Plan(h.st, now)
}

// converge runs Plan and applies its commands until Plan has nothing left to
// do, and returns the number of rounds it took.
func (h *harness) converge() int {
	h.t.Helper()
	for round := 1; round <= 20; round++ {
		cmds := h.plan()
		if len(cmds) == 0 {
			return round
		}
		h.apply(cmds...)
	}
	h.t.Fatalf("no fixed point after 20 rounds; still planning %s", describe(h.plan()))
	return 0
}

func (h *harness) addNode(name string) {
	h.apply(&state.PutNode{Node: api.Node{Name: name, Status: api.NodeReady, Heartbeat: t0,
		Allocatable: api.ResourceAmounts{NanoCPUs: 4e9, MemoryBytes: 8 << 30}}})
}

func (h *harness) pods() []api.Pod { return h.st.Pods(state.PodFilter{}) }

func (h *harness) pod(name string) api.Pod {
	h.t.Helper()
	p, ok := h.st.Pod(name)
	if !ok {
		h.t.Fatalf("pod %s does not exist; pods: %v", name, names(h.pods()))
	}
	return p
}

// report records a status for a pod from the node it is bound to.
func (h *harness) report(name string, st api.PodStatus) {
	h.t.Helper()
	h.apply(&state.PodStatus{Name: name, Node: h.pod(name).Node, Status: st})
}

func describe(cmds []state.Command) string {
	s := ""
	for _, c := range cmds {
		s += fmt.Sprintf("%T%+v ", c, c)
	}
	return s
}

func names(pods []api.Pod) []string {
	out := []string{}
	for _, p := range pods {
		out = append(out, p.Name)
	}
	return out
}

func live(pods []api.Pod) []string {
	out := []string{}
	for _, p := range pods {
		if !p.Deleting {
			out = append(out, p.Name)
		}
	}
	return out
}

// cmdOf returns the first command of type T in cmds.
func cmdOf[T state.Command](cmds []state.Command) (T, bool) {
	for _, c := range cmds {
		if t, ok := c.(T); ok {
			return t, true
		}
	}
	var zero T
	return zero, false
}

func web(replicas int) api.ServiceSpec {
	return api.ServiceSpec{
		Project: "shop", Name: "web", Image: "web:1", Replicas: replicas,
		Environment: map[string]string{"MODE": "prod"},
		Labels:      map[string]string{"tier": "front"},
	}
}

func project(svcs ...api.ServiceSpec) *state.ApplyProject {
	return &state.ApplyProject{Project: api.Project{Name: "shop", Services: svcs}}
}

func TestPlanCreatesPodsFromTemplate(t *testing.T) {
	h := newHarness(t)
	spec := web(3)
	h.apply(project(spec))

	// First pass: release (no depends_on), but no creation before that is committed.
	cmds := h.plan()
	if rel, ok := cmdOf[*state.ReleaseRC](cmds); !ok || rel.Key != "shop/web" {
		t.Fatalf("first plan = %s, want ReleaseRC shop/web", describe(cmds))
	}
	if _, ok := cmdOf[*state.CreatePods](cmds); ok {
		t.Fatalf("first plan creates pods before the controller is released: %s", describe(cmds))
	}
	h.apply(cmds...)

	cmds = h.plan()
	create, ok := cmdOf[*state.CreatePods](cmds)
	if !ok {
		t.Fatalf("second plan = %s, want CreatePods", describe(cmds))
	}
	if got := names(create.Pods); !reflect.DeepEqual(got, []string{"shop-web-1", "shop-web-2", "shop-web-3"}) {
		t.Errorf("created pods = %v", got)
	}
	for i, p := range create.Pods {
		wantLabels := map[string]string{
			api.LabelProject: "shop", api.LabelService: "web", api.LabelPod: p.Name, "tier": "front",
		}
		if !reflect.DeepEqual(p.Labels, wantLabels) {
			t.Errorf("%s labels = %v, want %v", p.Name, p.Labels, wantLabels)
		}
		if p.Index != i+1 || p.Project != "shop" || p.Service != "web" || p.SpecHash != spec.Hash() {
			t.Errorf("pod %+v, want index %d of shop/web with hash %s", p, i+1, spec.Hash())
		}
		if p.Node != "" || p.Status.State != api.PodPending {
			t.Errorf("%s created with node %q state %q, want unassigned pending", p.Name, p.Node, p.Status.State)
		}
	}

	// Without nodes: a fixed point with every pod explaining why it waits.
	h.apply(cmds...)
	h.converge()
	for _, p := range h.pods() {
		if p.Node != "" || p.Status.Message != "no nodes registered" {
			t.Errorf("%s: node %q message %q, want unassigned with \"no nodes registered\"", p.Name, p.Node, p.Status.Message)
		}
	}
	if cmds := h.plan(); len(cmds) != 0 {
		t.Errorf("plan at the fixed point = %s, want nothing", describe(cmds))
	}
}

func TestPlanAssignsPodsToReadyNodes(t *testing.T) {
	h := newHarness(t)
	h.addNode("n1")
	h.addNode("n2")
	h.apply(project(web(4)))
	h.converge()
	count := map[string]int{}
	for _, p := range h.pods() {
		if p.Labels[api.LabelNode] != p.Node || p.Status.Message != "" {
			t.Errorf("%s: node %q label %q message %q", p.Name, p.Node, p.Labels[api.LabelNode], p.Status.Message)
		}
		count[p.Node]++
	}
	if !reflect.DeepEqual(count, map[string]int{"n1": 2, "n2": 2}) {
		t.Errorf("pods per node = %v, want 2 on each", count)
	}

	// A node joining later gets the pods that were waiting.
	h2 := newHarness(t)
	h2.apply(project(web(2)))
	h2.converge()
	h2.addNode("n1")
	h2.converge()
	for _, p := range h2.pods() {
		if p.Node != "n1" || p.Status.Message != "" {
			t.Errorf("after a node joined, %s: node %q message %q", p.Name, p.Node, p.Status.Message)
		}
	}
}

func TestPlanScaleDownKeepsLowestIndex(t *testing.T) {
	h := newHarness(t)
	h.addNode("n1")
	h.apply(project(web(3)))
	h.converge()
	for _, p := range h.pods() {
		h.report(p.Name, api.PodStatus{State: api.PodRunning})
	}

	h.apply(&state.Scale{Project: "shop", Replicas: map[string]int{"web": 1}})
	cmds := h.plan()
	mark, ok := cmdOf[*state.MarkPodsDeleting](cmds)
	if !ok || !reflect.DeepEqual(mark.Names, []string{"shop-web-2", "shop-web-3"}) {
		t.Fatalf("plan after scale 3->1 = %s, want MarkPodsDeleting [shop-web-2 shop-web-3]", describe(cmds))
	}
	if _, ok := cmdOf[*state.DeletePods](cmds); ok {
		t.Errorf("plan deletes pod records of assigned pods; the agent must remove their containers first")
	}
	h.apply(cmds...)
	h.converge()
	if got := live(h.pods()); !reflect.DeepEqual(got, []string{"shop-web-1"}) {
		t.Errorf("live pods = %v, want [shop-web-1]", got)
	}
	if got := names(h.pods()); len(got) != 3 {
		t.Errorf("pods = %v: deleting pods on a node must stay until the agent forgets them", got)
	}

	// The agent removes the containers; scaling up again reuses the slots.
	h.apply(&state.DeletePods{Names: []string{"shop-web-2", "shop-web-3"}})
	h.converge()
	if got := names(h.pods()); !reflect.DeepEqual(got, []string{"shop-web-1"}) {
		t.Errorf("pods = %v, want [shop-web-1]", got)
	}
	h.apply(&state.Scale{Project: "shop", Replicas: map[string]int{"web": 3}})
	h.converge()
	if got := live(h.pods()); !reflect.DeepEqual(got, []string{"shop-web-1", "shop-web-2", "shop-web-3"}) {
		t.Errorf("live pods after scale 1->3 = %v", got)
	}
}

func TestPlanScaleDownVictims(t *testing.T) {
	running := api.PodStatus{State: api.PodRunning}
	tests := []struct {
		name     string
		assigned []int // pods on n1; others unscheduled
		status   map[int]api.PodStatus
		replicas int
		want     []string
	}{
		{"all ready: highest index", []int{1, 2, 3}, map[int]api.PodStatus{1: running, 2: running, 3: running}, 2, []string{"shop-web-3"}},
		{"not ready first", []int{1, 2, 3}, map[int]api.PodStatus{2: running, 3: running}, 2, []string{"shop-web-1"}},
		{"unhealthy first", []int{1, 2, 3}, map[int]api.PodStatus{1: running, 2: {State: api.PodRunning, Health: api.HealthUnhealthy}, 3: running}, 2, []string{"shop-web-2"}},
		{"unscheduled before not ready", []int{1, 3}, map[int]api.PodStatus{}, 2, []string{"shop-web-2"}},
		{"to zero", []int{1, 2, 3}, map[int]api.PodStatus{1: running}, 0, []string{"shop-web-1", "shop-web-2", "shop-web-3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			spec := web(3)
			h.apply(project(spec), &state.ReleaseRC{Key: "shop/web"})
			var pods []api.Pod
			for i := 1; i <= 3; i++ {
				name := api.PodName("shop", "web", i)
				pods = append(pods, api.Pod{Name: name, Project: "shop", Service: "web", Index: i, SpecHash: spec.Hash(),
					Labels: map[string]string{api.LabelProject: "shop", api.LabelService: "web", api.LabelPod: name}})
			}
			assign := map[string]string{}
			for _, i := range tt.assigned {
				assign[api.PodName("shop", "web", i)] = "n1"
			}
			h.apply(&state.CreatePods{Pods: pods}, &state.AssignPods{Nodes: assign})
			for i, st := range tt.status {
				h.report(api.PodName("shop", "web", i), st)
			}
			h.apply(&state.Scale{Project: "shop", Replicas: map[string]int{"web": tt.replicas}})
			cmds := h.plan()
			mark, ok := cmdOf[*state.MarkPodsDeleting](cmds)
			if !ok || !reflect.DeepEqual(mark.Names, tt.want) {
				t.Errorf("plan = %s, want MarkPodsDeleting %v", describe(cmds), tt.want)
			}
		})
	}
}

func TestPlanForgetsDeletingPodsWithoutNode(t *testing.T) {
	h := newHarness(t)
	h.apply(project(web(3)))
	h.converge() // no nodes: all unassigned
	h.apply(&state.Scale{Project: "shop", Replicas: map[string]int{"web": 1}})

	cmds := h.plan()
	if mark, ok := cmdOf[*state.MarkPodsDeleting](cmds); !ok || !reflect.DeepEqual(mark.Names, []string{"shop-web-2", "shop-web-3"}) {
		t.Fatalf("plan = %s, want MarkPodsDeleting [shop-web-2 shop-web-3]", describe(cmds))
	}
	h.apply(cmds...)
	cmds = h.plan()
	if del, ok := cmdOf[*state.DeletePods](cmds); !ok || !reflect.DeepEqual(del.Names, []string{"shop-web-2", "shop-web-3"}) {
		t.Fatalf("plan = %s, want DeletePods [shop-web-2 shop-web-3]", describe(cmds))
	}
	h.converge()
	if got := names(h.pods()); !reflect.DeepEqual(got, []string{"shop-web-1"}) {
		t.Errorf("pods = %v, want [shop-web-1]", got)
	}
}

func TestPlanStopFirstUpdateReplacesPodsSlotBySlot(t *testing.T) {
	h := newHarness(t)
	h.addNode("n1")
	old := web(3)
	h.apply(project(old))
	h.converge()

	changed := web(3)
	changed.Environment = map[string]string{"MODE": "debug"}
	changed.Update = &api.UpdateConfig{Parallelism: 1, Order: api.OrderStopFirst}
	h.apply(project(changed))
	cmds := h.plan()
	if mark, ok := cmdOf[*state.MarkPodsDeleting](cmds); !ok || !reflect.DeepEqual(mark.Names, []string{"shop-web-3"}) {
		t.Fatalf("plan after spec change = %s, want one old pod (the highest) marked deleting", describe(cmds))
	}
	if _, ok := cmdOf[*state.CreatePods](cmds); ok {
		t.Fatalf("plan creates pods while their names are still taken: %s", describe(cmds))
	}
	h.converge()
	if p := h.pod("shop-web-1"); p.Deleting || p.SpecHash != old.Hash() {
		t.Errorf("shop-web-1 touched before the first batch finished")
	}

	// The agent removed the old container: the new pod takes its name.
	h.apply(&state.DeletePods{Names: []string{"shop-web-3"}})
	h.converge()
	p3 := h.pod("shop-web-3")
	if p3.Deleting || p3.SpecHash != changed.Hash() || p3.Node != "n1" {
		t.Fatalf("shop-web-3 after its slot was freed: deleting=%v hash=%s node=%q, want a new pod on n1", p3.Deleting, p3.SpecHash, p3.Node)
	}
	// The next batch waits until the new pod is ready.
	if cmds := h.plan(); len(cmds) > 0 {
		t.Fatalf("plan while the new pod is not ready = %s, want nothing", describe(cmds))
	}
	h.report("shop-web-3", api.PodStatus{State: api.PodRunning, StartedAt: t0})
	h.converge()
	if p := h.pod("shop-web-2"); !p.Deleting {
		t.Fatalf("shop-web-2 not replaced after shop-web-3 became ready")
	}
}

func TestPlanReplicasOnlyChangeKeepsPods(t *testing.T) {
	h := newHarness(t)
	h.addNode("n1")
	h.apply(project(web(2)))
	h.converge()
	h.apply(project(web(3))) // `dev up` again with deploy.replicas: 3
	cmds := h.plan()
	if _, ok := cmdOf[*state.MarkPodsDeleting](cmds); ok {
		t.Errorf("changing replicas recreates pods: %s", describe(cmds))
	}
	create, ok := cmdOf[*state.CreatePods](cmds)
	if !ok || !reflect.DeepEqual(names(create.Pods), []string{"shop-web-3"}) {
		t.Errorf("plan = %s, want CreatePods [shop-web-3]", describe(cmds))
	}
}

func TestPlanDeletesPodsWithoutController(t *testing.T) {
	h := newHarness(t)
	h.addNode("n1")
	h.apply(project(web(2)))
	h.converge()
	// A CreatePods computed before a DeleteProject committed lands after it.
	h.apply(&state.DeleteProject{Name: "shop"})
	stale := api.Pod{Name: "shop-web-3", Project: "shop", Service: "web", Index: 3,
		Labels: map[string]string{api.LabelProject: "shop", api.LabelService: "web", api.LabelPod: "shop-web-3"}}
	h.apply(&state.CreatePods{Pods: []api.Pod{stale}})

	cmds := h.plan()
	if mark, ok := cmdOf[*state.MarkPodsDeleting](cmds); !ok || !reflect.DeepEqual(mark.Names, []string{"shop-web-3"}) {
		t.Fatalf("plan = %s, want MarkPodsDeleting [shop-web-3]", describe(cmds))
	}
	if assign, ok := cmdOf[*state.AssignPods](cmds); ok && assign.Nodes["shop-web-3"] != "" {
		t.Errorf("plan schedules a pod without controller: %s", describe(cmds))
	}
	h.converge()
	// The unassigned stale pod is forgotten; assigned ones wait for their agent.
	if got := names(h.pods()); !reflect.DeepEqual(got, []string{"shop-web-1", "shop-web-2"}) {
		t.Errorf("pods = %v, want [shop-web-1 shop-web-2] (deleting, on n1)", got)
	}
	if got := live(h.pods()); len(got) != 0 {
		t.Errorf("live pods of a deleted project = %v", got)
	}
}

func TestPlanDependsOnHealthy(t *testing.T) {
	h := newHarness(t)
	h.addNode("n1")
	every := api.Duration(time.Second)
	db := api.ServiceSpec{Project: "shop", Name: "db", Image: "postgres:16", Replicas: 1,
		Healthcheck: &api.Healthcheck{Test: []string{"CMD", "pg_isready"}, Interval: &every}}
	w := web(2)
	w.DependsOn = []api.Dependency{{Service: "db", Condition: api.ConditionHealthy, Required: true}}
	h.apply(project(db, w))
	h.converge()

	webPods := func() []api.Pod {
		return h.st.Pods(state.PodFilter{Selector: api.Selector{api.LabelService: "web"}})
	}
	if p := h.pod("shop-db-1"); p.Node != "n1" {
		t.Fatalf("db pod not assigned: %+v", p)
	}
	if got := webPods(); len(got) != 0 {
		t.Fatalf("web pods created before db is healthy: %v", names(got))
	}
	if rc, _ := h.st.RC("shop/web"); rc.Released {
		t.Fatalf("web released before db is healthy")
	}

	h.report("shop-db-1", api.PodStatus{State: api.PodRunning, Health: api.HealthStarting})
	h.converge()
	if got := webPods(); len(got) != 0 {
		t.Fatalf("web pods created while db is starting: %v", names(got))
	}

	h.report("shop-db-1", api.PodStatus{State: api.PodRunning, Health: api.HealthHealthy})
	h.converge()
	if rc, _ := h.st.RC("shop/web"); !rc.Released {
		t.Errorf("web not released once db is healthy")
	}
	got := webPods()
	if !reflect.DeepEqual(names(got), []string{"shop-web-1", "shop-web-2"}) {
		t.Fatalf("web pods = %v, want shop-web-1, shop-web-2", names(got))
	}
	for _, p := range got {
		if p.Node != "n1" {
			t.Errorf("%s not assigned", p.Name)
		}
	}

	// Ordering applies at start-up only: db turning unhealthy keeps web.
	h.report("shop-db-1", api.PodStatus{State: api.PodRunning, Health: api.HealthUnhealthy})
	h.converge()
	if got := live(webPods()); len(got) != 2 {
		t.Errorf("web pods after db became unhealthy = %v, want both kept", got)
	}
}

func TestDependenciesMet(t *testing.T) {
	running := api.PodStatus{State: api.PodRunning}
	tests := []struct {
		name      string
		condition string
		required  bool
		noDep     bool            // the dependency service does not exist
		replicas  int             // of the dependency
		statuses  []api.PodStatus // one pod per status
		oldHash   bool            // the dependency's pods are of an older template
		want      bool
		wantErr   bool
	}{
		{name: "started: pending", condition: api.ConditionStarted, replicas: 1, statuses: []api.PodStatus{{State: api.PodPending}}},
		{name: "started: running", condition: api.ConditionStarted, replicas: 1, statuses: []api.PodStatus{running}, want: true},
		{name: "started: exited", condition: api.ConditionStarted, replicas: 1, statuses: []api.PodStatus{{State: api.PodExited}}, want: true},
		{name: "started: one of two pods", condition: api.ConditionStarted, replicas: 2, statuses: []api.PodStatus{running}},
		{name: "started: old template pods", condition: api.ConditionStarted, replicas: 1, statuses: []api.PodStatus{running}, oldHash: true},
		{name: "healthy: running without healthcheck", condition: api.ConditionHealthy, replicas: 1, statuses: []api.PodStatus{running}, want: true},
		{name: "healthy: starting", condition: api.ConditionHealthy, replicas: 1, statuses: []api.PodStatus{{State: api.PodRunning, Health: api.HealthStarting}}},
		{name: "healthy: unhealthy", condition: api.ConditionHealthy, replicas: 1, statuses: []api.PodStatus{{State: api.PodRunning, Health: api.HealthUnhealthy}}},
		{name: "healthy: healthy", condition: api.ConditionHealthy, replicas: 2, statuses: []api.PodStatus{{State: api.PodRunning, Health: api.HealthHealthy}, {State: api.PodRunning, Health: api.HealthHealthy}}, want: true},
		{name: "healthy: one of two healthy", condition: api.ConditionHealthy, replicas: 2, statuses: []api.PodStatus{{State: api.PodRunning, Health: api.HealthHealthy}, {State: api.PodRunning, Health: api.HealthStarting}}},
		{name: "healthy: exited", condition: api.ConditionHealthy, replicas: 1, statuses: []api.PodStatus{{State: api.PodExited}}},
		{name: "completed: running", condition: api.ConditionCompletedSuccessfully, replicas: 1, statuses: []api.PodStatus{running}},
		{name: "completed: exit 0", condition: api.ConditionCompletedSuccessfully, replicas: 1, statuses: []api.PodStatus{{State: api.PodExited}}, want: true},
		{name: "completed: exit 1", condition: api.ConditionCompletedSuccessfully, replicas: 1, statuses: []api.PodStatus{{State: api.PodExited, ExitCode: 1}}, wantErr: true},
		{name: "dependency scaled to 0", condition: api.ConditionHealthy, replicas: 0, want: true},
		// "missing, required" cannot be: api.ValidateProject refuses it in the state machine.
		{name: "missing, optional", condition: api.ConditionStarted, noDep: true, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.addNode("n1")
			dep := api.ServiceSpec{Project: "shop", Name: "migrate", Image: "migrate:1", Replicas: tt.replicas, Restart: api.RestartNo}
			w := web(1)
			w.DependsOn = []api.Dependency{{Service: "migrate", Condition: tt.condition, Required: tt.required}}
			if tt.noDep {
				h.apply(project(w))
			} else {
				h.apply(project(dep, w))
			}
			hash := dep.Hash()
			if tt.oldHash {
				hash = "0ld"
			}
			for i, st := range tt.statuses {
				name := api.PodName("shop", "migrate", i+1)
				h.apply(
					&state.CreatePods{Pods: []api.Pod{{Name: name, Project: "shop", Service: "migrate", Index: i + 1, SpecHash: hash,
						Labels: map[string]string{api.LabelProject: "shop", api.LabelService: "migrate", api.LabelPod: name}}}},
					&state.AssignPods{Nodes: map[string]string{name: "n1"}},
				)
				h.report(name, st)
			}
			rc, _ := h.st.RC("shop/web")
			got, err := controller.DependenciesMet(h.st, rc)
			if (err != nil) != tt.wantErr {
				t.Fatalf("DependenciesMet error = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("DependenciesMet = %v, want %v", got, tt.want)
			}
			if tt.wantErr {
				// The controller never releases it, and creates nothing.
				for range 3 {
					h.apply(controller.Plan(h.st, t0)...)
				}
				if rc, _ := h.st.RC("shop/web"); rc.Released {
					t.Errorf("web released although its dependency failed")
				}
				if got := h.st.Pods(state.PodFilter{Selector: api.Selector{api.LabelService: "web"}}); len(got) != 0 {
					t.Errorf("web pods created although its dependency failed: %v", names(got))
				}
			}
		})
	}
}

func TestPlanNodeMonitor(t *testing.T) {
	tests := []struct {
		name      string
		status    string
		heartbeat time.Duration // age at t0; 0: never reported
		opts      []controller.Options
		wantDown  bool
	}{
		{name: "stale, default timeout", status: api.NodeReady, heartbeat: 20 * time.Second, wantDown: true},
		{name: "fresh, default timeout", status: api.NodeReady, heartbeat: 10 * time.Second},
		{name: "stale under a longer timeout", status: api.NodeReady, heartbeat: 20 * time.Second, opts: []controller.Options{{NodeTimeout: time.Minute}}},
		{name: "stale under a shorter timeout", status: api.NodeReady, heartbeat: 2 * time.Second, opts: []controller.Options{{NodeTimeout: time.Second}}, wantDown: true},
		{name: "never reported", status: api.NodeReady},
		{name: "already down", status: api.NodeDown, heartbeat: time.Hour},
		{name: "left", status: api.NodeLeft, heartbeat: time.Hour},
		// Heartbeats live in the leader's memory: the record's is old.
		{name: "record stale, seen by the leader lately", status: api.NodeReady, heartbeat: time.Hour,
			opts: []controller.Options{{LastSeen: func(string) time.Time { return t0.Add(-2 * time.Second) }}}},
		{name: "record stale, not seen by the leader either", status: api.NodeReady, heartbeat: time.Hour,
			opts: []controller.Options{{LastSeen: func(string) time.Time { return t0.Add(-20 * time.Second) }}}, wantDown: true},
		{name: "record stale, the leader has no report", status: api.NodeReady, heartbeat: time.Hour,
			opts: []controller.Options{{LastSeen: func(string) time.Time { return time.Time{} }}}, wantDown: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			n := api.Node{Name: "n1", Status: tt.status, PodSubnet: "10.213.1.0/24"}
			if tt.heartbeat > 0 {
				n.Heartbeat = t0.Add(-tt.heartbeat)
			}
			h.apply(&state.PutNode{Node: n})
			cmds := controller.Plan(h.st, t0, tt.opts...)
			put, ok := cmdOf[*state.PutNode](cmds)
			if ok != tt.wantDown {
				t.Fatalf("plan = %s, want node marked down: %v", describe(cmds), tt.wantDown)
			}
			if !ok {
				return
			}
			if put.Node.Name != "n1" || put.Node.Status != api.NodeDown || put.Node.PodSubnet != "10.213.1.0/24" {
				t.Errorf("PutNode = %+v, want n1 down with its subnet kept", put.Node)
			}
			wantSeen := n.Heartbeat
			if len(tt.opts) > 0 && tt.opts[0].LastSeen != nil && tt.opts[0].LastSeen("n1").After(wantSeen) {
				wantSeen = tt.opts[0].LastSeen("n1")
			}
			if !put.Node.Heartbeat.Equal(wantSeen) {
				t.Errorf("down record's heartbeat %v, want when it was last heard of, %v", put.Node.Heartbeat, wantSeen)
			}
			h.apply(cmds...)
			// A down node takes no new pods.
			h.apply(project(web(1)))
			h.converge()
			if p := h.pod("shop-web-1"); p.Node != "" || p.Status.Message != "0/1 nodes available: 1 node not ready" {
				t.Errorf("pod with the only node down: node %q message %q", p.Node, p.Status.Message)
			}
		})
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// eventually retries cond until it returns nil or the deadline passes.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func runController(t *testing.T, c *controller.Controller) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not return after its context ended")
		}
	})
}

func TestControllerRun(t *testing.T) {
	st := state.New()
	w := &storeWriter{st: st}
	runController(t, controller.New(st, w, controller.Options{Resync: 50 * time.Millisecond}, testLogger(t)))

	ctx := context.Background()
	if _, err := w.Apply(ctx, &state.PutNode{Node: api.Node{Name: "n1", Status: api.NodeReady, Heartbeat: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Apply(ctx, project(web(2))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "pods created and assigned", func() error {
		pods := st.Pods(state.PodFilter{Project: "shop"})
		if len(pods) != 2 {
			return fmt.Errorf("pods = %v", names(pods))
		}
		for _, p := range pods {
			if p.Node != "n1" {
				return fmt.Errorf("%s on node %q", p.Name, p.Node)
			}
		}
		return nil
	})

	if _, err := w.Apply(ctx, &state.Scale{Project: "shop", Replicas: map[string]int{"web": 1}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "scale down marks shop-web-2 deleting", func() error {
		p, ok := st.Pod("shop-web-2")
		if !ok || !p.Deleting {
			return fmt.Errorf("shop-web-2 = %+v, %v", p, ok)
		}
		if p1, _ := st.Pod("shop-web-1"); p1.Deleting {
			return errors.New("shop-web-1 deleting")
		}
		return nil
	})
}

func TestControllerRunRetriesFailedWrites(t *testing.T) {
	st := state.New()
	w := &storeWriter{st: st}
	if _, err := w.Apply(context.Background(), project(web(1))); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	w.failFirst = w.calls + 3
	w.mu.Unlock()
	runController(t, controller.New(st, w, controller.Options{Resync: 50 * time.Millisecond}, testLogger(t)))
	eventually(t, "pod created once writes succeed", func() error {
		if _, ok := st.Pod("shop-web-1"); !ok {
			return errors.New("no pod shop-web-1")
		}
		return nil
	})
}

func TestControllerReconcileUsesNodeTimeout(t *testing.T) {
	st := state.New()
	w := &storeWriter{st: st}
	c := controller.New(st, w, controller.Options{NodeTimeout: time.Second}, testLogger(t))
	if _, err := w.Apply(context.Background(), &state.PutNode{Node: api.Node{Name: "n1", Status: api.NodeReady,
		Heartbeat: time.Now().Add(-5 * time.Second)}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, _ := st.Node("n1"); n.Status != api.NodeDown {
		t.Errorf("node with a 5s old heartbeat under NodeTimeout 1s: status %q, want %q", n.Status, api.NodeDown)
	}
}

func TestPlanDoesNotAssignToNodeMarkedDownInSamePass(t *testing.T) {
	h := newHarness(t)
	h.apply(&state.PutNode{Node: api.Node{Name: "n1", Status: api.NodeReady, Heartbeat: t0.Add(-time.Minute)}})
	h.apply(&state.PutNode{Node: api.Node{Name: "n2", Status: api.NodeReady, Heartbeat: t0}})
	spec := web(1)
	h.apply(project(spec), &state.ReleaseRC{Key: "shop/web"}, &state.CreatePods{Pods: []api.Pod{{
		Name: "shop-web-1", Project: "shop", Service: "web", Index: 1, SpecHash: spec.Hash(),
		Labels: map[string]string{api.LabelProject: "shop", api.LabelService: "web", api.LabelPod: "shop-web-1"},
	}}})

	cmds := h.plan()
	if put, ok := cmdOf[*state.PutNode](cmds); !ok || put.Node.Name != "n1" || put.Node.Status != api.NodeDown {
		t.Fatalf("plan = %s, want n1 marked down", describe(cmds))
	}
	h.apply(cmds...)
	if p := h.pod("shop-web-1"); p.Node != "n2" {
		t.Errorf("shop-web-1 bound to %q in the pass that marked n1 down, want n2", p.Node)
	}
}

func TestNextDeadline(t *testing.T) {
	grace, timeout := 10*time.Second, 15*time.Second
	opts := controller.Options{NodeGrace: grace, NodeTimeout: timeout}
	tests := []struct {
		name  string
		nodes []api.Node
		want  time.Time // zero: none
	}{
		{name: "no nodes"},
		{name: "a ready node: its heartbeat timeout",
			nodes: []api.Node{{Name: "a", Status: api.NodeReady, Heartbeat: t0.Add(-2 * time.Second)}},
			want:  t0.Add(13*time.Second + time.Millisecond)},
		{name: "a down node: the end of its grace, before another's heartbeat timeout",
			nodes: []api.Node{
				{Name: "a", Status: api.NodeReady, Heartbeat: t0},
				{Name: "b", Status: api.NodeDown, DownSince: t0.Add(-4 * time.Second)},
			},
			want: t0.Add(6*time.Second + time.Millisecond)},
		{name: "a grace already over is not pending",
			nodes: []api.Node{{Name: "b", Status: api.NodeDown, DownSince: t0.Add(-time.Minute)}}},
		{name: "never reported, left: nothing pending",
			nodes: []api.Node{{Name: "a", Status: api.NodeReady}, {Name: "b", Status: api.NodeLeft, Heartbeat: t0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			for _, n := range tt.nodes {
				h.apply(&state.PutNode{Node: n})
			}
			if got := controller.NextDeadline(h.st, t0, opts); !got.Equal(tt.want) {
				t.Fatalf("NextDeadline = %v, want %v", got, tt.want)
			}
		})
	}
}

// The deadline NextDeadline names is the moment Plan recreates a lost
// node's pods elsewhere, not a moment later.
func TestNextDeadlineIsWhenPlanActs(t *testing.T) {
	h := newHarness(t)
	h.addNode("a")
	h.addNode("b")
	h.apply(project(web(2)))
	h.converge()
	var onB string
	for _, p := range h.pods() {
		if p.Node == "b" {
			onB = p.Name
		}
	}
	if onB == "" {
		t.Fatalf("no pod on b: %v", h.pods())
	}
	h.apply(&state.PutNode{Node: api.Node{Name: "b", Status: api.NodeDown, DownSince: t0, Heartbeat: t0}})
	opts := controller.Options{NodeGrace: 10 * time.Second, NodeTimeout: time.Hour}
	at := controller.NextDeadline(h.st, t0, opts)
	if want := t0.Add(10*time.Second + time.Millisecond); !at.Equal(want) {
		t.Fatalf("NextDeadline = %v, want %v", at, want)
	}
	if del, ok := cmdOf[*state.DeletePods](controller.Plan(h.st, at.Add(-time.Millisecond), opts)); ok {
		t.Fatalf("pods forgotten before the grace ran out: %v", del.Names)
	}
	del, ok := cmdOf[*state.DeletePods](controller.Plan(h.st, at, opts))
	if !ok || len(del.Names) != 1 || del.Names[0] != onB {
		t.Fatalf("at the deadline, DeletePods = %v (ok %v), want [%s]", del, ok, onB)
	}
}

// Run wakes at a node's deadline by itself: with no state change and no
// resync tick, a down node's pods are recreated once its grace is over.
func TestRunWakesAtNodeDeadline(t *testing.T) {
	h := newHarness(t)
	now := time.Now()
	h.apply(&state.PutNode{Node: api.Node{Name: "a", Status: api.NodeReady, Heartbeat: now.Add(time.Hour),
		Allocatable: api.ResourceAmounts{NanoCPUs: 4e9, MemoryBytes: 8 << 30}}})
	h.apply(&state.PutNode{Node: api.Node{Name: "b", Status: api.NodeReady, Heartbeat: now.Add(time.Hour),
		Allocatable: api.ResourceAmounts{NanoCPUs: 4e9, MemoryBytes: 8 << 30}}})
	h.apply(project(web(2)))
	h.now = now
	h.converge()
	grace := 300 * time.Millisecond
	h.apply(&state.PutNode{Node: api.Node{Name: "b", Status: api.NodeDown, DownSince: time.Now(), Heartbeat: now.Add(time.Hour)}})
	c := controller.New(h.st, h.w, controller.Options{Resync: time.Hour, NodeGrace: grace, NodeTimeout: 2 * time.Hour}, testLogger(t))
	start := time.Now()
	runController(t, c)
	eventually(t, "both pods on a after b's grace", func() error {
		for _, p := range h.pods() {
			if p.Node != "a" {
				return fmt.Errorf("%s on %q", p.Name, p.Node)
			}
		}
		if n := len(h.pods()); n != 2 {
			return fmt.Errorf("%d pods", n)
		}
		return nil
	})
	if took := time.Since(start); took < grace-50*time.Millisecond {
		t.Errorf("pods moved after %s, before the %s grace", took, grace)
	}
}

// TestPlanNoStart: `dev up --no-start` (compose's): every service's pods
// are created stopped, a dependent's too without waiting for its
// depends_on; `dev start` of a pod clears it for the service, and the next
// plain apply starts them all.
func TestPlanNoStart(t *testing.T) {
	h := newHarness(t)
	h.addNode("n1")
	every := api.Duration(time.Second)
	db := api.ServiceSpec{Project: "shop", Name: "db", Image: "postgres:16", Replicas: 1,
		Healthcheck: &api.Healthcheck{Test: []string{"CMD", "pg_isready"}, Interval: &every}}
	w := web(2)
	w.DependsOn = []api.Dependency{{Service: "db", Condition: api.ConditionHealthy, Required: true}}
	apply := project(db, w)
	apply.Project.NoStart = true
	h.apply(apply)
	h.converge()
	for _, name := range []string{"shop-db-1", "shop-web-1", "shop-web-2"} {
		if p := h.pod(name); !p.Stopped || p.Node != "n1" {
			t.Fatalf("%s after up --no-start: stopped %v on %q, want stopped and placed", name, p.Stopped, p.Node)
		}
	}
	h.apply(&state.SetPodStopped{Name: "shop-db-1", Stopped: false})
	if rc, _ := h.st.RC("shop/db"); rc.CreateStopped {
		t.Errorf("db still creates stopped pods after dev start of one")
	}
	if rc, _ := h.st.RC("shop/web"); !rc.CreateStopped {
		t.Errorf("web no longer creates stopped pods after dev start of a db pod")
	}
	h.apply(project(db, w))
	for _, name := range []string{"shop-web-1", "shop-web-2"} {
		if p := h.pod(name); p.Stopped {
			t.Errorf("%s still stopped after a plain dev up", name)
		}
	}
	if rc, _ := h.st.RC("shop/web"); rc.CreateStopped {
		t.Errorf("web still creates stopped pods after a plain dev up")
	}
}
