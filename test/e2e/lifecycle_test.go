package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
)

// sessResult is one CLI run: its streams and exit code.
type sessResult struct {
	stdout, stderr string
	code           int
}

func (r sessResult) String() string {
	return fmt.Sprintf("exit %d\nstdout: %q\nstderr: %q", r.code, r.stdout, r.stderr)
}

// sessRun runs cmd with stdin (none when empty), bounded to a minute, and
// returns what it printed and its exit code.
func sessRun(t *testing.T, cmd *exec.Cmd, stdin string) sessResult {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	res := sessResult{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run %v: %v", cmd.Args, err)
	}
	return res
}

// sess runs the CLI against c from dir ("": the test's directory).
func (c *cluster) sess(stdin, dir string, args ...string) sessResult {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, devBin, args...)
	cmd.Env = c.env()
	cmd.Dir = dir
	return sessRun(c.t, cmd, stdin)
}

// oneOffContainers lists the one-off (dev run) containers of a project.
func (c *cluster) oneOffContainers(project string) []container.Summary {
	c.t.Helper()
	var out []container.Summary
	for _, ct := range c.containers(project) {
		if ct.Labels["dev.oneoff"] == "true" {
			out = append(out, ct)
		}
	}
	return out
}

func TestExec(t *testing.T) {
	c := newCluster(t)
	c.mustDev("up", "-d", "-f", fixture("basic"))

	cases := []struct {
		name       string
		stdin      string
		dir        bool // run from a directory without a compose file
		args       []string
		wantCode   int
		wantCodeIn []int // any of these (instead of wantCode)
		wantOut    string
		notOut     string
		wantErr    string
	}{
		{name: "exit code passed back", args: []string{"web", "/app", "exit", "3"}, wantCode: 3, wantOut: "testapp: exit 3\n"},
		{name: "SERVICE.N picks the pod", args: []string{"web.2", "/app", "cat", "/etc/hostname"}, wantOut: "e2ebasic-web-2"},
		{name: "SERVICE picks the first running pod", args: []string{"web", "/app", "cat", "/etc/hostname"}, wantOut: "e2ebasic-web-1"},
		{name: "flags after SERVICE belong to the command", args: []string{"-e", "X_E2E=42", "worker", "/app", "cat", "/proc/self/environ"}, wantOut: "X_E2E=42"},
		{name: "a tty turns newlines into CRLF", args: []string{"-t", "web", "/app", "exit", "0"}, wantOut: "testapp: exit 0\r\n"},
		{name: "no tty, no CR", args: []string{"web", "/app", "exit", "0"}, wantOut: "testapp: exit 0\n", notOut: "\r"},
		{name: "stdin with -i", stdin: "hello stdin\n", args: []string{"-i", "web", "/app", "cat", "/dev/stdin"}, wantOut: "hello stdin\n"},
		{name: "missing command", args: []string{"web", "/nope"}, wantCodeIn: []int{126, 127}},
		{name: "full pod name from anywhere", dir: true, args: []string{"e2ebasic-worker-1", "/app", "exit", "4"}, wantCode: 4},
		{name: "unknown service", args: []string{"nosuch", "/app", "exit", "0"}, wantCode: 1, wantErr: "no pod or service nosuch"},
		{name: "no such pod number", args: []string{"web.9", "/app", "exit", "0"}, wantCode: 1, wantErr: "no pod number 9"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"exec"}, tc.args...)
			dir := ""
			if tc.dir {
				dir = t.TempDir()
			} else {
				args = append([]string{"exec", "-p", "e2ebasic"}, tc.args...)
			}
			res := c.sess(tc.stdin, dir, args...)
			if tc.wantCodeIn != nil {
				ok := false
				for _, w := range tc.wantCodeIn {
					ok = ok || res.code == w
				}
				if !ok {
					t.Fatalf("dev %v: want exit code in %v, got %s", args, tc.wantCodeIn, res)
				}
			} else if res.code != tc.wantCode {
				t.Fatalf("dev %v: want exit code %d, got %s", args, tc.wantCode, res)
			}
			if !strings.Contains(res.stdout, tc.wantOut) {
				t.Errorf("dev %v: stdout lacks %q: %s", args, tc.wantOut, res)
			}
			if tc.notOut != "" && strings.Contains(res.stdout, tc.notOut) {
				t.Errorf("dev %v: stdout has %q: %s", args, tc.notOut, res)
			}
			if !strings.Contains(res.stderr, tc.wantErr) {
				t.Errorf("dev %v: stderr lacks %q: %s", args, tc.wantErr, res)
			}
		})
	}
}

func TestRun(t *testing.T) {
	c := newCluster(t)
	c.mustDev("up", "-d", "-f", fixture("basic"))
	before := podNames(c.ps("e2ebasic"))

	// The command's exit code, and no container left behind (--rm).
	res := c.sess("", "", "run", "-p", "e2ebasic", "web", "exit", "5")
	if res.code != 5 || !strings.Contains(res.stdout, "testapp: exit 5") {
		t.Fatalf("dev run web exit 5: %s", res)
	}
	if left := c.oneOffContainers("e2ebasic"); len(left) != 0 {
		t.Fatalf("dev run --rm left %d containers: %v", len(left), left[0].Names)
	}

	// From the service's template: its environment and secrets, plus -e; and
	// the cluster's env-var discovery.
	res = c.sess("", "", "run", "-p", "e2ebasic", "-e", "X_E2E=1", "worker", "cat", "/proc/self/environ")
	for _, want := range []string{"ROLE=worker", "X_E2E=1", "WEB_SERVICE_HOST=10.216."} {
		if res.code != 0 || !strings.Contains(res.stdout, want) {
			t.Errorf("dev run worker: environment lacks %q: %s", want, res)
		}
	}
	res = c.sess("", "", "run", "-p", "e2ebasic", "worker", "cat", "/run/secrets/token")
	if res.code != 0 || strings.TrimSpace(res.stdout) != "s3cret-token" {
		t.Errorf("dev run worker cat secret: %s", res)
	}
	// stdin, and a TTY.
	res = c.sess("one-off input\n", "", "run", "-p", "e2ebasic", "-i", "web", "cat", "/dev/stdin")
	if res.code != 0 || res.stdout != "one-off input\n" {
		t.Errorf("dev run -i web cat /dev/stdin: %s", res)
	}
	res = c.sess("", "", "run", "-p", "e2ebasic", "-t", "web", "exit", "0")
	if res.code != 0 || !strings.Contains(res.stdout, "testapp: exit 0\r\n") {
		t.Errorf("dev run -t: want CRLF output of a TTY: %s", res)
	}
	// A command that does not exist: 127, as docker run.
	res = c.sess("", "", "run", "-p", "e2ebasic", "--entrypoint", "/nope", "web")
	if res.code != 127 {
		t.Errorf("dev run --entrypoint /nope: want exit 127: %s", res)
	}
	if left := c.oneOffContainers("e2ebasic"); len(left) != 0 {
		t.Fatalf("one-off runs left %d containers: %v", len(left), left[0].Names)
	}
	// The one-offs were no replicas: the pods are the same.
	if after := podNames(c.ps("e2ebasic")); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Fatalf("pods changed across one-off runs: %v -> %v", before, after)
	}

	// --rm=false keeps the exited container; dev down removes it.
	res = c.sess("", "", "run", "-p", "e2ebasic", "--rm=false", "web", "exit", "0")
	if res.code != 0 {
		t.Fatalf("dev run --rm=false: %s", res)
	}
	kept := c.oneOffContainers("e2ebasic")
	if len(kept) != 1 || kept[0].State != "exited" || !strings.Contains(kept[0].Names[0], "e2ebasic-web-run-") {
		t.Fatalf("dev run --rm=false: want one exited e2ebasic-web-run-* container, got %+v", kept)
	}
	time.Sleep(3 * time.Second) // a resync or so: the agent keeps it
	if len(c.oneOffContainers("e2ebasic")) != 1 {
		t.Fatalf("the agent removed a --rm=false one-off container of a deployed project")
	}
	c.mustDev("down", "-p", "e2ebasic")
	eventually(t, 20*time.Second, "one-off container removed after dev down", func() error {
		if n := len(c.containers("e2ebasic")); n != 0 {
			return fmt.Errorf("%d containers left", n)
		}
		return nil
	})

	// Unknown service.
	c.mustDev("up", "-d", "-f", fixture("basic"))
	res = c.sess("", "", "run", "-p", "e2ebasic", "nosuch", "exit", "0")
	if res.code != 1 || !strings.Contains(res.stderr, "no service nosuch") {
		t.Errorf("dev run nosuch: %s", res)
	}
}

// lcInspect returns a container's ID, state and start time.
func (c *cluster) lcInspect(name string) (id, state, started string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ins, err := c.docker.ContainerInspect(ctx, name)
	if err != nil {
		c.t.Fatalf("inspect %s: %v", name, err)
	}
	return ins.ID, ins.State.Status, ins.State.StartedAt
}

func TestLifecycleStopStartRestart(t *testing.T) {
	c := newCluster(t)
	c.mustDev("up", "-d", "-f", fixture("basic"))
	web1, _, _ := c.lcInspect("e2ebasic-web-1")

	// stop: the containers stay, exited; dev ps shows it; nothing replaces them.
	out := c.mustDev("stop", "-p", "e2ebasic", "web")
	if !strings.Contains(out, "stopped e2ebasic-web-1") || !strings.Contains(out, "stopped e2ebasic-web-2") {
		t.Fatalf("dev stop web printed:\n%s", out)
	}
	checkStopped := func(when string) {
		t.Helper()
		rows := c.ps("e2ebasic")
		web := 0
		for _, r := range rows {
			switch r.Service {
			case "web":
				web++
				if r.State != "exited" || r.Message != "stopped (dev stop)" {
					t.Fatalf("%s: %s is %s %q, want exited \"stopped (dev stop)\"", when, r.Name, r.State, r.Message)
				}
			case "worker":
				if r.State != "running" {
					t.Fatalf("%s: worker is %s, want running (only web was stopped)", when, r.State)
				}
			}
		}
		if web != 2 {
			t.Fatalf("%s: %d web pods, want the 2 stopped ones", when, web)
		}
		for _, name := range []string{"e2ebasic-web-1", "e2ebasic-web-2"} {
			if _, state, _ := c.lcInspect(name); state != "exited" {
				t.Fatalf("%s: container %s is %s, want exited", when, name, state)
			}
		}
	}
	checkStopped("after dev stop")
	time.Sleep(12 * time.Second) // several agent resyncs (2s with --fast) and controller passes
	checkStopped("12s after dev stop")
	res := c.sess("", "", "exec", "-p", "e2ebasic", "web", "/app", "exit", "0")
	if res.code != 1 || !strings.Contains(res.stderr, "no running pod") {
		t.Errorf("exec in a stopped service: %s", res)
	}

	// Stopped pods stay stopped across an agent restart.
	c.stopAgent()
	c.startAgent()
	time.Sleep(5 * time.Second)
	checkStopped("after an agent restart")

	// start: the same containers run again.
	out = c.mustDev("start", "-p", "e2ebasic", "web")
	if !strings.Contains(out, "started e2ebasic-web-1 (") {
		t.Fatalf("dev start web printed:\n%s", out)
	}
	rows := running(c.ps("e2ebasic"), "web")
	if len(rows) != 2 {
		t.Fatalf("after dev start: running web pods %v", podNames(rows))
	}
	if id, state, _ := c.lcInspect("e2ebasic-web-1"); id != web1 || state != "running" {
		t.Fatalf("after dev start: e2ebasic-web-1 is %s %s, want the same container %s running", id[:12], state, web1[:12])
	}

	// restart: same container, a new start time, not counted as a crash.
	wid, _, started := c.lcInspect("e2ebasic-worker-1")
	before := running(c.ps("e2ebasic"), "worker")[0]
	out = c.mustDev("restart", "-p", "e2ebasic", "-t", "2", "worker")
	if !strings.Contains(out, "restarted e2ebasic-worker-1 (running)") {
		t.Fatalf("dev restart worker printed:\n%s", out)
	}
	id, state, started2 := c.lcInspect("e2ebasic-worker-1")
	if id != wid || state != "running" || started2 == started {
		t.Fatalf("after dev restart: worker container %s %s started %s; want %s running, started after %s", id[:12], state, started2, wid[:12], started)
	}
	after := running(c.ps("e2ebasic"), "worker")
	if len(after) != 1 || after[0].Restarts != before.Restarts {
		t.Fatalf("after dev restart: worker pods %+v, want one running with restarts %d", after, before.Restarts)
	}

	// dev up starts stopped pods again, as docker compose up does.
	c.mustDev("stop", "-p", "e2ebasic")
	if n := len(running(c.ps("e2ebasic"), "web")) + len(running(c.ps("e2ebasic"), "worker")); n != 0 {
		t.Fatalf("after dev stop (all): %d pods running", n)
	}
	c.mustDev("up", "-d", "-f", fixture("basic"))
	wantRunning(c, "e2ebasic", "web", 2, 30*time.Second)
	wantRunning(c, "e2ebasic", "worker", 1, 30*time.Second)

	// Errors: an unknown service changes nothing.
	res = c.sess("", "", "stop", "-p", "e2ebasic", "nosuch")
	if res.code != 1 || !strings.Contains(res.stderr, "no pods of service nosuch") {
		t.Errorf("dev stop nosuch: %s", res)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := c.docker.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "dev.project=e2ebasic"))})
	if err != nil || len(cs) != 3 {
		t.Fatalf("after dev stop nosuch: %d running containers (%v), want 3", len(cs), err)
	}
}
