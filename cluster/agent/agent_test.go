package agent_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/agent"
	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

const node = "n1"

var fastOpts = agent.Options{
	Node: node, Address: "10.0.0.1", Labels: map[string]string{"zone": "a"},
	Resync: 100 * time.Millisecond, Heartbeat: 100 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
}

type env struct {
	t  *testing.T
	st *state.Store
	cl *fakeCluster
	d  *fakeDriver
	a  *agent.Agent

	services map[string][]api.ServiceSpec // by project
	cancel   context.CancelFunc
	done     chan error
}

func newEnv(t *testing.T) *env {
	st := state.New()
	e := &env{t: t, st: st, cl: &fakeCluster{st: st}, d: newFakeDriver(node), services: map[string][]api.ServiceSpec{}}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	e.a = agent.New(st, e.cl, e.d, fastOpts, log)
	return e
}

func (e *env) apply(cmds ...state.Command) {
	e.t.Helper()
	for _, c := range cmds {
		if _, err := e.cl.Apply(context.Background(), c); err != nil {
			e.t.Fatalf("apply %T: %v", c, err)
		}
	}
}

func spec(service, restart string) api.ServiceSpec {
	return api.ServiceSpec{Project: "shop", Name: service, Image: service + ":1", Replicas: 1, Restart: restart,
		Environment: map[string]string{"MODE": "test"}}
}

// deploy records the service's controller and creates its pod index i bound
// to onNode, as the controller and scheduler would.
func (e *env) deploy(s api.ServiceSpec, i int, onNode string) string {
	e.t.Helper()
	svcs := e.services[s.Project]
	found := false
	for j := range svcs {
		if svcs[j].Name == s.Name {
			svcs[j], found = s, true
		}
	}
	if !found {
		svcs = append(svcs, s)
	}
	e.services[s.Project] = svcs
	name := api.PodName(s.Project, s.Name, i)
	e.apply(
		&state.ApplyProject{Project: api.Project{Name: s.Project, Services: svcs}},
		&state.CreatePods{Pods: []api.Pod{{
			Name: name, Project: s.Project, Service: s.Name, Index: i, SpecHash: s.Hash(),
			Labels: map[string]string{api.LabelProject: s.Project, api.LabelService: s.Name, api.LabelPod: name},
			Status: api.PodStatus{State: api.PodPending},
		}}},
		&state.AssignPods{Nodes: map[string]string{name: onNode}},
	)
	return name
}

// run starts the agent; the test's cleanup stops it and checks it returned.
func (e *env) run() {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel, e.done = cancel, make(chan error, 1)
	go func() { e.done <- e.a.Run(ctx) }()
	e.t.Cleanup(e.stop)
}

func (e *env) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	e.cancel = nil
	select {
	case err := <-e.done:
		if err != nil {
			e.t.Errorf("Run returned %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		e.t.Errorf("Run did not return after its context ended")
	}
}

func (e *env) pod(name string) (api.Pod, bool) { return e.st.Pod(name) }

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

// waitRunning waits until the pod reports running with the container the
// engine has, and returns that container.
func (e *env) waitRunning(name string, restarts int) agent.Container {
	e.t.Helper()
	var c agent.Container
	eventually(e.t, name+" running", func() error {
		var ok bool
		c, ok = e.d.container(name)
		if !ok {
			return errors.New("no container")
		}
		if c.State != "running" {
			return fmt.Errorf("container state %q", c.State)
		}
		p, ok := e.pod(name)
		if !ok {
			return errors.New("no pod")
		}
		st := p.Status
		if st.State != api.PodRunning || st.ContainerID != c.ID || st.IP != c.IP || st.Restarts != restarts {
			return fmt.Errorf("pod status %+v, want running, container %s, ip %s, restarts %d", st, c.ID, c.IP, restarts)
		}
		return nil
	})
	return c
}

func TestAgentRegistersNode(t *testing.T) {
	e := newEnv(t)
	e.run()
	eventually(t, "node registered", func() error {
		n, ok := e.st.Node(node)
		if !ok {
			return errors.New("no node")
		}
		if n.Status != api.NodeReady || n.PodSubnet != "10.213.1.0/24" || n.Address != "10.0.0.1" ||
			n.Labels["zone"] != "a" || n.Allocatable.NanoCPUs != 4e9 || n.Allocatable.MemoryBytes != 8<<30 {
			return fmt.Errorf("node = %+v", n)
		}
		if got := e.d.networks(); len(got) == 0 || got[0] != "10.213.1.0/24" {
			return fmt.Errorf("EnsureNetwork calls = %v, want the node's subnet", got)
		}
		return nil
	})
	first, _ := e.st.Node(node)
	eventually(t, "heartbeats", func() error {
		if n, _ := e.st.Node(node); !n.Heartbeat.After(first.Heartbeat) {
			return fmt.Errorf("heartbeat still %v", n.Heartbeat)
		}
		return nil
	})
}

// TestAgentReportsEngineUnreachable: an Engine that stops answering its
// probe is reported in the node's record at the next heartbeat, with the
// resources it had; heartbeats go on (the node is alive) and its running
// pod is left as it is; once the Engine answers again, so says the record.
func TestAgentReportsEngineUnreachable(t *testing.T) {
	e := newEnv(t)
	name := e.deploy(spec("web", ""), 1, node)
	e.run()
	c := e.waitRunning(name, 0)

	e.d.setEngineDown(true)
	var down api.Node
	eventually(t, "the engine reported unreachable", func() error {
		down, _ = e.st.Node(node)
		if !down.EngineUnreachable || down.Status != api.NodeReady || down.Allocatable.NanoCPUs != 4e9 {
			return fmt.Errorf("node = %+v", down)
		}
		return nil
	})
	eventually(t, "heartbeats while the engine does not answer", func() error {
		if n, _ := e.st.Node(node); !n.Heartbeat.After(down.Heartbeat) {
			return fmt.Errorf("heartbeat still %v", n.Heartbeat)
		}
		return nil
	})
	if p, _ := e.pod(name); p.Status.State != api.PodRunning || p.Status.ContainerID != c.ID {
		t.Errorf("pod while the engine does not answer: %+v, want it running as it was", p.Status)
	}

	e.d.setEngineDown(false)
	eventually(t, "the engine reported back", func() error {
		if n, _ := e.st.Node(node); n.EngineUnreachable {
			return errors.New("still unreachable")
		}
		return nil
	})
}

// TestEngineProbeHangs: a probe of the Engine that hangs holds up no
// heartbeat (they report the last result), and the Engine is reported
// unreachable only after three failed probes in a row.
func TestEngineProbeHangs(t *testing.T) {
	st := state.New()
	e := &env{t: t, st: st, cl: &fakeCluster{st: st}, d: newFakeDriver(node), services: map[string][]api.ServiceSpec{}}
	opts := fastOpts
	opts.Heartbeat, opts.EngineTimeout = 20*time.Millisecond, 500*time.Millisecond
	e.a = agent.New(st, e.cl, e.d, opts, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	e.run()
	eventually(t, "node registered", func() error {
		if _, ok := e.st.Node(node); !ok {
			return errors.New("no node record")
		}
		return nil
	})

	e.d.setPing(true, 0)
	pings := e.d.pingCount()
	eventually(t, "a probe hanging", func() error {
		if e.d.pingCount() <= pings {
			return errors.New("no probe since")
		}
		return nil
	})
	start := time.Now()
	beats, _ := e.cl.heartbeats()
	eventually(t, "three heartbeats while the probe hangs", func() error {
		if n, _ := e.cl.heartbeats(); n < beats+3 {
			return fmt.Errorf("%d heartbeats since", n-beats)
		}
		return nil
	})
	if d := time.Since(start); d >= opts.EngineTimeout {
		t.Errorf("three heartbeats took %s, want them not held up by the probe (timeout %s)", d, opts.EngineTimeout)
	}
	if n, _ := e.st.Node(node); n.EngineUnreachable {
		t.Errorf("unreachable after one hung probe, want three failed in a row first")
	}
	eventually(t, "the engine reported unreachable", func() error {
		if n, _ := e.st.Node(node); !n.EngineUnreachable {
			return fmt.Errorf("pings %d, node still reachable", e.d.pingCount())
		}
		return nil
	})
	e.d.setPing(false, 0)
	eventually(t, "the engine reported back at its first answer", func() error {
		if n, _ := e.st.Node(node); n.EngineUnreachable {
			return errors.New("still unreachable")
		}
		return nil
	})
}

// TestEngineProbeFailsOnce: one failed probe does not flip the node to
// unreachable and back.
func TestEngineProbeFailsOnce(t *testing.T) {
	e := newEnv(t)
	e.run()
	eventually(t, "node registered", func() error {
		if _, ok := e.st.Node(node); !ok {
			return errors.New("no node record")
		}
		return nil
	})
	e.d.setPing(false, 1)
	pings := e.d.pingCount()
	eventually(t, "two probes after the failed one, and a heartbeat since", func() error {
		if e.d.pingCount() < pings+3 {
			return errors.New("not yet")
		}
		return nil
	})
	beats, _ := e.cl.heartbeats()
	eventually(t, "a heartbeat after the probes", func() error {
		if n, _ := e.cl.heartbeats(); n <= beats {
			return errors.New("not yet")
		}
		return nil
	})
	if _, unreachable := e.cl.heartbeats(); unreachable {
		t.Errorf("a heartbeat reported the engine unreachable after one failed probe, want no flap")
	}
}

func TestAgentRunFailsWhenRegistrationFails(t *testing.T) {
	e := newEnv(t)
	e.cl.registerErr = errors.New("no leader")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := e.a.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "register node n1") || !strings.Contains(err.Error(), "no leader") {
		t.Errorf("Run = %v, want a registration error", err)
	}
}

func TestAgentRunsAssignedPod(t *testing.T) {
	e := newEnv(t)
	name := e.deploy(spec("web", ""), 1, node)
	other := e.deploy(spec("api", ""), 1, "n2")
	e.run()

	c := e.waitRunning(name, 0)
	if c.SpecHash != spec("web", "").Hash() || c.Labels[api.LabelNode] != node {
		t.Errorf("container hash %q node %q, want the pod's hash and node", c.SpecHash, c.Labels[api.LabelNode])
	}
	if got := e.d.count("create", name); got != 1 {
		t.Errorf("create calls = %d, want 1", got)
	}
	if got := e.d.count("start", name); got != 1 {
		t.Errorf("start calls = %d, want 1", got)
	}
	time.Sleep(300 * time.Millisecond) // a few resyncs
	if got := e.d.count("create", other); got != 0 {
		t.Errorf("created a container for %s, which is bound to another node", other)
	}
	if got := e.d.count("create", name) + e.d.count("start", name); got != 2 {
		t.Errorf("a running pod was touched again: %v", e.d.callsFor(name))
	}

	// Stopping the agent leaves containers running, to be adopted later.
	e.stop()
	if c, _ := e.d.container(name); c.State != "running" || e.d.count("stop", name) != 0 {
		t.Errorf("after the agent stopped: container %q, calls %v; want it left running", c.State, e.d.callsFor(name))
	}
}

func TestAgentRecreatesVanishedContainer(t *testing.T) {
	e := newEnv(t)
	name := e.deploy(spec("web", ""), 1, node)
	e.run()
	before := e.waitRunning(name, 0)

	e.d.vanish(name)
	after := e.waitRunning(name, 1)
	if after.ID == before.ID {
		t.Errorf("container ID unchanged (%s) after the container vanished", after.ID)
	}
	if got := e.d.count("create", name); got != 2 {
		t.Errorf("create calls = %d, want 2", got)
	}
}

// TestAgentRecreatesPodWhoseInfraDied: an app container running on after
// its pod's infra container died has lost the pod's network: the worker
// replaces it (and Create makes the infra container again).
func TestAgentRecreatesPodWhoseInfraDied(t *testing.T) {
	e := newEnv(t)
	name := e.deploy(spec("web", ""), 1, node)
	e.run()
	before := e.waitRunning(name, 0)
	e.d.infraDies(name)
	after := e.waitRunning(name, 1)
	if after.ID == before.ID || e.d.count("remove", name) != 1 {
		t.Errorf("after the infra container died: container %s (was %s), calls %v; want it removed and made again", after.ID, before.ID, e.d.callsFor(name))
	}
}

func TestAgentRestartPolicy(t *testing.T) {
	tests := []struct {
		name        string
		restart     string
		exitCode    int
		wantRestart bool
	}{
		{"default always, exit 0", "", 0, true},
		{"always, exit 1", api.RestartAlways, 1, true},
		{"unless-stopped, exit 0", api.RestartUnlessStopped, 0, true},
		{"no, exit 3", api.RestartNo, 3, false},
		{"no, exit 0", api.RestartNo, 0, false},
		{"on-failure, exit 0", api.RestartOnFailure, 0, false},
		{"on-failure, exit 1", api.RestartOnFailure, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			name := e.deploy(spec("job", tt.restart), 1, node)
			e.run()
			first := e.waitRunning(name, 0)
			e.d.exit(name, tt.exitCode)

			if tt.wantRestart {
				c := e.waitRunning(name, 1)
				if c.ID != first.ID {
					t.Errorf("restart created a new container %s, want %s started again", c.ID, first.ID)
				}
				if got := e.d.count("start", name); got != 2 {
					t.Errorf("start calls = %d, want 2", got)
				}
				return
			}
			eventually(t, "pod reported exited", func() error {
				p, _ := e.pod(name)
				if p.Status.State != api.PodExited || p.Status.ExitCode != tt.exitCode || p.Status.ContainerID != first.ID {
					return fmt.Errorf("status %+v, want exited with code %d", p.Status, tt.exitCode)
				}
				return nil
			})
			time.Sleep(350 * time.Millisecond) // beyond MaxBackoff and several resyncs
			if got := e.d.count("start", name); got != 1 {
				t.Errorf("start calls = %d, want 1 (no restart)", got)
			}
			if c, _ := e.d.container(name); c.State != "exited" {
				t.Errorf("container state %q, want exited", c.State)
			}
			if p, _ := e.pod(name); p.Status.State != api.PodExited || p.Status.Restarts != 0 {
				t.Errorf("status %+v, want exited with 0 restarts", p.Status)
			}
		})
	}
}

func TestAgentRemovesDeletingPod(t *testing.T) {
	e := newEnv(t)
	s := spec("web", "")
	s.StopSignal = "SIGINT"
	grace := api.Duration(3 * time.Second)
	s.StopGracePeriod = &grace
	name := e.deploy(s, 1, node)
	e.run()
	e.waitRunning(name, 0)

	e.apply(&state.MarkPodsDeleting{Names: []string{name}})
	eventually(t, "pod removed and forgotten", func() error {
		if _, ok := e.d.container(name); ok {
			return errors.New("container still exists")
		}
		if p, ok := e.pod(name); ok {
			return fmt.Errorf("pod still in the state: %+v", p)
		}
		return nil
	})
	want := []call{
		{Op: "create", Pod: name},
		{Op: "start", Pod: name},
		{Op: "stop", Pod: name, Signal: "SIGINT", Grace: 3 * time.Second},
		{Op: "remove", Pod: name},
		{Op: "remove-pod", Pod: name}, // after the app container, before the record goes
	}
	if got := e.d.callsFor(name); !reflect.DeepEqual(got, want) {
		t.Errorf("calls = %+v, want %+v", got, want)
	}
}

func TestAgentRemovesExitedDeletingPodWithoutStop(t *testing.T) {
	e := newEnv(t)
	name := e.deploy(spec("job", api.RestartNo), 1, node)
	e.run()
	e.waitRunning(name, 0)
	e.d.exit(name, 0)
	eventually(t, "exited", func() error {
		if p, _ := e.pod(name); p.Status.State != api.PodExited {
			return fmt.Errorf("status %+v", p.Status)
		}
		return nil
	})
	e.apply(&state.MarkPodsDeleting{Names: []string{name}})
	eventually(t, "pod forgotten", func() error {
		if _, ok := e.pod(name); ok {
			return errors.New("pod still in the state")
		}
		return nil
	})
	if got := e.d.count("stop", name); got != 0 {
		t.Errorf("stopped an exited container %d times", got)
	}
	if _, ok := e.d.container(name); ok {
		t.Errorf("container still exists")
	}
}

func TestAgentGarbageCollectsOrphans(t *testing.T) {
	e := newEnv(t)
	keep := e.deploy(spec("web", ""), 1, node)
	moved := e.deploy(spec("api", ""), 1, "n2")
	labels := func(pod, n string) map[string]string {
		return map[string]string{api.LabelManaged: "true", api.LabelPod: pod, api.LabelProject: "shop", api.LabelNode: n}
	}
	// A container of a pod that no longer exists.
	e.d.add(agent.Container{ID: "orphan1", Name: "shop-old-1", Pod: "shop-old-1", Project: "shop",
		Labels: labels("shop-old-1", node), State: "running"})
	// A leftover here of a pod now bound to another node.
	e.d.add(agent.Container{ID: "moved1", Name: moved, Pod: moved, Project: "shop", SpecHash: spec("api", "").Hash(),
		Labels: labels(moved, node), State: "exited"})
	// Another node's container on a shared engine: not ours to remove.
	e.d.add(agent.Container{ID: "theirs1", Name: "blog-db-1", Pod: "blog-db-1", Project: "blog",
		Labels: labels("blog-db-1", "n2"), State: "running"})
	e.run()
	e.waitRunning(keep, 0)

	eventually(t, "orphans removed", func() error {
		for _, pod := range []string{"shop-old-1", moved} {
			if _, ok := e.d.container(pod); ok {
				return fmt.Errorf("orphan container %s still exists", pod)
			}
		}
		return nil
	})
	if _, ok := e.d.container("blog-db-1"); !ok {
		t.Errorf("removed another node's container")
	}
	if _, ok := e.d.container(keep); !ok {
		t.Errorf("removed the container of a pod bound here")
	}
}

func TestAgentAdoptsRunningContainer(t *testing.T) {
	e := newEnv(t)
	s := spec("web", "")
	name := e.deploy(s, 1, node)
	started := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	e.d.add(agent.Container{
		ID: "old1", Name: name, Pod: name, Project: "shop", SpecHash: s.Hash(), State: "running",
		IP: "10.213.1.77", StartedAt: started,
		Labels: map[string]string{api.LabelManaged: "true", api.LabelPod: name, api.LabelProject: "shop",
			api.LabelService: "web", api.LabelNode: node, api.LabelSpec: s.Hash()},
	})
	// What the previous agent process had reported.
	e.apply(&state.PodStatus{Name: name, Node: node, Status: api.PodStatus{
		State: api.PodRunning, IP: "10.213.1.77", ContainerID: "old1", Restarts: 2, StartedAt: started,
	}})
	e.run()

	e.waitRunning(name, 2)
	time.Sleep(300 * time.Millisecond) // a few resyncs
	if got := e.d.callsFor(name); len(got) != 0 {
		t.Errorf("adopting a running container made calls %+v, want none", got)
	}
	if p, _ := e.pod(name); p.Status.ContainerID != "old1" || p.Status.Restarts != 2 {
		t.Errorf("status after adoption %+v, want container old1 with 2 restarts", p.Status)
	}

	// The adopted container keeps the restart count going.
	e.d.exit(name, 1)
	c := e.waitRunning(name, 3)
	if c.ID != "old1" || e.d.count("create", name) != 0 {
		t.Errorf("restart of an adopted container: id %s, calls %+v", c.ID, e.d.callsFor(name))
	}
}

func TestAgentReplacesOutdatedContainer(t *testing.T) {
	e := newEnv(t)
	s := spec("web", "")
	name := e.deploy(s, 1, node)
	e.d.add(agent.Container{
		ID: "old1", Name: name, Pod: name, Project: "shop", SpecHash: "0ld", State: "running",
		Labels: map[string]string{api.LabelManaged: "true", api.LabelPod: name, api.LabelNode: node, api.LabelSpec: "0ld"},
	})
	e.run()
	c := e.waitRunning(name, 0)
	if c.ID == "old1" || c.SpecHash != s.Hash() {
		t.Errorf("container %s hash %s, want a new container of hash %s", c.ID, c.SpecHash, s.Hash())
	}
	got := e.d.callsFor(name)
	if len(got) < 3 || got[0].Op != "remove" || got[1].Op != "create" || got[2].Op != "start" {
		t.Errorf("calls = %+v, want remove, create, start", got)
	}
}

func TestAgentReportsMissingImage(t *testing.T) {
	e := newEnv(t)
	s := spec("web", "")
	s.Image = "ghost:1"
	e.d.setMissing("ghost:1", true)
	name := e.deploy(s, 1, node)
	e.run()

	eventually(t, "pod failed", func() error {
		p, _ := e.pod(name)
		if p.Status.State != api.PodFailed || !strings.Contains(p.Status.Message, "ghost:1") {
			return fmt.Errorf("status %+v, want failed with a message naming image ghost:1", p.Status)
		}
		return nil
	})
	if _, ok := e.d.container(name); ok {
		t.Errorf("a container exists although its image is missing")
	}
	// Retries back off but go on: once the image is loaded the pod runs.
	e.d.setMissing("ghost:1", false)
	e.waitRunning(name, 0)
	if p, _ := e.pod(name); p.Status.Message != "" {
		t.Errorf("message %q left over after recovery", p.Status.Message)
	}
}

func TestAgentLogs(t *testing.T) {
	e := newEnv(t)
	name := e.deploy(spec("web", ""), 1, node)
	other := e.deploy(spec("api", ""), 1, "n2")
	e.run()
	e.waitRunning(name, 0)

	rc, err := e.a.Logs(context.Background(), name, "", false, -1)
	if err != nil {
		t.Fatalf("Logs(%s): %v", name, err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "hello from "+name+"\n" {
		t.Errorf("logs = %q", b)
	}
	tests := []struct {
		pod     string
		wantErr string
	}{
		{"shop-nope-1", "no such pod"},
		{other, "node n2"},
	}
	for _, tt := range tests {
		if _, err := e.a.Logs(context.Background(), tt.pod, "", false, -1); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Logs(%s) = %v, want error mentioning %q", tt.pod, err, tt.wantErr)
		}
	}
}

// TestAgentOpensSealedFiles: a template whose secrets and configs are
// sealed (as a manager stores them) reaches the driver with their content,
// got from a manager for this pod; when the manager gives none, the pod
// fails and says why, and nothing is created.
func TestAgentOpensSealedFiles(t *testing.T) {
	sealed := func(name, digest string) api.SecretMount {
		return api.SecretMount{Name: name, Target: "/run/secrets/" + name, Sealed: []byte{1, 2, 3}, Digest: digest}
	}
	tests := []struct {
		name    string
		files   map[string][]byte
		wantErr string
	}{
		{name: "opened", files: map[string][]byte{"sha256:aa": []byte("s3cret"), "sha256:bb": []byte("conf")}},
		{name: "the manager gives none", files: map[string][]byte{}, wantErr: "the manager gave no content for token, conf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.cl.files = tt.files
			s := spec("web", "")
			s.Secrets = []api.SecretMount{sealed("token", "sha256:aa")}
			s.Configs = []api.SecretMount{sealed("conf", "sha256:bb")}
			name := e.deploy(s, 1, node)
			e.run()
			if tt.wantErr != "" {
				eventually(t, "the pod pending, saying why", func() error {
					if p, _ := e.pod(name); p.Status.State != api.PodPending || !strings.Contains(p.Status.Message, tt.wantErr) {
						return fmt.Errorf("status %+v, want pending: %s", p.Status, tt.wantErr)
					}
					return nil
				})
				if n := e.d.count("create", name); n != 0 {
					t.Errorf("created %d times without the secrets' content", n)
				}
				return
			}
			e.waitRunning(name, 0)
			e.d.mu.Lock()
			got := e.d.specs[name]
			e.d.mu.Unlock()
			if string(got.Secrets[0].Content) != "s3cret" || string(got.Configs[0].Content) != "conf" {
				t.Errorf("the driver got secrets %+v, configs %+v; want the opened content", got.Secrets, got.Configs)
			}
			e.cl.mu.Lock()
			queries := e.cl.queries
			e.cl.mu.Unlock()
			if len(queries) == 0 || queries[0] != name {
				t.Errorf("asked the manager %+v, want the files of pod %s", queries, name)
			}
			if rc, _ := e.st.RC(api.RCKey(s.Project, s.Name)); rc.Template.Secrets[0].Content != nil {
				t.Errorf("the state's template got the content")
			}
		})
	}
}
