package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/agent"
	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// waitStopped waits until the pod reports exited with the stop message.
func (e *env) waitStopped(name string) {
	e.t.Helper()
	eventually(e.t, name+" reported stopped", func() error {
		p, _ := e.pod(name)
		if p.Status.State != api.PodExited || p.Status.Message != agent.StoppedMessage {
			return fmt.Errorf("status %+v", p.Status)
		}
		return nil
	})
}

func TestPodActionStopStaysStoppedUntilStart(t *testing.T) {
	e := newEnv(t)
	name := e.deploy(spec("web", ""), 1, node) // restart: always
	e.run()
	c := e.waitRunning(name, 0)
	ctx := context.Background()

	p, err := e.a.PodAction(ctx, name, agent.ActionStop, nil)
	if err != nil {
		t.Fatalf("stop: %v", err)
	}
	if p.Status.State != api.PodExited || p.Status.Message != agent.StoppedMessage {
		t.Fatalf("stop returned status %+v, want exited %q", p.Status, agent.StoppedMessage)
	}
	time.Sleep(500 * time.Millisecond) // several resyncs
	if got, _ := e.d.container(name); got.State != "exited" || got.ID != c.ID {
		t.Fatalf("after stop and resyncs: container %s %s, want %s exited", got.ID, got.State, c.ID)
	}
	if n := e.d.count("start", name); n != 1 {
		t.Fatalf("the worker started the stopped container again: %v", e.d.callsFor(name))
	}

	p, err = e.a.PodAction(ctx, name, agent.ActionStart, nil)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	if p.Status.State != api.PodRunning || p.Status.Message != "" {
		t.Fatalf("start returned status %+v", p.Status)
	}
	e.waitRunning(name, 0) // same container, not counted as a restart
	if got, _ := e.d.container(name); got.ID != c.ID {
		t.Fatalf("start replaced the container: %s -> %s", c.ID, got.ID)
	}
	// Without the mark, an exit is restarted again per policy.
	e.d.exit(name, 1)
	e.waitRunning(name, 1)
}

func TestPodActionRestart(t *testing.T) {
	e := newEnv(t)
	name := e.deploy(spec("web", ""), 1, node)
	e.run()
	c := e.waitRunning(name, 0)
	grace := 3 * time.Second
	p, err := e.a.PodAction(context.Background(), name, agent.ActionRestart, &grace)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	if p.Status.State != api.PodRunning || p.Status.StartedAt.Equal(c.StartedAt) {
		t.Fatalf("restart returned %+v, want running with a new start time (was %s)", p.Status, c.StartedAt)
	}
	var ops []string
	for _, cl := range e.d.callsFor(name) {
		ops = append(ops, cl.Op)
		if cl.Op == "stop" && cl.Grace != grace {
			t.Errorf("stop grace %s, want %s", cl.Grace, grace)
		}
	}
	if got := strings.Join(ops, ","); got != "create,start,stop,start" {
		t.Errorf("driver calls %s, want create,start,stop,start", got)
	}
	e.waitRunning(name, 0) // a restart on request is no crash
}

func TestStopMarkSurvivesAgentRestartAndUpLiftsIt(t *testing.T) {
	e := newEnv(t)
	s := spec("web", "")
	name := e.deploy(s, 1, node)
	e.run()
	e.waitRunning(name, 0)
	if _, err := e.a.PodAction(context.Background(), name, agent.ActionStop, nil); err != nil {
		t.Fatal(err)
	}
	e.waitStopped(name)
	e.stop()

	// A new agent on the same store and engine keeps it stopped.
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	e.a = agent.New(e.st, e.cl, e.d, fastOpts, log)
	e.run()
	time.Sleep(500 * time.Millisecond)
	if c, _ := e.d.container(name); c.State != "exited" || e.d.count("start", name) != 1 {
		t.Fatalf("after an agent restart: container %s, calls %v; want it still stopped", c.State, e.d.callsFor(name))
	}

	// Re-applying the project (dev up) starts it again, as compose does.
	e.apply(&state.ApplyProject{Project: api.Project{Name: s.Project, Services: e.services[s.Project]}})
	eventually(t, name+" started by up", func() error {
		if c, _ := e.d.container(name); c.State != "running" {
			return fmt.Errorf("container %s", c.State)
		}
		return nil
	})
}

// TestStoppedPodIsKeptStopped: `dev stop` is the pod's Stopped field in
// the state, and the worker reconciles towards it: a container started
// behind the agent's back (docker start) is stopped again.
func TestStoppedPodIsKeptStopped(t *testing.T) {
	e := newEnv(t)
	name := e.deploy(spec("web", ""), 1, node) // restart: always
	e.run()
	c := e.waitRunning(name, 0)
	if _, err := e.a.PodAction(context.Background(), name, agent.ActionStop, nil); err != nil {
		t.Fatal(err)
	}
	if p, _ := e.pod(name); !p.Stopped {
		t.Fatalf("after dev stop the pod record is %+v, want Stopped", p)
	}
	if err := e.d.Start(context.Background(), c.ID); err != nil { // docker start, behind the agent's back
		t.Fatal(err)
	}
	eventually(t, name+" stopped again", func() error {
		if got, _ := e.d.container(name); got.State != "exited" {
			return fmt.Errorf("container %s", got.State)
		}
		return nil
	})
	if n := e.d.count("stop", name); n != 2 {
		t.Errorf("stops of %s: %d, want 2 (dev stop, then the worker): %v", name, n, e.d.callsFor(name))
	}
}

func TestPodActionErrors(t *testing.T) {
	e := newEnv(t)
	name := e.deploy(spec("web", ""), 1, node)
	other := e.deploy(spec("api", ""), 1, "n2")
	e.run()
	e.waitRunning(name, 0)
	ctx := context.Background()
	tests := []struct {
		name, pod, action, wantErr string
	}{
		{"unknown pod", "shop-nope-1", agent.ActionStop, "no such pod"},
		{"another node's pod", other, agent.ActionStop, "runs on node n2"},
		{"unknown action", name, "pause", "unknown action"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := e.a.PodAction(ctx, tt.pod, tt.action, nil); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("PodAction(%s, %s) = %v, want an error with %q", tt.pod, tt.action, err, tt.wantErr)
			}
		})
	}
}

func TestExecInPod(t *testing.T) {
	e := newEnv(t)
	name := e.deploy(spec("web", ""), 1, node)
	e.run()
	e.waitRunning(name, 0)
	var out bytes.Buffer
	code, err := e.a.Exec(context.Background(), name, api.ExecRequest{Cmd: []string{"echo", "hi"}},
		api.IO{Stdin: strings.NewReader("input\n"), Stdout: &out, Stderr: &out})
	if err != nil || code != 0 || out.String() != "echo hi\ninput\n" {
		t.Fatalf("Exec = %d, %v, output %q", code, err, out.String())
	}
	if _, err := e.a.PodAction(context.Background(), name, agent.ActionStop, nil); err != nil {
		t.Fatal(err)
	}
	_, err = e.a.Exec(context.Background(), name, api.ExecRequest{Cmd: []string{"true"}}, api.IO{Stdout: &out, Stderr: &out})
	if err == nil || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("Exec in a stopped pod = %v, want a 'not running' error", err)
	}
}

func TestRunOneOffIsNoReplicaAndIsCleanedUp(t *testing.T) {
	e := newEnv(t)
	s := spec("web", "")
	name := e.deploy(s, 1, node)
	e.run()
	e.waitRunning(name, 0)
	ctx := context.Background()

	var out bytes.Buffer
	stdio := api.IO{Stdout: &out, Stderr: &out}
	code, err := e.a.RunOneOff(ctx, "shop", "web", api.RunRequest{Cmd: []string{"migrate"}, Rm: true}, stdio)
	if err != nil || code != 0 || out.String() != "migrate\n" {
		t.Fatalf("RunOneOff = %d, %v, output %q", code, err, out.String())
	}
	cs, _ := e.d.List(ctx)
	if len(cs) != 1 || cs[0].Name != name {
		t.Fatalf("after a --rm one-off: containers %v, want only %s", cs, name)
	}
	if pods := e.st.Pods(state.PodFilter{}); len(pods) != 1 {
		t.Fatalf("a one-off got a pod record: %v", pods)
	}

	// A name that is not a one-off's is refused (creating would replace it).
	if _, err := e.a.RunOneOff(ctx, "shop", "web", api.RunRequest{Name: name}, stdio); err == nil || !strings.Contains(err.Error(), "invalid one-off pod name") {
		t.Errorf("RunOneOff named %s = %v; want an invalid name error", name, err)
	}

	// --rm=false: kept while the project exists, even across resyncs...
	keep := api.OneOffName("shop", "web")
	if _, err := e.a.RunOneOff(ctx, "shop", "web", api.RunRequest{Name: keep, Cmd: []string{"x"}}, stdio); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, ok := e.d.container(keep); !ok {
		t.Fatalf("gc removed the --rm=false one-off %s of a deployed project", keep)
	}
	// ...and removed once the project is gone (dev down).
	e.apply(&state.DeleteProject{Name: "shop"})
	eventually(t, "one-off removed after dev down", func() error {
		if _, ok := e.d.container(keep); ok {
			return fmt.Errorf("%s still there", keep)
		}
		return nil
	})

}

// TestNoStartCreatesWithoutStarting: a pod of `dev up --no-start` (its
// controller CreateStopped, the pod Stopped) gets its container created and
// never started, reported stopped; dev start starts that container.
func TestNoStartCreatesWithoutStarting(t *testing.T) {
	e := newEnv(t)
	s := spec("web", "")
	name := api.PodName(s.Project, s.Name, 1)
	e.services[s.Project] = []api.ServiceSpec{s}
	e.apply(
		&state.ApplyProject{Project: api.Project{Name: s.Project, Services: []api.ServiceSpec{s}, NoStart: true}},
		&state.CreatePods{Pods: []api.Pod{{
			Name: name, Project: s.Project, Service: s.Name, Index: 1, SpecHash: s.Hash(), Stopped: true,
			Labels: map[string]string{api.LabelProject: s.Project, api.LabelService: s.Name, api.LabelPod: name},
			Status: api.PodStatus{State: api.PodPending},
		}}},
		&state.AssignPods{Nodes: map[string]string{name: node}},
	)
	e.run()
	e.waitStopped(name)
	c, ok := e.d.container(name)
	if !ok || c.State != "created" {
		t.Fatalf("container %+v (found %v), want one created", c, ok)
	}
	if n := e.d.count("start", name); n != 0 {
		t.Fatalf("the worker started a --no-start pod: %v", e.d.callsFor(name))
	}
	if _, err := e.a.PodAction(context.Background(), name, agent.ActionStart, nil); err != nil {
		t.Fatalf("start: %v", err)
	}
	if got := e.waitRunning(name, 0); got.ID != c.ID {
		t.Fatalf("start replaced the container: %s -> %s", c.ID, got.ID)
	}
}
