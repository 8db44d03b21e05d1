package state_test

import (
	"bytes"
	"context"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// writer applies commands the way the raft FSM does: encoded, decoded, then
// applied in one Update at the next index.
type writer struct {
	t   *testing.T
	st  *state.Store
	idx uint64
}

func newWriter(t *testing.T) *writer { return &writer{t: t, st: state.New()} }

// apply applies cmd and returns the error the FSM would hand back.
func (w *writer) apply(cmd state.Command) error {
	w.t.Helper()
	b, err := state.Encode(cmd)
	if err != nil {
		w.t.Fatalf("Encode(%T): %v", cmd, err)
	}
	dec, err := state.Decode(b)
	if err != nil {
		w.t.Fatalf("Decode(%T): %v", cmd, err)
	}
	w.idx++
	return w.st.Update(w.idx, func(tx *state.Txn) error { return tx.Apply(dec) })
}

func (w *writer) must(cmds ...state.Command) {
	w.t.Helper()
	for _, c := range cmds {
		if err := w.apply(c); err != nil {
			w.t.Fatalf("apply %T: %v", c, err)
		}
	}
}

func svc(project, name string, replicas int) api.ServiceSpec {
	return api.ServiceSpec{Project: project, Name: name, Image: name + ":latest", Replicas: replicas}
}

func pod(project, service string, i int, hash string) api.Pod {
	name := api.PodName(project, service, i)
	return api.Pod{
		Name: name, Project: project, Service: service, Index: i, SpecHash: hash,
		Labels: map[string]string{api.LabelProject: project, api.LabelService: service, api.LabelPod: name},
		Status: api.PodStatus{State: api.PodPending},
	}
}

func podNames(pods []api.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	return out
}

func TestCommandTypeValuesArePersisted(t *testing.T) {
	// These bytes are in every raft log on disk: they must never change.
	tests := []struct {
		cmd  state.Command
		want byte
	}{
		{state.ApplyProject{}, 1},
		{state.DeleteProject{}, 2},
		{state.Scale{}, 3},
		{state.CreatePods{}, 4},
		{state.AssignPods{}, 5},
		{state.MarkPodsDeleting{}, 6},
		{state.DeletePods{}, 7},
		{state.PodStatus{}, 8},
		{state.PutNode{}, 9},
		{state.ReleaseRC{}, 10},
		{state.SetCluster{}, 11},
		{state.DeleteNode{}, 12},
		{state.RollbackRC{}, 13},
		{state.SetUpdate{}, 14},
		{state.SetPodStopped{}, 15},
		{state.Revoke{}, 16},
		{state.Admit{}, 17},
		{state.RotateJoinSecret{}, 18},
		{state.CordonNode{}, 19},
		{state.LabelNode{}, 20},
		{state.SealClusterSecrets{}, 21},
		{state.RotateGossipKey{}, 22},
		{state.SetLocalCA{}, 23},
		{state.StartCARotation{}, 24},
		{state.MoveToCA{}, 25},
		{state.FinishCARotation{}, 26},
		{state.RemoveStoppedPods{}, 27},
		{state.FinishDrain{}, 28},
		{state.PutACME{}, 29},
		{state.DeleteACME{}, 30},
		{state.LockACME{}, 31},
		{state.UnlockACME{}, 32},
		{state.MovePod{}, 33},
	}
	for _, tt := range tests {
		b, err := state.Encode(tt.cmd)
		if err != nil {
			t.Fatalf("Encode(%T): %v", tt.cmd, err)
		}
		if b[0] != tt.want {
			t.Errorf("%T encodes with type byte %d, want %d", tt.cmd, b[0], tt.want)
		}
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	grace := api.Duration(3 * time.Second)
	when := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	full := api.ServiceSpec{
		Project: "shop", Name: "web", Image: "web:1", ImageID: "sha256:0123",
		Build:       &api.BuildSpec{Context: "./web", Args: map[string]string{"V": "1"}},
		Command:     []string{"serve", "--port", "80"},
		Environment: map[string]string{"MODE": "prod"},
		Ports:       []api.PortSpec{{Name: "http", Target: 80, Published: 8080, Protocol: "tcp"}},
		Volumes:     []api.VolumeMount{{Type: api.MountVolume, Source: "data", Target: "/data"}},
		Secrets:     []api.SecretMount{{Name: "token", Target: "/run/secrets/token", Content: []byte("s3cr3t"), Mode: 0o400}},
		Healthcheck: &api.Healthcheck{Test: []string{"CMD", "true"}, Interval: &grace, Retries: 2},
		Restart:     api.RestartOnFailure,
		Replicas:    3,
		Resources:   api.Resources{Reservations: api.ResourceAmounts{NanoCPUs: 5e8, MemoryBytes: 64 << 20}},
		Labels:      map[string]string{"tier": "front"},
		DependsOn:   []api.Dependency{{Service: "db", Condition: api.ConditionHealthy, Required: true}},
		StopSignal:  "SIGINT", StopGracePeriod: &grace,
	}
	p := pod("shop", "web", 1, full.Hash())
	tests := []state.Command{
		&state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{full}, Volumes: []string{"data"}}},
		&state.DeleteProject{Name: "shop"},
		&state.Scale{Project: "shop", Replicas: map[string]int{"web": 5, "db": 0}},
		&state.CreatePods{Pods: []api.Pod{p}},
		&state.AssignPods{Nodes: map[string]string{"shop-web-1": "n1"}, Unschedulable: map[string]string{"shop-web-2": "no nodes registered"}},
		&state.MarkPodsDeleting{Names: []string{"shop-web-1", "shop-web-2"}},
		&state.DeletePods{Names: []string{"shop-web-1"}},
		&state.PodStatus{Name: "shop-web-1", Node: "n1", Status: api.PodStatus{
			State: api.PodExited, Health: api.HealthUnhealthy, IP: "10.213.1.2", ContainerID: "abc",
			ExitCode: 3, Restarts: 2, Message: "out of memory", StartedAt: when,
		}},
		&state.PutNode{Node: api.Node{
			Name: "n1", Address: "10.0.0.1", APIAddr: "10.0.0.1:7948", Status: api.NodeReady,
			PodSubnet: "10.213.1.0/24", Labels: map[string]string{"zone": "a"},
			Allocatable: api.ResourceAmounts{NanoCPUs: 4e9, MemoryBytes: 8 << 30}, Heartbeat: when,
		}},
		&state.ReleaseRC{Key: "shop/web"},
		&state.CordonNode{Name: "n1", Cordoned: true},
		&state.CordonNode{Name: "n1", Cordoned: true, Drain: true},
		&state.FinishDrain{Name: "n1"},
		&state.MovePod{Name: "shop-web-1", Node: "n1", Moving: true},
		&state.LabelNode{Name: "n1", Labels: map[string]string{"disk": "ssd", "zone": ""}},
		&state.SealClusterSecrets{Sealed: []byte{1, 2, 3}, Prev: []byte{4}},
		&state.RotateGossipKey{Key: bytes.Repeat([]byte{7}, 32), Gen: 3},
		&state.SetLocalCA{CertPEM: []byte("cert"), Sealed: []byte{9}},
		&state.StartCARotation{Rotation: state.CARotation{ID: "sha256:ab", CertPEM: []byte("new"), CrossPEM: []byte("cross"), Sealed: []byte{7}}, Label: "0123456789abcdef"},
		&state.MoveToCA{ID: "sha256:ab", Node: "n1"},
		&state.FinishCARotation{ID: "sha256:ab", Sealed: []byte{8}, Prev: []byte{7}},
		&state.RemoveStoppedPods{Names: []string{"shop-web-1", "shop-web-2"}},
		&state.PutACME{Key: "certificates/ca/a.example/a.example.key", Entry: state.ACMEEntry{Value: []byte{1}, Sealed: true, Modified: time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)}},
		&state.DeleteACME{Key: "certificates/ca/a.example"},
		&state.LockACME{Name: "issue_cert_a.example", Owner: "n1", At: time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC), Until: time.Date(2026, 12, 7, 0, 5, 0, 0, time.UTC)},
		&state.UnlockACME{Name: "issue_cert_a.example", Owner: "n1"},
		&state.Admit{Name: "n2", At: when, Manager: true},
		&state.SetCluster{Cluster: state.ClusterInfo{ID: "c1", CACertPEM: []byte("cert"), GossipKey: []byte("k"), Sealed: []byte{4}}, Founder: "n1"},
	}
	seen := map[state.CommandType]bool{}
	for _, cmd := range tests {
		t.Run(strings.TrimPrefix(reflect.TypeOf(cmd).String(), "*state."), func(t *testing.T) {
			b, err := state.Encode(cmd)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			got, err := state.Decode(b)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got.Type() != cmd.Type() {
				t.Errorf("Type() = %d, want %d", got.Type(), cmd.Type())
			}
			if !reflect.DeepEqual(got, cmd) {
				t.Errorf("round trip:\n got %#v\nwant %#v", got, cmd)
			}
		})
		seen[cmd.Type()] = true
	}
	for ct := state.CmdApplyProject; ct <= state.CmdReleaseRC; ct++ {
		if !seen[ct] {
			t.Errorf("command type %d has no round-trip case", ct)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"type zero", []byte{0, '{', '}'}},
		{"unknown type", []byte{200, '{', '}'}},
		{"bad json", append([]byte{byte(state.CmdScale)}, "{not json"...)},
		{"type byte only", []byte{byte(state.CmdDeletePods)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := state.Decode(tt.in)
			if err == nil {
				t.Errorf("Decode(%q) = %#v, want error", tt.in, got)
			}
		})
	}
}

func TestApplyUnknownCommand(t *testing.T) {
	st := state.New()
	// A value (not pointer) command never comes out of Decode: Apply refuses it.
	err := st.Update(1, func(tx *state.Txn) error { return tx.Apply(state.DeletePods{Names: []string{"x"}}) })
	if err == nil {
		t.Errorf("Apply(value command) = nil, want error")
	}
}

func TestApplyProjectCreatesControllers(t *testing.T) {
	w := newWriter(t)
	web := svc("shop", "web", 2)
	w.must(&state.ApplyProject{Project: api.Project{
		Name: "shop", Services: []api.ServiceSpec{web, svc("shop", "db", 1)}, Volumes: []string{"z", "a"},
	}})
	rcs := w.st.RCs("shop")
	if len(rcs) != 2 || rcs[0].Key() != "shop/db" || rcs[1].Key() != "shop/web" {
		t.Fatalf("RCs = %+v, want shop/db and shop/web", rcs)
	}
	if rcs[1].Replicas != 2 || rcs[1].SpecHash != web.Hash() || rcs[1].Template.Image != "web:latest" {
		t.Errorf("web RC = %+v, want 2 replicas, hash %s", rcs[1], web.Hash())
	}
	if rcs[1].Released {
		t.Errorf("new RC is released before its dependencies were checked")
	}
	pr, ok := w.st.Project("shop")
	if !ok || !reflect.DeepEqual(pr.Volumes, []string{"a", "z"}) {
		t.Errorf("project record = %+v, %v; want volumes [a z]", pr, ok)
	}

	// Re-applying keeps identity (create index) and the release.
	created := rcs[1].CreateIndex
	w.must(&state.ReleaseRC{Key: "shop/web"})
	web.Replicas = 4
	w.must(&state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{web, svc("shop", "db", 1)}}})
	rc, _ := w.st.RC("shop/web")
	if rc.CreateIndex != created || rc.ModifyIndex != w.idx {
		t.Errorf("re-applied RC indexes create=%d modify=%d, want create=%d modify=%d", rc.CreateIndex, rc.ModifyIndex, created, w.idx)
	}
	if !rc.Released || rc.Replicas != 4 {
		t.Errorf("re-applied RC released=%v replicas=%d, want released, 4", rc.Released, rc.Replicas)
	}
}

func TestApplyProjectRemovesService(t *testing.T) {
	w := newWriter(t)
	web, db := svc("shop", "web", 2), svc("shop", "db", 1)
	w.must(
		&state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{web, db}}},
		&state.CreatePods{Pods: []api.Pod{pod("shop", "web", 1, web.Hash()), pod("shop", "web", 2, web.Hash()), pod("shop", "db", 1, db.Hash())}},
		&state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{db}}},
	)
	if _, ok := w.st.RC("shop/web"); ok {
		t.Errorf("RC shop/web still exists after the service was removed")
	}
	if _, ok := w.st.RC("shop/db"); !ok {
		t.Errorf("RC shop/db was removed")
	}
	for _, p := range w.st.Pods(state.PodFilter{Project: "shop"}) {
		if want := p.Service == "web"; p.Deleting != want {
			t.Errorf("pod %s deleting = %v, want %v", p.Name, p.Deleting, want)
		}
	}
}

func TestDeleteProject(t *testing.T) {
	w := newWriter(t)
	web := svc("shop", "web", 1)
	other := svc("blog", "web", 1)
	w.must(
		&state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{web}}},
		&state.ApplyProject{Project: api.Project{Name: "blog", Services: []api.ServiceSpec{other}}},
		&state.CreatePods{Pods: []api.Pod{pod("shop", "web", 1, web.Hash()), pod("blog", "web", 1, other.Hash())}},
		&state.DeleteProject{Name: "shop"},
	)
	if _, ok := w.st.Project("shop"); ok {
		t.Errorf("project shop still recorded")
	}
	if rcs := w.st.RCs("shop"); len(rcs) != 0 {
		t.Errorf("RCs of shop = %v, want none", rcs)
	}
	if p, _ := w.st.Pod("shop-web-1"); !p.Deleting {
		t.Errorf("pod shop-web-1 not marked deleting")
	}
	if p, _ := w.st.Pod("blog-web-1"); p.Deleting {
		t.Errorf("pod of another project blog-web-1 marked deleting")
	}
	if got := w.st.Projects(); len(got) != 1 || got[0].Name != "blog" {
		t.Errorf("Projects() = %+v, want only blog", got)
	}
	if len(w.st.RCs("")) != 1 {
		t.Errorf("RCs(\"\") = %v, want blog's only", w.st.RCs(""))
	}
}

func TestScale(t *testing.T) {
	tests := []struct {
		name     string
		replicas map[string]int
		wantErr  bool
		want     map[string]int // replicas per service afterwards
	}{
		{"scale one", map[string]int{"web": 5}, false, map[string]int{"web": 5, "db": 1}},
		{"scale both", map[string]int{"web": 0, "db": 3}, false, map[string]int{"web": 0, "db": 3}},
		{"unknown service", map[string]int{"cache": 2}, true, map[string]int{"web": 2, "db": 1}},
		{"unknown service with a valid one", map[string]int{"web": 4, "cache": 2}, true, map[string]int{"web": 2, "db": 1}},
		{"negative", map[string]int{"web": -1}, true, map[string]int{"web": 2, "db": 1}},
		{"negative with a valid one", map[string]int{"db": 3, "web": -1}, true, map[string]int{"web": 2, "db": 1}},
		// cron has a fixed container_name: the same rule as the loader and the API.
		{"fixed container name, one", map[string]int{"cron": 1, "web": 3}, false, map[string]int{"web": 3, "cron": 1}},
		{"fixed container name, two", map[string]int{"cron": 2, "web": 3}, true, map[string]int{"web": 2, "cron": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWriter(t)
			web, db, cron := svc("shop", "web", 2), svc("shop", "db", 1), svc("shop", "cron", 1)
			cron.ContainerName = "shop-cron"
			w.must(&state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{web, db, cron}}})
			err := w.apply(&state.Scale{Project: "shop", Replicas: tt.replicas})
			if (err != nil) != tt.wantErr {
				t.Fatalf("Scale error = %v, wantErr %v", err, tt.wantErr)
			}
			for name, want := range tt.want {
				rc, _ := w.st.RC(api.RCKey("shop", name))
				if rc.Replicas != want {
					t.Errorf("%s replicas = %d, want %d", name, rc.Replicas, want)
				}
				if rc.SpecHash != rc.Template.Hash() {
					t.Errorf("%s spec hash %s no longer matches its template %s", name, rc.SpecHash, rc.Template.Hash())
				}
			}
		})
	}
}

func TestScaleOtherProject(t *testing.T) {
	w := newWriter(t)
	w.must(&state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{svc("shop", "web", 1)}}})
	if err := w.apply(&state.Scale{Project: "blog", Replicas: map[string]int{"web": 3}}); err == nil {
		t.Errorf("Scale of a service of another project = nil, want error")
	}
}

func TestCreateAssignDeletePods(t *testing.T) {
	w := newWriter(t)
	web := svc("shop", "web", 3)
	w.must(
		&state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{web}}},
		&state.CreatePods{Pods: []api.Pod{pod("shop", "web", 1, web.Hash()), pod("shop", "web", 2, web.Hash()), pod("shop", "web", 3, web.Hash())}},
		&state.AssignPods{Unschedulable: map[string]string{"shop-web-1": "no nodes registered"}},
	)
	if p, _ := w.st.Pod("shop-web-1"); p.Status.Message != "no nodes registered" {
		t.Errorf("unschedulable message = %q", p.Status.Message)
	}

	w.must(
		&state.MarkPodsDeleting{Names: []string{"shop-web-3"}},
		&state.AssignPods{Nodes: map[string]string{"shop-web-1": "n1", "shop-web-2": "n2", "shop-web-3": "n1"}},
	)
	p1, _ := w.st.Pod("shop-web-1")
	if p1.Node != "n1" || p1.Labels[api.LabelNode] != "n1" || p1.Status.Message != "" {
		t.Errorf("assigned pod = node %q label %q message %q; want n1, n1, cleared", p1.Node, p1.Labels[api.LabelNode], p1.Status.Message)
	}
	if p3, _ := w.st.Pod("shop-web-3"); p3.Node != "" {
		t.Errorf("deleting pod was assigned to %q", p3.Node)
	}

	// An assigned pod is never re-bound, and gets no unschedulable message.
	w.must(&state.AssignPods{Nodes: map[string]string{"shop-web-1": "n2"}, Unschedulable: map[string]string{"shop-web-2": "0/1 nodes available"}})
	if p, _ := w.st.Pod("shop-web-1"); p.Node != "n1" {
		t.Errorf("assigned pod moved to %q", p.Node)
	}
	if p, _ := w.st.Pod("shop-web-2"); p.Status.Message != "" {
		t.Errorf("assigned pod got message %q", p.Status.Message)
	}

	// A retried create keeps the existing pod (and its status).
	w.must(&state.PodStatus{Name: "shop-web-1", Node: "n1", Status: api.PodStatus{State: api.PodRunning, IP: "10.213.1.5"}})
	w.must(&state.CreatePods{Pods: []api.Pod{pod("shop", "web", 1, web.Hash())}})
	if p, _ := w.st.Pod("shop-web-1"); p.Node != "n1" || p.Status.State != api.PodRunning {
		t.Errorf("retried create overwrote the pod: %+v", p)
	}

	w.must(&state.DeletePods{Names: []string{"shop-web-3", "shop-web-9"}})
	if got := podNames(w.st.Pods(state.PodFilter{})); !reflect.DeepEqual(got, []string{"shop-web-1", "shop-web-2"}) {
		t.Errorf("pods after delete = %v", got)
	}
	if got := podNames(w.st.Pods(state.PodFilter{Node: "n2"})); !reflect.DeepEqual(got, []string{"shop-web-2"}) {
		t.Errorf("pods on n2 = %v, want [shop-web-2]", got)
	}
	sel := api.Selector{api.LabelNode: "n1"}
	if got := podNames(w.st.Pods(state.PodFilter{Selector: sel})); !reflect.DeepEqual(got, []string{"shop-web-1"}) {
		t.Errorf("pods matching %v = %v, want [shop-web-1]", sel, got)
	}
}

func TestPodStatus(t *testing.T) {
	running := api.PodStatus{State: api.PodRunning, IP: "10.213.1.2", ContainerID: "c1"}
	tests := []struct {
		name string
		cmd  state.PodStatus
		want string // pod state afterwards
	}{
		{"from the bound node", state.PodStatus{Name: "shop-web-1", Node: "n1", Status: running}, api.PodRunning},
		{"from another node", state.PodStatus{Name: "shop-web-1", Node: "n2", Status: running}, api.PodPending},
		{"from no node", state.PodStatus{Name: "shop-web-1", Status: running}, api.PodPending},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWriter(t)
			web := svc("shop", "web", 1)
			w.must(
				&state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{web}}},
				&state.CreatePods{Pods: []api.Pod{pod("shop", "web", 1, web.Hash())}},
				&state.AssignPods{Nodes: map[string]string{"shop-web-1": "n1"}},
			)
			w.must(&tt.cmd)
			p, _ := w.st.Pod("shop-web-1")
			if p.Status.State != tt.want {
				t.Errorf("pod state = %q, want %q", p.Status.State, tt.want)
			}
		})
	}

	// A status for a pod that is gone does not resurrect it.
	w := newWriter(t)
	w.must(&state.PodStatus{Name: "shop-web-7", Node: "n1", Status: running})
	if _, ok := w.st.Pod("shop-web-7"); ok {
		t.Errorf("status for an unknown pod created it")
	}
}

func TestReleaseRC(t *testing.T) {
	w := newWriter(t)
	w.must(&state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{svc("shop", "web", 1)}}})
	w.must(&state.ReleaseRC{Key: "shop/web"}, &state.ReleaseRC{Key: "shop/nope"})
	rc, _ := w.st.RC("shop/web")
	if !rc.Released {
		t.Errorf("RC not released")
	}
	if _, ok := w.st.RC("shop/nope"); ok {
		t.Errorf("releasing an unknown RC created it")
	}
}

func TestPutNodeKeepsCreateIndex(t *testing.T) {
	w := newWriter(t)
	w.must(&state.PutNode{Node: api.Node{Name: "n1", Status: api.NodeReady}})
	w.must(&state.PutNode{Node: api.Node{Name: "n1", Status: api.NodeDown}})
	n, ok := w.st.Node("n1")
	if !ok || n.Status != api.NodeDown || n.CreateIndex != 1 || n.ModifyIndex != 2 {
		t.Errorf("node = %+v, want down, create 1, modify 2", n)
	}
}

func TestReadsReturnCopies(t *testing.T) {
	w := newWriter(t)
	web := svc("shop", "web", 1)
	w.must(
		&state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{web}}},
		&state.CreatePods{Pods: []api.Pod{pod("shop", "web", 1, web.Hash())}},
	)
	p, _ := w.st.Pod("shop-web-1")
	p.Labels[api.LabelService] = "hacked"
	p.Deleting = true
	for _, q := range w.st.Pods(state.PodFilter{}) {
		q.Labels["extra"] = "x"
	}
	again, _ := w.st.Pod("shop-web-1")
	if again.Labels[api.LabelService] != "web" || again.Deleting || again.Labels["extra"] != "" {
		t.Errorf("modifying a read pod changed the store: %+v", again)
	}
}

func TestReadsReturnDeepCopiesOfMaps(t *testing.T) {
	w := newWriter(t)
	web := svc("shop", "web", 1)
	web.Environment = map[string]string{"MODE": "prod"}
	w.must(
		&state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{web}}},
		&state.PutNode{Node: api.Node{Name: "n1", Status: api.NodeReady, Labels: map[string]string{"zone": "a"}}},
	)
	rc, _ := w.st.RC("shop/web")
	rc.Template.Environment["MODE"] = "hacked"
	n, _ := w.st.Node("n1")
	n.Labels["zone"] = "hacked"
	rc2, _ := w.st.RC("shop/web")
	n2, _ := w.st.Node("n1")
	if rc2.Template.Environment["MODE"] != "prod" {
		t.Errorf("modifying a read RC changed the store's template: MODE=%q", rc2.Template.Environment["MODE"])
	}
	if n2.Labels["zone"] != "a" {
		t.Errorf("modifying a read node changed the store's labels: zone=%q", n2.Labels["zone"])
	}
}

func TestWaitIndex(t *testing.T) {
	w := newWriter(t)
	w.must(&state.PutNode{Node: api.Node{Name: "n1"}}) // index 1

	t.Run("already past", func(t *testing.T) {
		if got := w.st.WaitIndex(context.Background(), 0); got != 1 {
			t.Errorf("WaitIndex(0) = %d, want 1", got)
		}
	})
	t.Run("wakes on update", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		got := make(chan uint64, 1)
		go func() { got <- w.st.WaitIndex(ctx, 1) }()
		select {
		case idx := <-got:
			t.Fatalf("WaitIndex(1) returned %d before any update", idx)
		case <-time.After(20 * time.Millisecond):
		}
		w.must(&state.PutNode{Node: api.Node{Name: "n2"}}) // index 2
		select {
		case idx := <-got:
			if idx != 2 {
				t.Errorf("WaitIndex(1) = %d, want 2", idx)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("WaitIndex did not return after an update")
		}
	})
	t.Run("ctx ends", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		start := time.Now()
		if got := w.st.WaitIndex(ctx, 100); got != 2 {
			t.Errorf("WaitIndex after ctx end = %d, want current index 2", got)
		}
		if d := time.Since(start); d < 25*time.Millisecond || d > 5*time.Second {
			t.Errorf("WaitIndex returned after %v, want about 30ms", d)
		}
	})
	t.Run("index does not go back", func(t *testing.T) {
		if err := w.st.Update(1, func(tx *state.Txn) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if got := w.st.Index(); got != 2 {
			t.Errorf("Index() after an update at an older index = %d, want 2", got)
		}
	})
}

func TestChangedClosesOnUpdate(t *testing.T) {
	w := newWriter(t)
	ch := w.st.Changed()
	select {
	case <-ch:
		t.Fatal("Changed() closed before any update")
	default:
	}
	w.must(&state.PutNode{Node: api.Node{Name: "n1"}})
	select {
	case <-ch:
	default:
		t.Fatal("Changed() not closed after an update")
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	w := newWriter(t)
	when := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	web, db := svc("shop", "web", 2), svc("shop", "db", 1)
	web.Environment = map[string]string{"MODE": "prod"}
	w.must(
		&state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{web, db}, Volumes: []string{"data"}}},
		&state.ReleaseRC{Key: "shop/web"},
		&state.PutNode{Node: api.Node{Name: "n1", Status: api.NodeReady, PodSubnet: "10.213.1.0/24", Heartbeat: when,
			Labels: map[string]string{"zone": "a"}, Allocatable: api.ResourceAmounts{NanoCPUs: 2e9, MemoryBytes: 1 << 30}}},
		&state.CreatePods{Pods: []api.Pod{pod("shop", "web", 1, web.Hash()), pod("shop", "web", 2, web.Hash()), pod("shop", "db", 1, db.Hash())}},
		&state.AssignPods{Nodes: map[string]string{"shop-web-1": "n1"}},
		&state.PodStatus{Name: "shop-web-1", Node: "n1", Status: api.PodStatus{State: api.PodRunning, IP: "10.213.1.2", StartedAt: when}},
		&state.MarkPodsDeleting{Names: []string{"shop-web-2"}},
		&state.Revoke{Revocation: api.Revocation{Kind: api.CertNode, Name: "n9", At: when}},
		&state.SetCluster{Cluster: state.ClusterInfo{ID: "c1", Sealed: []byte{1}}, Founder: "n1"},
		&state.Admit{Name: "n2", At: when, Manager: true},
	)
	b, err := w.st.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	restored := state.New()
	// Something stale that the restore must drop.
	if err := restored.Update(1, func(tx *state.Txn) error { tx.PutNode(api.Node{Name: "stale"}); return nil }); err != nil {
		t.Fatal(err)
	}
	changed := restored.Changed()
	if err := restored.RestoreSnapshot(b); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Errorf("RestoreSnapshot did not wake watchers")
	}
	if restored.Index() != w.st.Index() {
		t.Errorf("Index = %d, want %d", restored.Index(), w.st.Index())
	}
	if got, want := restored.Projects(), w.st.Projects(); !reflect.DeepEqual(got, want) {
		t.Errorf("Projects:\n got %+v\nwant %+v", got, want)
	}
	if got, want := restored.RCs(""), w.st.RCs(""); !reflect.DeepEqual(got, want) {
		t.Errorf("RCs:\n got %+v\nwant %+v", got, want)
	}
	if got, want := restored.Pods(state.PodFilter{}), w.st.Pods(state.PodFilter{}); !reflect.DeepEqual(got, want) {
		t.Errorf("Pods:\n got %+v\nwant %+v", got, want)
	}
	if got, want := restored.Nodes(), w.st.Nodes(); !reflect.DeepEqual(got, want) {
		t.Errorf("Nodes:\n got %+v\nwant %+v", got, want)
	}
	if !restored.MayVote("n1") || !restored.MayVote("n2") {
		t.Errorf("the founder or an admitted manager may not vote after a restore")
	}
	b2, err := restored.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, b2) {
		t.Errorf("snapshot of the restored store differs:\n%s\n%s", b, b2)
	}
	if err := restored.RestoreSnapshot([]byte("{garbage")); err == nil {
		t.Errorf("RestoreSnapshot(garbage) = nil, want error")
	}
	if _, ok := restored.Node("n1"); !ok {
		t.Errorf("a failed restore wiped the store")
	}
}

// TestPutNodeAllocatesSubnets: the state machine gives each new node the
// lowest free /24 of the cluster CIDR, keeps a node's subnet across its
// reports, frees nothing while the node is known, and says when the CIDR is
// exhausted.
func TestPutNodeAllocatesSubnets(t *testing.T) {
	w := newWriter(t)
	put := func(name, cidr string) (string, error) {
		t.Helper()
		err := w.apply(&state.PutNode{Node: api.Node{Name: name, Status: api.NodeReady}, ClusterCIDR: cidr})
		n, _ := w.st.Node(name)
		return n.PodSubnet, err
	}
	const cidr = "10.213.0.0/23" // room for one /24 (x.y.0.0 is skipped)
	tests := []struct {
		name, node, cidr string
		want             string
		wantErr          string
	}{
		{name: "first node", node: "n1", cidr: cidr, want: "10.213.1.0/24"},
		{name: "a report keeps the subnet", node: "n1", cidr: cidr, want: "10.213.1.0/24"},
		{name: "exhausted", node: "n2", cidr: cidr, wantErr: "cluster cidr 10.213.0.0/23 is exhausted"},
		{name: "a wider cidr", node: "n2", cidr: "10.213.0.0/16", want: "10.213.2.0/24"},
		{name: "no cidr: none allocated", node: "n3", cidr: "", want: ""},
		{name: "not IPv4 /23 or larger", node: "n4", cidr: "10.213.0.0/24", wantErr: "want an IPv4 prefix of /23 or larger"},
	}
	for _, tt := range tests {
		got, err := put(tt.node, tt.cidr)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: err = %v, want %q", tt.name, err, tt.wantErr)
			}
			if _, ok := w.st.Node(tt.node); ok {
				t.Errorf("%s: node %s recorded despite the error", tt.name, tt.node)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: subnet %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

// TestSetPodStopped: `dev stop` is a field of the pod, kept through the
// log; `dev up` of the project and `dev scale` of the service clear it, a
// stop of another service's pod is left alone, a deleting pod is not
// marked.
func TestSetPodStopped(t *testing.T) {
	w := newWriter(t)
	svc := func(name string) api.ServiceSpec {
		return api.ServiceSpec{Project: "shop", Name: name, Image: "x", Replicas: 1}
	}
	project := &state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{svc("web"), svc("db")}}}
	w.must(project)
	w.must(&state.CreatePods{Pods: []api.Pod{
		{Name: "shop-web-1", Project: "shop", Service: "web", Labels: map[string]string{}},
		{Name: "shop-db-1", Project: "shop", Service: "db", Labels: map[string]string{}},
	}})
	stopped := func(name string) bool {
		p, _ := w.st.Pod(name)
		return p.Stopped
	}
	w.must(&state.SetPodStopped{Name: "shop-web-1", Stopped: true})
	w.must(&state.SetPodStopped{Name: "shop-db-1", Stopped: true})
	if !stopped("shop-web-1") || !stopped("shop-db-1") {
		t.Fatal("dev stop not recorded")
	}
	w.must(&state.Scale{Project: "shop", Replicas: map[string]int{"web": 2}})
	if stopped("shop-web-1") || !stopped("shop-db-1") {
		t.Errorf("after scaling web: web stopped %v (want false), db stopped %v (want true)", stopped("shop-web-1"), stopped("shop-db-1"))
	}
	w.must(project)
	if stopped("shop-db-1") {
		t.Errorf("dev up of the project left db stopped")
	}
	w.must(&state.SetPodStopped{Name: "shop-web-1", Stopped: true})
	w.must(&state.SetPodStopped{Name: "shop-web-1", Stopped: false})
	if stopped("shop-web-1") {
		t.Errorf("dev start left web stopped")
	}
	w.must(&state.MarkPodsDeleting{Names: []string{"shop-db-1"}})
	w.must(&state.SetPodStopped{Name: "shop-db-1", Stopped: true})
	if stopped("shop-db-1") {
		t.Errorf("a deleting pod was marked stopped")
	}
}

// TestDiffProject: what an apply would do to each service, by the rule
// the state machine applies.
func TestDiffProject(t *testing.T) {
	w := newWriter(t)
	svc := func(name, image string, replicas int) api.ServiceSpec {
		return api.ServiceSpec{Project: "shop", Name: name, Image: image, Replicas: replicas}
	}
	w.must(&state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{
		svc("web", "web:1", 1), svc("db", "db:1", 1), svc("cache", "cache:1", 1), svc("old", "old:1", 1)}}})
	got := w.st.DiffProject(api.Project{Name: "shop", Services: []api.ServiceSpec{
		svc("web", "web:2", 1), svc("db", "db:1", 3), svc("cache", "cache:1", 1), svc("new", "new:1", 1)}})
	want := api.ApplyResult{Created: []string{"new"}, Updated: []string{"web", "db"}, Unchanged: []string{"cache"}, Removed: []string{"old"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("DiffProject = %+v, want %+v", got, want)
	}
}

// TestRevoke: a revocation refuses the certificates of its kind and name
// issued up to its time, not later ones nor another kind's; a later
// revocation of the same name moves the time forward, an older one does
// not move it back; the list survives a snapshot.
func TestRevoke(t *testing.T) {
	w := newWriter(t)
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	w.must(&state.Revoke{Revocation: api.Revocation{Kind: api.CertNode, Name: "h3", At: t0}})
	for _, tt := range []struct {
		kind, name string
		issued     time.Time
		want       bool
	}{
		{api.CertNode, "h3", t0.Add(-time.Hour), true},
		{api.CertNode, "h3", t0, true},
		{api.CertNode, "h3", t0.Add(999 * time.Millisecond), true}, // the same second: cannot be told apart
		{api.CertNode, "h3", t0.Add(time.Second), false},           // joined again since
		{api.CertClient, "h3", t0.Add(-time.Hour), false},
		{api.CertNode, "h2", t0.Add(-time.Hour), false},
	} {
		if got := w.st.Revoked(tt.kind, tt.name, tt.issued); got != tt.want {
			t.Errorf("Revoked(%s, %s, %v) = %v, want %v", tt.kind, tt.name, tt.issued, got, tt.want)
		}
	}
	w.must(&state.Revoke{Revocation: api.Revocation{Kind: api.CertNode, Name: "h3", At: t0.Add(time.Hour)}},
		&state.Revoke{Revocation: api.Revocation{Kind: api.CertNode, Name: "h3", At: t0}})
	if !w.st.Revoked(api.CertNode, "h3", t0.Add(time.Minute)) {
		t.Error("a later revocation did not take")
	}
	restored := snapshotCopy(t, w.st)
	if got := restored.Revocations(); len(got) != 1 || !got[0].At.Equal(t0.Add(time.Hour)) {
		t.Errorf("restored revocations %+v", got)
	}
}

// TestRotateGossipKey: a node's revocation makes the gossip key stale
// (a client bundle's does not); the rotation of the next generation
// replaces it and clears that, survives a snapshot, and another rotation
// of the same generation or a malformed key is refused.
func TestRotateGossipKey(t *testing.T) {
	w := newWriter(t)
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	first := bytes.Repeat([]byte{1}, 32)
	w.must(&state.SetCluster{Cluster: state.ClusterInfo{ID: "c1", GossipKey: first}, Founder: "n1"})
	if _, stale := w.st.GossipKeyStale(); stale {
		t.Fatal("stale with no revocation")
	}
	w.must(&state.Revoke{Revocation: api.Revocation{Kind: api.CertClient, Name: "ops", At: t0}})
	if _, stale := w.st.GossipKeyStale(); stale {
		t.Fatal("stale after a client bundle's revocation: a bundle holds no gossip key")
	}
	// A revocation stamped by a clock behind the others' still counts.
	w.must(&state.Revoke{Revocation: api.Revocation{Kind: api.CertNode, Name: "h3", At: t0.Add(-24 * time.Hour)}})
	next, stale := w.st.GossipKeyStale()
	if !stale || next != 1 {
		t.Fatalf("GossipKeyStale() = %d, %v after a node's revocation; want 1, true", next, stale)
	}
	second := bytes.Repeat([]byte{2}, 32)
	w.must(&state.RotateGossipKey{Key: second, Gen: 1})
	ci, _ := w.st.Cluster()
	if _, stale := w.st.GossipKeyStale(); !bytes.Equal(ci.GossipKey, second) || ci.GossipKeyGen != 1 || stale {
		t.Fatalf("after the rotation: key %x gen %d, stale %v", ci.GossipKey[:1], ci.GossipKeyGen, stale)
	}
	for _, bad := range []*state.RotateGossipKey{
		{Key: bytes.Repeat([]byte{3}, 32), Gen: 1}, // the same generation again
		{Key: bytes.Repeat([]byte{3}, 32), Gen: 3}, // one skipped
		{Key: bytes.Repeat([]byte{3}, 16), Gen: 2}, // too short
	} {
		if err := w.apply(bad); err == nil {
			t.Errorf("RotateGossipKey{%d bytes, gen %d} applied", len(bad.Key), bad.Gen)
		}
	}
	// The same node revoked again later: stale again.
	w.must(&state.Revoke{Revocation: api.Revocation{Kind: api.CertNode, Name: "h3", At: t0.Add(time.Hour)}})
	if next, stale := w.st.GossipKeyStale(); !stale || next != 2 {
		t.Fatalf("GossipKeyStale() = %d, %v after a second revocation; want 2, true", next, stale)
	}
	restored := snapshotCopy(t, w.st)
	rc, _ := restored.Cluster()
	if next, stale := restored.GossipKeyStale(); !bytes.Equal(rc.GossipKey, second) || rc.GossipKeyGen != 1 || !stale || next != 2 {
		t.Errorf("restored: key %x gen %d, stale %v next %d", rc.GossipKey[:1], rc.GossipKeyGen, stale, next)
	}
}

// TestMayJoinRaft: a node may become a raft member once admitted (or
// registered), and not after its certificate was revoked, unless it was
// admitted again since.
func TestMayJoinRaft(t *testing.T) {
	w := newWriter(t)
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	if w.st.MayJoinRaft("h2") {
		t.Error("a gossip member never admitted may join raft")
	}
	w.must(&state.Admit{Name: "h2", At: t0}, &state.PutNode{Node: api.Node{Name: "h1", Status: api.NodeReady}})
	if !w.st.MayJoinRaft("h2") || !w.st.MayJoinRaft("h1") {
		t.Error("an admitted or registered node may not join raft")
	}
	w.must(&state.Revoke{Revocation: api.Revocation{Kind: api.CertNode, Name: "h2", At: t0.Add(time.Minute)}},
		&state.Revoke{Revocation: api.Revocation{Kind: api.CertNode, Name: "h1", At: t0}})
	if w.st.MayJoinRaft("h2") || w.st.MayJoinRaft("h1") {
		t.Error("a revoked node may join raft")
	}
	w.must(&state.Admit{Name: "h2", At: t0.Add(time.Hour)})
	if !w.st.MayJoinRaft("h2") {
		t.Error("a node admitted again after its revocation may not join raft")
	}
}

// TestMayVote: the founder and nodes admitted with the manager token may
// vote; workers may not, nor a manager admitted again as a worker, nor a
// revoked manager. In a cluster made before the data key (Legacy) every
// member may.
func TestMayVote(t *testing.T) {
	w := newWriter(t)
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	w.must(&state.SetCluster{Cluster: state.ClusterInfo{ID: "c", Sealed: []byte{1}}, Founder: "h1"},
		&state.PutNode{Node: api.Node{Name: "h1", Status: api.NodeReady}},
		&state.Admit{Name: "h2", At: t0, Manager: true}, &state.Admit{Name: "h3", At: t0})
	for name, want := range map[string]bool{"h1": true, "h2": true, "h3": false, "h4": false} {
		if got := w.st.MayVote(name); got != want {
			t.Errorf("MayVote(%s) = %v, want %v", name, got, want)
		}
	}
	w.must(&state.Admit{Name: "h2", At: t0.Add(time.Minute)},
		&state.Revoke{Revocation: api.Revocation{Kind: api.CertNode, Name: "h1", At: t0}})
	if w.st.MayVote("h2") || w.st.MayVote("h1") {
		t.Errorf("a manager admitted again as a worker, or a revoked founder, may vote")
	}
	legacy := newWriter(t)
	legacy.must(&state.SetCluster{Cluster: state.ClusterInfo{ID: "c", CAKeyPEM: []byte("key")}}, &state.Admit{Name: "h3", At: t0})
	if !legacy.st.MayVote("h3") {
		t.Errorf("in a legacy cluster a worker-admitted member may not vote")
	}
}

// TestCordonNode: a cordon is the user's and outlives the node's own
// reports (heartbeats carry no cordon); an unknown node is an error.
func TestCordonNode(t *testing.T) {
	st := state.New()
	idx := uint64(0)
	apply := func(cmd state.Command) error {
		idx++
		return st.Update(idx, func(tx *state.Txn) error { return tx.Apply(cmd) })
	}
	report := &state.PutNode{Node: api.Node{Name: "n1", Status: api.NodeReady, Cordoned: true}}
	if err := apply(report); err != nil {
		t.Fatal(err)
	}
	if n, _ := st.Node("n1"); n.Cordoned {
		t.Fatal("a node's own report cordoned it")
	}
	if err := apply(&state.CordonNode{Name: "n1", Cordoned: true}); err != nil {
		t.Fatal(err)
	}
	if err := apply(&state.PutNode{Node: api.Node{Name: "n1", Status: api.NodeReady}}); err != nil {
		t.Fatal(err)
	}
	if n, _ := st.Node("n1"); !n.Cordoned {
		t.Error("the node's next report uncordoned it")
	}
	if err := apply(&state.CordonNode{Name: "n1"}); err != nil {
		t.Fatal(err)
	}
	if n, _ := st.Node("n1"); n.Cordoned {
		t.Error("uncordon did not take")
	}
	if err := apply(&state.CordonNode{Name: "nope", Cordoned: true}); err == nil {
		t.Error("cordoned a node that does not exist")
	}
}

// TestDrainNode: a drain cordons the node and outlives its reports; a
// cordon keeps it going, the leader's FinishDrain ends it (the node stays
// cordoned), an uncordon stops it, and a FinishDrain after an uncordon
// (a stale plan) changes nothing.
func TestDrainNode(t *testing.T) {
	st := state.New()
	idx := uint64(0)
	apply := func(cmd state.Command) {
		t.Helper()
		idx++
		if err := st.Update(idx, func(tx *state.Txn) error { return tx.Apply(cmd) }); err != nil {
			t.Fatalf("apply %T: %v", cmd, err)
		}
	}
	want := func(step string, cordoned, draining bool) {
		t.Helper()
		if n, _ := st.Node("n1"); n.Cordoned != cordoned || n.Draining != draining {
			t.Errorf("%s: cordoned %v draining %v, want %v %v", step, n.Cordoned, n.Draining, cordoned, draining)
		}
	}
	apply(&state.PutNode{Node: api.Node{Name: "n1", Status: api.NodeReady, Draining: true}})
	want("a node's own report", false, false)
	apply(&state.CordonNode{Name: "n1", Cordoned: true, Drain: true})
	want("drain", true, true)
	apply(&state.PutNode{Node: api.Node{Name: "n1", Status: api.NodeReady}})
	want("the node's next report", true, true)
	apply(&state.CordonNode{Name: "n1", Cordoned: true})
	want("cordon during a drain", true, true)
	apply(&state.FinishDrain{Name: "n1"})
	want("drain finished", true, false)
	apply(&state.CordonNode{Name: "n1", Cordoned: true, Drain: true})
	apply(&state.CordonNode{Name: "n1"})
	want("uncordon during a drain", false, false)
	apply(&state.FinishDrain{Name: "n1"})
	want("a stale FinishDrain after the uncordon", false, false)
	apply(&state.FinishDrain{Name: "nope"})
}

// TestLabelNode: labels a user sets or removes override the node's own
// and outlive its reports; the node's other labels follow its reports.
func TestLabelNode(t *testing.T) {
	st := state.New()
	idx := uint64(0)
	apply := func(cmd state.Command) {
		t.Helper()
		idx++
		if err := st.Update(idx, func(tx *state.Txn) error { return tx.Apply(cmd) }); err != nil {
			t.Fatal(err)
		}
	}
	report := func(labels map[string]string) {
		apply(&state.PutNode{Node: api.Node{Name: "n1", Status: api.NodeReady, Labels: labels}})
	}
	labels := func() map[string]string { n, _ := st.Node("n1"); return n.Labels }
	report(map[string]string{"zone": "a", "disk": "hdd"})
	apply(&state.LabelNode{Name: "n1", Labels: map[string]string{"disk": "ssd", "gpu": "yes"}})
	apply(&state.LabelNode{Name: "n1", Labels: map[string]string{"zone": ""}})
	want := map[string]string{"disk": "ssd", "gpu": "yes"}
	if got := labels(); !maps.Equal(got, want) {
		t.Fatalf("after dev node label: %v, want %v", got, want)
	}
	report(map[string]string{"zone": "a", "disk": "hdd", "rack": "7"}) // its next report
	want["rack"] = "7"
	if got := labels(); !maps.Equal(got, want) {
		t.Errorf("after the node's report: %v, want %v (the user's labels kept, its new one added)", got, want)
	}
	idx++
	if err := st.Update(idx, func(tx *state.Txn) error {
		return tx.Apply(&state.LabelNode{Name: "nope", Labels: map[string]string{"a": "b"}})
	}); err == nil {
		t.Error("labelled a node that does not exist")
	}
}

// TestRecreateToken: dev up --force-recreate's token makes a new template
// (the pods roll), and an apply without one keeps it, so a later plain
// dev up changes nothing.
func TestRecreateToken(t *testing.T) {
	w := newWriter(t)
	apply := func(token string) api.ReplicationController {
		t.Helper()
		web := svc("shop", "web", 2)
		web.Recreate = token
		w.must(&state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{web}}})
		rc, _ := w.st.RC(api.RCKey("shop", "web"))
		return rc
	}
	first := apply("")
	forced := apply("2026-12-07T17:00:00Z")
	if forced.SpecHash == first.SpecHash || forced.Previous == nil {
		t.Fatalf("a recreate token: hash %s -> %s, previous %v; want a new template", first.SpecHash, forced.SpecHash, forced.Previous != nil)
	}
	web := svc("shop", "web", 2)
	if d := w.st.DiffProject(api.Project{Name: "shop", Services: []api.ServiceSpec{web}}); len(d.Unchanged) != 1 {
		t.Errorf("diff of a plain apply after a forced one: %+v, want web unchanged", d)
	}
	if again := apply(""); again.SpecHash != forced.SpecHash || again.Template.Recreate != forced.Template.Recreate {
		t.Errorf("a plain apply after a forced one: hash %s, want %s (the token kept)", again.SpecHash, forced.SpecHash)
	}
}

// TestApplyProjectIngressConflict: a project whose route takes a host and
// path another project routes is refused, and changes nothing; the same
// project may keep its own routes on a new apply.
func TestApplyProjectIngressConflict(t *testing.T) {
	w := newWriter(t)
	svc := func(project, name string, routes ...api.IngressRoute) api.ServiceSpec {
		return api.ServiceSpec{Project: project, Name: name, Image: "x", Replicas: 1, Ingress: routes}
	}
	route := api.IngressRoute{Host: "a.example.com", Path: "/", Port: 80, TLS: api.IngressTLSAuto}
	shop := &state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{svc("shop", "web", route)}}}
	w.must(shop, shop) // applied again: its own route is no conflict
	other := &state.ApplyProject{Project: api.Project{Name: "blog", Services: []api.ServiceSpec{svc("blog", "web", route)}}}
	err := w.apply(other)
	if err == nil || !strings.Contains(err.Error(), "routed to service web of project shop") {
		t.Fatalf("apply of a conflicting route: %v", err)
	}
	if _, ok := w.st.RC(api.RCKey("blog", "web")); ok {
		t.Error("the refused project was stored")
	}
	api2 := route
	api2.Path = "/api"
	w.must(&state.ApplyProject{Project: api.Project{Name: "blog", Services: []api.ServiceSpec{svc("blog", "web", api2)}}})
}

// TestRollbackKeepsRoutes: a rollback restores what runs, not the routes:
// the route the service dropped, now another project's, stays theirs.
func TestRollbackKeepsRoutes(t *testing.T) {
	w := newWriter(t)
	route := api.IngressRoute{Host: "a.example.com", Path: "/", Port: 80, TLS: api.IngressTLSAuto}
	v1 := api.ServiceSpec{Project: "shop", Name: "web", Image: "web:1", Replicas: 1, Ingress: []api.IngressRoute{route}}
	v2 := v1
	v2.Image, v2.Ingress = "web:2", nil
	blog := api.ServiceSpec{Project: "blog", Name: "web", Image: "blog", Replicas: 1, Ingress: []api.IngressRoute{route}}
	w.must(&state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{v1}}},
		&state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{v2}}},
		&state.ApplyProject{Project: api.Project{Name: "blog", Services: []api.ServiceSpec{blog}}},
		&state.RollbackRC{Key: api.RCKey("shop", "web")})
	rc, _ := w.st.RC(api.RCKey("shop", "web"))
	if rc.Template.Image != "web:1" || len(rc.Template.Ingress) != 0 {
		t.Errorf("after the rollback: image %s, routes %v; want web:1 and no route", rc.Template.Image, rc.Template.Ingress)
	}
}

// snapshotCopy is a new state restored from a snapshot of st.
func snapshotCopy(t *testing.T, st *state.Store) *state.Store {
	t.Helper()
	b, err := st.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	restored := state.New()
	if err := restored.RestoreSnapshot(b); err != nil {
		t.Fatal(err)
	}
	return restored
}
