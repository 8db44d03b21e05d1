package agent_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/agent"
	"github.com/devhq/dev/cluster/api"
)

// TestKillPod: `dev kill` (SIGKILL) leaves a restart: always pod exited
// with 137 and recorded stopped, as the Engine leaves a killed container
// and `docker compose start` brings it back; a signal the process handles
// (SIGHUP) stops nothing, and an exit it causes is restarted per policy.
func TestKillPod(t *testing.T) {
	e := newEnv(t)
	s := spec("web", api.RestartAlways)
	s.Sidecars = []api.ServiceSpec{spec("logs", api.RestartAlways)}
	name := e.deploy(s, 1, node)
	e.run()
	c := e.waitRunning(name, 0)
	ctx := context.Background()

	p, err := e.a.KillPod(ctx, name, "hup")
	if err != nil {
		t.Fatalf("kill -s hup: %v", err)
	}
	if p.Stopped || p.Status.State != api.PodRunning {
		t.Fatalf("after SIGHUP: stopped=%v status %+v, want running", p.Stopped, p.Status)
	}
	var sigs []string
	for _, cl := range e.d.callsFor(name) {
		if cl.Op == "kill" {
			sigs = append(sigs, cl.Signal)
		}
	}
	// The sidecar's and the service's container (the fake records both
	// under the pod).
	if got := strings.Join(sigs, ","); got != "SIGHUP,SIGHUP" {
		t.Errorf("signals sent %s, want SIGHUP to the sidecar and the service", got)
	}
	e.d.exit(name, 129) // the process ended on it: restarted, as policy says
	e.waitRunning(name, 1)

	p, err = e.a.KillPod(ctx, name, "")
	if err != nil {
		t.Fatalf("kill: %v", err)
	}
	if !p.Stopped || p.Status.State != api.PodExited || p.Status.ExitCode != 137 || p.Status.Message != agent.StoppedMessage {
		t.Fatalf("after kill: stopped=%v status %+v, want exited 137 %q", p.Stopped, p.Status, agent.StoppedMessage)
	}
	if got, _ := e.d.container(name); got.ID != c.ID || got.State != "exited" {
		t.Fatalf("container %s %s, want %s exited", got.ID, got.State, c.ID)
	}

	// A stopped pod has nothing to kill: the error says how to start it.
	if _, err := e.a.KillPod(ctx, name, ""); err == nil || !strings.Contains(err.Error(), "dev start web") {
		t.Errorf("kill of a killed pod = %v, want an error naming dev start", err)
	}
	if _, err := e.a.PodAction(ctx, name, agent.ActionStart, nil); err != nil {
		t.Fatalf("start after kill: %v", err)
	}
	e.waitRunning(name, 1)
}

// TestKillPodStopSignal: the service's own stop signal stops the pod as
// SIGKILL does; SIGTERM is then a signal like any other.
func TestKillPodStopSignal(t *testing.T) {
	e := newEnv(t)
	s := spec("web", api.RestartAlways)
	s.StopSignal = "SIGUSR1"
	name := e.deploy(s, 1, node)
	e.run()
	e.waitRunning(name, 0)
	ctx := context.Background()

	// SIGTERM ends the fake's process; not the stop signal: restarted.
	if _, err := e.a.KillPod(ctx, name, "TERM"); err != nil {
		t.Fatal(err)
	}
	e.waitRunning(name, 1)
	p, err := e.a.KillPod(ctx, name, "usr1")
	if err != nil {
		t.Fatal(err)
	}
	if !p.Stopped {
		t.Fatalf("after the stop signal: %+v, want the pod recorded stopped", p)
	}
	if _, err := e.a.KillPod(ctx, name, "SIGNOPE"); err == nil || !strings.Contains(err.Error(), "unknown signal") {
		t.Errorf("kill -s SIGNOPE = %v, want unknown signal", err)
	}
}

// TestKillPodExitCode: `dev kill` waits for the process to die of SIGKILL
// (it takes a moment on a real Engine) before the pod is recorded stopped:
// the pod's worker must not stop it gracefully meanwhile, and the exit
// code is the kill's, 137, its sidecar's too.
func TestKillPodExitCode(t *testing.T) {
	e := newEnv(t)
	s := spec("web", api.RestartAlways)
	s.Sidecars = []api.ServiceSpec{spec("logs", api.RestartAlways)}
	name := e.deploy(s, 1, node)
	e.run()
	e.waitRunning(name, 0)
	sc := api.SidecarContainer(name, "logs")
	eventually(t, "sidecar running", func() error {
		if c, ok := e.d.container(sc); !ok || c.State != "running" {
			return fmt.Errorf("sidecar %+v", c)
		}
		return nil
	})
	e.d.setExitDelay(50 * time.Millisecond)

	p, err := e.a.KillPod(context.Background(), name, "")
	if err != nil {
		t.Fatalf("kill: %v", err)
	}
	if !p.Stopped || p.Status.State != api.PodExited || p.Status.ExitCode != 137 {
		t.Fatalf("after kill: stopped=%v status %+v, want stopped, exited 137", p.Stopped, p.Status)
	}
	if n := e.d.count("stop", name); n != 0 {
		t.Errorf("%d graceful stops of the killed pod, want none", n)
	}
	if c, _ := e.d.container(sc); c.State != "exited" || c.ExitCode != 137 {
		t.Errorf("sidecar %s %d, want exited 137 (killed, not restarted)", c.State, c.ExitCode)
	}
}

// TestKillPodIgnoredStopSignal: `dev kill -s TERM` to a process that
// ignores SIGTERM leaves it running and the pod not stopped, as `docker
// compose kill -s TERM` does: never a graceful stop (`dev stop`) instead.
func TestKillPodIgnoredStopSignal(t *testing.T) {
	e := newEnv(t)
	s := spec("web", api.RestartAlways)
	grace := api.Duration(200 * time.Millisecond)
	s.StopGracePeriod = &grace
	name := e.deploy(s, 1, node)
	e.run()
	c := e.waitRunning(name, 0)
	e.d.ignore(name)

	p, err := e.a.KillPod(context.Background(), name, "TERM")
	if err != nil {
		t.Fatalf("kill -s TERM: %v", err)
	}
	if p.Stopped {
		t.Errorf("after an ignored SIGTERM: the pod is recorded stopped, want running on")
	}
	if n := e.d.count("stop", name); n != 0 {
		t.Errorf("%d graceful stops after an ignored SIGTERM, want none", n)
	}
	if got, _ := e.d.container(name); got.ID != c.ID || got.State != "running" {
		t.Errorf("container %s %s, want %s running", got.ID, got.State, c.ID)
	}
}

// TestPausePod: pause freezes the pod's containers, which stay running for
// everyone (status running, paused); exec says to unpause; unpause thaws.
func TestPausePod(t *testing.T) {
	e := newEnv(t)
	s := spec("web", "")
	s.Sidecars = []api.ServiceSpec{spec("logs", "")}
	name := e.deploy(s, 1, node)
	e.run()
	e.waitRunning(name, 0)
	ctx := context.Background()
	eventually(t, "sidecar running", func() error {
		if p, _ := e.pod(name); len(p.Status.Sidecars) != 1 || p.Status.Sidecars[0].State != api.PodRunning {
			return fmt.Errorf("status %+v", p.Status)
		}
		return nil
	})

	p, err := e.a.PausePod(ctx, name, true)
	if err != nil {
		t.Fatalf("pause: %v", err)
	}
	if p.Status.State != api.PodRunning || !p.Status.Paused || !p.Status.Sidecars[0].Paused {
		t.Fatalf("after pause: %+v, want running and paused, its sidecar too", p.Status)
	}
	if c, _ := e.d.container(api.SidecarContainer(name, "logs")); c.State != agent.StatePaused {
		t.Errorf("sidecar container %s, want paused", c.State)
	}
	_, err = e.a.Exec(ctx, name, api.ExecRequest{Cmd: []string{"true"}}, api.IO{})
	if err == nil || !strings.Contains(err.Error(), "dev unpause web") {
		t.Errorf("exec in a paused pod = %v, want an error naming dev unpause", err)
	}
	if _, err := e.a.PausePod(ctx, name, true); err != nil {
		t.Errorf("pause of a paused pod: %v, want nothing done", err)
	}

	p, err = e.a.PausePod(ctx, name, false)
	if err != nil {
		t.Fatalf("unpause: %v", err)
	}
	if p.Status.State != api.PodRunning || p.Status.Paused || p.Status.Sidecars[0].Paused || p.Status.Restarts != 0 {
		t.Fatalf("after unpause: %+v, want running, not paused, no restart", p.Status)
	}
}

// TestTopPod: the processes of the service's container, then its
// sidecars'; a stopped pod has none and the error says so.
func TestTopPod(t *testing.T) {
	e := newEnv(t)
	s := spec("web", "")
	s.Sidecars = []api.ServiceSpec{spec("logs", "")}
	name := e.deploy(s, 1, node)
	e.run()
	e.waitRunning(name, 0)
	ctx := context.Background()
	sc := api.SidecarContainer(name, "logs")
	eventually(t, "sidecar running", func() error {
		if c, ok := e.d.container(sc); !ok || c.State != "running" {
			return fmt.Errorf("sidecar %+v", c)
		}
		return nil
	})
	top, err := e.a.TopPod(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if top.Pod != name || top.Service != "web" || top.Node != node || len(top.Containers) != 2 ||
		top.Containers[0].Container != "web" || top.Containers[0].Processes[0][1] != name ||
		top.Containers[1].Container != "logs" || top.Containers[1].Processes[0][1] != sc {
		t.Fatalf("top = %+v", top)
	}
	if _, err := e.a.PodAction(ctx, name, agent.ActionStop, nil); err != nil {
		t.Fatal(err)
	}
	e.waitStopped(name)
	if _, err := e.a.TopPod(ctx, name); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("top of a stopped pod = %v, want not running", err)
	}
}

// TestPodImages: the image of the service's container, then its
// sidecar's, whether the pod runs or not.
func TestPodImages(t *testing.T) {
	e := newEnv(t)
	s := spec("web", "")
	s.Image = "shop-web:1.2"
	side := spec("logs", "")
	side.Image = "shop-logs"
	s.Sidecars = []api.ServiceSpec{side}
	name := e.deploy(s, 1, node)
	e.run()
	e.waitRunning(name, 0)
	ctx := context.Background()
	sc := api.SidecarContainer(name, "logs")
	eventually(t, "sidecar made", func() error {
		if _, ok := e.d.container(sc); !ok {
			return fmt.Errorf("no sidecar container")
		}
		return nil
	})
	want := []api.ContainerImage{
		{Container: "web", Repository: "shop-web:1.2", Tag: "latest", ImageID: "sha256:shop-web:1.2", Size: 12},
		{Container: "logs", Repository: "shop-logs", Tag: "latest", ImageID: "sha256:shop-logs", Size: 9},
	}
	check := func(when string) {
		t.Helper()
		got, err := e.a.PodImages(ctx, name)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if got.Pod != name || got.Service != "web" || got.Node != node || !slices.Equal(got.Containers, want) {
			t.Fatalf("%s: images = %+v, want containers %+v", when, got, want)
		}
	}
	check("running")
	if _, err := e.a.PodAction(ctx, name, agent.ActionStop, nil); err != nil {
		t.Fatal(err)
	}
	e.waitStopped(name)
	check("stopped")
	if _, err := e.a.PodImages(ctx, "nope-web-1"); err == nil || !strings.Contains(err.Error(), "no such pod") {
		t.Errorf("images of no pod = %v", err)
	}
}
