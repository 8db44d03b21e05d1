package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/volume"

	"github.com/devhq/dev/cluster/api"
)

// httpGet fetches a URL on a pod IP (the host reaches the pod bridge).
func httpGet(url string) (string, error) { return httpGetHost(url, "") }

// httpGetHost is httpGet with a Host header (when not empty), as a
// browser sends for a name the ingress routes; an answer other than 200
// is an error.
func httpGetHost(url, host string) (string, error) {
	// A new connection per request: the node proxy balances connections.
	c := http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && host != "" && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s (host %s): %s: %s", url, host, resp.Status, b)
	}
	return string(b), err
}

func podNames(rows []podRow) []string {
	var names []string
	for _, r := range rows {
		names = append(names, r.Name)
	}
	sort.Strings(names)
	return names
}

func wantRunning(c *cluster, project, service string, n int, timeout time.Duration) []podRow {
	c.t.Helper()
	var got []podRow
	eventually(c.t, timeout, fmt.Sprintf("%d running %s pods", n, service), func() error {
		rows := c.ps(project)
		got = running(rows, service)
		var all []podRow
		for _, r := range rows {
			if r.Service == service {
				all = append(all, r)
			}
		}
		if len(got) != n || len(all) != n {
			return fmt.Errorf("running %v of %v", podNames(got), podNames(all))
		}
		return nil
	})
	return got
}

func TestUpScaleRepairDown(t *testing.T) {
	c := newCluster(t)
	out := c.mustDev("up", "-d", "-f", fixture("basic"))
	t.Logf("dev up -d:\n%s", out)

	// up -d returns once every pod runs, web pods healthy.
	rows := c.ps("e2ebasic")
	web, worker := running(rows, "web"), running(rows, "worker")
	if got := podNames(web); strings.Join(got, ",") != "e2ebasic-web-1,e2ebasic-web-2" {
		t.Fatalf("web pods = %v, want e2ebasic-web-1,e2ebasic-web-2 running", got)
	}
	if len(worker) != 1 {
		t.Fatalf("worker pods = %v, want 1 running", podNames(worker))
	}
	// dev ls: the project with its pods' states, as docker compose ls.
	if out := c.mustDev("ls"); !regexp.MustCompile(`(?m)^e2ebasic\s+running\(3\)\s+2$`).MatchString(out) {
		t.Errorf("dev ls:\n%s\nwant e2ebasic running(3) with 2 services", out)
	}
	for _, p := range web {
		if p.Health != "healthy" {
			t.Errorf("%s health = %q, want healthy", p.Name, p.Health)
		}
		for k, v := range map[string]string{"dev.project": "e2ebasic", "dev.service": "web", "dev.pod": p.Name, "dev.node": c.node, "tier": "front"} {
			if p.Labels[k] != v {
				t.Errorf("%s label %s = %q, want %q", p.Name, k, p.Labels[k], v)
			}
		}
		if !strings.HasPrefix(p.IP, "10.215.") {
			t.Errorf("%s ip = %q, want an address of the pod network %s", p.Name, p.IP, e2eCIDR)
		}
		body, err := httpGet("http://" + p.IP + ":8080/")
		if err != nil || !strings.Contains(body, "hello from") {
			t.Errorf("GET pod %s: %q, %v", p.Name, body, err)
		}
	}
	env, err := httpGet("http://" + web[0].IP + ":8080/env")
	if err != nil || !strings.Contains(env, "GREETING=hi") {
		t.Errorf("web env lacks GREETING=hi: %q %v", env, err)
	}
	secret, err := httpGet("http://" + worker[0].IP + ":8080/file?path=/run/secrets/token")
	if err != nil || strings.TrimSpace(secret) != "s3cret-token" {
		t.Errorf("secret at /run/secrets/token = %q, %v", secret, err)
	}
	// Container labels on the Engine.
	for _, ct := range c.containers("e2ebasic") {
		if ct.Labels["dev.node"] != c.node || ct.Labels["dev.pod"] == "" || ct.Labels["dev.service"] == "" {
			t.Errorf("container %v labels = %v", ct.Names, ct.Labels)
		}
	}

	// Scale 2 -> 4 -> 1 -> 3.
	for _, n := range []int{4, 1, 3} {
		c.mustDev("scale", "-p", "e2ebasic", fmt.Sprintf("web=%d", n))
		got := wantRunning(c, "e2ebasic", "web", n, 30*time.Second)
		var want []string
		for i := 1; i <= n; i++ {
			want = append(want, fmt.Sprintf("e2ebasic-web-%d", i))
		}
		if strings.Join(podNames(got), ",") != strings.Join(want, ",") {
			t.Errorf("after scale web=%d pods = %v, want %v", n, podNames(got), want)
		}
		if cs := len(c.containers("e2ebasic")); cs != n+1 {
			t.Errorf("after scale web=%d: %d containers on the Engine, want %d", n, cs, n+1)
		}
	}
	// A service with a secret: the API lists its template redacted, and
	// scale still waits for the right pods (it once waited out its timeout).
	c.mustDev("scale", "-p", "e2ebasic", "--timeout", "60s", "worker=2")
	wantRunning(c, "e2ebasic", "worker", 2, 30*time.Second)
	c.mustDev("scale", "-p", "e2ebasic", "--timeout", "60s", "worker=1")
	wantRunning(c, "e2ebasic", "worker", 1, 30*time.Second)

	// A container removed behind dev's back is replaced.
	ctx := context.Background()
	victim := running(c.ps("e2ebasic"), "web")[0]
	if err := c.docker.ContainerRemove(ctx, "e2ebasic-web-1", container.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	eventually(t, 20*time.Second, "removed container replaced", func() error {
		for _, p := range running(c.ps("e2ebasic"), "web") {
			if p.Name == victim.Name && p.ContainerID != victim.ContainerID {
				return nil
			}
		}
		return fmt.Errorf("%s not running with a new container", victim.Name)
	})
	t.Logf("removed container replaced in %s", time.Since(start).Round(10*time.Millisecond))

	// A container whose process dies is restarted in place (restart: always default).
	before := running(c.ps("e2ebasic"), "worker")[0]
	if err := c.docker.ContainerKill(ctx, "e2ebasic-worker-1", "KILL"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "killed container restarted", func() error {
		for _, p := range running(c.ps("e2ebasic"), "worker") {
			if p.Restarts > before.Restarts {
				return nil
			}
		}
		return fmt.Errorf("worker not restarted")
	})

	// down removes every container; the named volume stays without -v.
	c.mustDev("down", "-p", "e2ebasic")
	if cs := c.containers("e2ebasic"); len(cs) != 0 {
		t.Fatalf("after down: %d containers left", len(cs))
	}
	if _, err := c.docker.VolumeInspect(ctx, "e2ebasic_data"); err != nil {
		t.Fatalf("named volume removed by down without -v: %v", err)
	}
	if rows := c.ps("e2ebasic"); len(rows) != 0 {
		t.Fatalf("after down: dev ps shows %v", podNames(rows))
	}
	// down -v removes it.
	c.mustDev("up", "-d", "-f", fixture("basic"))
	c.mustDev("down", "-v", "-f", fixture("basic"))
	if cs := c.containers("e2ebasic"); len(cs) != 0 {
		t.Fatalf("after down -v: %d containers left", len(cs))
	}
	vols, err := c.docker.VolumeList(ctx, volume.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vols.Volumes {
		if strings.HasPrefix(v.Name, "e2ebasic_") {
			t.Errorf("after down -v: volume %s left", v.Name)
		}
	}
}

func TestAgentRestartAdoptsContainers(t *testing.T) {
	c := newCluster(t)
	c.mustDev("up", "-d", "-f", fixture("basic"))
	ctx := context.Background()
	type seen struct{ id, started string }
	before := map[string]seen{}
	for _, ct := range c.containers("e2ebasic") {
		ins, err := c.docker.ContainerInspect(ctx, ct.ID)
		if err != nil {
			t.Fatal(err)
		}
		before[ins.Name] = seen{ins.ID, ins.State.StartedAt}
	}
	if len(before) != 3 {
		t.Fatalf("%d containers before restart, want 3", len(before))
	}

	c.stopAgent()
	c.startAgent()
	// Give the restarted agent a few resync periods to do anything wrong.
	time.Sleep(5 * time.Second)

	after := map[string]seen{}
	for _, ct := range c.containers("e2ebasic") {
		ins, err := c.docker.ContainerInspect(ctx, ct.ID)
		if err != nil {
			t.Fatal(err)
		}
		after[ins.Name] = seen{ins.ID, ins.State.StartedAt}
	}
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatalf("containers changed across an agent restart:\nbefore %v\nafter  %v", before, after)
	}
	rows := c.ps("e2ebasic")
	if len(running(rows, "web")) != 2 || len(running(rows, "worker")) != 1 {
		t.Fatalf("after agent restart dev ps = %+v", rows)
	}
	for _, r := range rows {
		if r.Restarts != 0 {
			t.Errorf("%s restarts = %d after adoption, want 0", r.Name, r.Restarts)
		}
	}
	// The restarted agent still manages: scaling works.
	c.mustDev("scale", "-p", "e2ebasic", "web=3")
	wantRunning(c, "e2ebasic", "web", 3, 30*time.Second)
}

func TestBadInputChangesNothing(t *testing.T) {
	c := newCluster(t)
	c.mustDev("up", "-d", "-f", fixture("basic"))
	snapshot := func() string {
		var ids []string
		for _, ct := range c.containers("e2ebasic") {
			ids = append(ids, ct.ID)
		}
		sort.Strings(ids)
		return strings.Join(ids, ",")
	}
	before := snapshot()

	cases := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"invalid yaml", []string{"up", "-d", "-f", fixture("broken")}, "compose.yaml:"},
		{"scale unknown service", []string{"scale", "-p", "e2ebasic", "nope=2"}, "nope"},
		{"scale negative", []string{"scale", "-p", "e2ebasic", "web=-1"}, ">= 0"},
		{"scale not a number", []string{"scale", "-p", "e2ebasic", "web=abc"}, "not a number"},
		{"scale bad syntax", []string{"scale", "-p", "e2ebasic", "web"}, "SERVICE=REPLICAS"},
		{"up --scale unknown", []string{"up", "-d", "-f", fixture("basic"), "--scale", "nope=3"}, "nope"},
		{"missing image", []string{"up", "-d", "-f", fixture("noimage")}, "dev-no-such-image:1"},
		{"no compose file", []string{"up", "-d", "--project-directory", t.TempDir()}, "no compose file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := ""
			if tc.name == "no compose file" {
				dir = t.TempDir()
			}
			out, err := c.devIn(dir, tc.args...)
			var ee *exec.ExitError
			if err == nil || !asExit(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("dev %v: err = %v, want exit code 1\n%s", tc.args, err, out)
			}
			if !strings.Contains(out, tc.wantErr) {
				t.Errorf("dev %v output lacks %q:\n%s", tc.args, tc.wantErr, out)
			}
			if n := strings.Count(strings.TrimSpace(out), "\n"); n > 3 {
				t.Errorf("error should be short, got %d lines:\n%s", n+1, out)
			}
		})
	}
	if after := snapshot(); after != before {
		t.Fatalf("bad input changed the deployment:\nbefore %s\nafter  %s", before, after)
	}
	if rows := c.ps("e2enoimage"); len(rows) != 0 {
		t.Fatalf("project with a missing image was partly deployed: %v", podNames(rows))
	}

	// An unreachable agent is reported with what to do.
	cmd := exec.Command(devBin, "ps")
	cmd.Env = append(os.Environ(), "DEV_HOST=unix:///nonexistent/dev.sock")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "dev agent") {
		t.Fatalf("unreachable agent: err=%v output %q, want advice naming `dev agent`", err, out)
	}
}

func asExit(err error, target **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	if ok {
		*target = e
	}
	return ok
}

func TestDependsOnOrder(t *testing.T) {
	c := newCluster(t)
	c.mustDev("up", "-d", "-f", fixture("deps"))
	rows := c.ps("e2edeps")
	states := map[string]string{}
	for _, r := range rows {
		states[r.Service] = r.State
	}
	if states["migrate"] != "exited" || states["db"] != "running" || states["app"] != "running" {
		t.Fatalf("states = %v, want migrate exited, db and app running", states)
	}
	ctx := context.Background()
	mig, err := c.docker.ContainerInspect(ctx, "e2edeps-migrate-1")
	if err != nil {
		t.Fatal(err)
	}
	app, err := c.docker.ContainerInspect(ctx, "e2edeps-app-1")
	if err != nil {
		t.Fatal(err)
	}
	db, err := c.docker.ContainerInspect(ctx, "e2edeps-db-1")
	if err != nil {
		t.Fatal(err)
	}
	finished, _ := time.Parse(time.RFC3339Nano, mig.State.FinishedAt)
	appStarted, _ := time.Parse(time.RFC3339Nano, app.State.StartedAt)
	dbStarted, _ := time.Parse(time.RFC3339Nano, db.State.StartedAt)
	if !appStarted.After(finished) {
		t.Errorf("app started %s, before migrate finished %s", appStarted, finished)
	}
	if !appStarted.After(dbStarted.Add(500 * time.Millisecond)) {
		t.Errorf("app started %s, too soon after db %s to have waited for its health", appStarted, dbStarted)
	}
	if mig.State.ExitCode != 0 || mig.RestartCount != 0 {
		t.Errorf("migrate exit %d restarts %d, want 0/0 (restart: no)", mig.State.ExitCode, mig.RestartCount)
	}
}

func TestUpAgainUpdatesOnlyChangedService(t *testing.T) {
	c := newCluster(t)
	c.mustDev("up", "-d", "-f", fixture("basic"))
	ids := func() map[string]string {
		m := map[string]string{}
		for _, ct := range c.containers("e2ebasic") {
			m[ct.Labels["dev.pod"]] = ct.ID
		}
		return m
	}
	before := ids()
	// Same file again: nothing changes.
	c.mustDev("up", "-d", "-f", fixture("basic"))
	if got := ids(); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("re-up of an unchanged file recreated containers:\nbefore %v\nafter  %v", before, got)
	}
	// Change worker's environment through an override file.
	override := t.TempDir() + "/override.yaml"
	if err := os.WriteFile(override, []byte("services:\n  worker:\n    environment:\n      ROLE: changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.mustDev("up", "-d", "-f", fixture("basic"), "-f", override)
	after := ids()
	for pod, id := range before {
		changed := after[pod] != id
		if strings.Contains(pod, "-worker-") != changed {
			t.Errorf("pod %s: container changed=%v; only worker pods should be recreated", pod, changed)
		}
	}
	w := running(c.ps("e2ebasic"), "worker")
	if len(w) != 1 {
		t.Fatalf("worker pods = %v", podNames(w))
	}
	env, err := httpGet("http://" + w[0].IP + ":8080/env")
	if err != nil || !strings.Contains(env, "ROLE=changed") {
		t.Fatalf("worker env after update: %q %v", env, err)
	}
	// --force-recreate replaces every pod; a plain up after it none.
	forced := ids()
	c.mustDev("up", "-d", "--force-recreate", "-f", fixture("basic"), "-f", override)
	eventually(t, 30*time.Second, "the replaced containers gone", func() error {
		if after = ids(); len(after) != len(forced) {
			return fmt.Errorf("containers %v", after)
		}
		return nil
	})
	for pod, id := range forced {
		if after[pod] == id {
			t.Errorf("pod %s kept its container through dev up --force-recreate", pod)
		}
	}
	c.mustDev("up", "-d", "-f", fixture("basic"), "-f", override)
	if got := ids(); fmt.Sprint(got) != fmt.Sprint(after) {
		t.Errorf("a plain up after --force-recreate recreated containers:\nbefore %v\nafter  %v", after, got)
	}
}

func TestAttachedUpStreamsLogsAndStopsOnInterrupt(t *testing.T) {
	c := newCluster(t)
	cmd := exec.Command(devBin, "up", "-f", fixture("basic"))
	cmd.Env = c.env()
	var out strings.Builder
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); pw.Close() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	lines := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := pr.Read(buf)
			if n > 0 {
				lines <- string(buf[:n])
			}
			if err != nil {
				close(lines)
				return
			}
		}
	}()
	deadline := time.After(60 * time.Second)
	for !strings.Contains(out.String(), "web-1") || !strings.Contains(out.String(), "| ") {
		select {
		case s, ok := <-lines:
			if !ok {
				t.Fatalf("dev up exited early:\n%s", out.String())
			}
			out.WriteString(s)
		case <-deadline:
			t.Fatalf("no prefixed log lines within 60s:\n%s", out.String())
		}
	}
	if len(running(c.ps("e2ebasic"), "web")) != 2 {
		t.Fatalf("web not running while attached")
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dev up after Ctrl-C: %v\n%s", err, out.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("dev up did not stop within 60s of Ctrl-C")
	}
	for s := range lines {
		out.WriteString(s)
	}
	if cs := c.containers("e2ebasic"); len(cs) != 0 {
		t.Fatalf("after Ctrl-C: %d containers left\n%s", len(cs), out.String())
	}
}

// TestCordon: a cordoned node takes no new pod (one that fits nowhere else
// waits with the reason) while what runs there stays; uncordoned, the
// waiting pod starts. dev node label lets a constrained pod start.
func TestCordon(t *testing.T) {
	c := newCluster(t)
	c.mustDev("up", "-d", "-f", fixture("basic"))
	before := running(c.ps("e2ebasic"), "web")
	if out := c.mustDev("node", "cordon", c.node); !strings.Contains(out, "cordoned") {
		t.Fatalf("dev node cordon: %s", out)
	}
	if out := c.mustDev("nodes"); !strings.Contains(out, "ready,cordoned") {
		t.Errorf("dev nodes after cordon:\n%s", out)
	}
	c.mustDev("scale", "-p", "e2ebasic", "-d", "web=3")
	eventually(t, 20*time.Second, "web-3 pending on the cordon", func() error {
		for _, p := range c.ps("e2ebasic") {
			if p.Name == "e2ebasic-web-3" {
				if p.Node != "" || !strings.Contains(p.Message, "node cordoned") {
					return fmt.Errorf("web-3 on %q: %q", p.Node, p.Message)
				}
				return nil
			}
		}
		return errors.New("no web-3 yet")
	})
	if now := running(c.ps("e2ebasic"), "web"); len(now) != len(before) || now[0].ContainerID != before[0].ContainerID {
		t.Errorf("running web pods changed on cordon: %v -> %v", before, now)
	}
	c.mustDev("node", "uncordon", c.node)
	wantRunning(c, "e2ebasic", "web", 3, 30*time.Second)
	if out, err := c.dev("node", "cordon", "nope"); err == nil || !strings.Contains(out, "no node nope") {
		t.Errorf("dev node cordon nope: %v\n%s", err, out)
	}

	// dev node label: a constraint on a label the node lacks keeps a pod
	// pending; labelled, the pod starts; the label outlives heartbeats.
	compose := writeTemp(t, "name: e2elabel\nservices:\n  gpu:\n    image: "+testImage+"\n    command: [\"serve\"]\n"+
		"    deploy:\n      placement:\n        constraints: [node.labels.gpu == yes]\n")
	_, _ = c.dev("up", "-d", "--timeout", "3s", "-f", compose) // its pod cannot start yet: up gives up waiting
	eventually(t, 20*time.Second, "the gpu pod pending on its constraint", func() error {
		for _, p := range c.ps("e2elabel") {
			if p.Node == "" && strings.Contains(p.Message, "gpu") {
				return nil
			}
		}
		return fmt.Errorf("pods: %+v", c.ps("e2elabel"))
	})
	c.mustDev("node", "label", c.node, "gpu=yes", "spare=1")
	wantRunning(c, "e2elabel", "gpu", 1, 30*time.Second)
	c.mustDev("node", "label", c.node, "spare-")
	var nodes []api.Node
	if err := json.Unmarshal([]byte(c.mustDev("nodes", "-o", "json")), &nodes); err != nil || len(nodes) != 1 {
		t.Fatalf("dev nodes -o json: %v, %d nodes", err, len(nodes))
	}
	if l := nodes[0].Labels; l["gpu"] != "yes" || l["spare"] != "" || len(l) != 1 {
		t.Errorf("labels after dev node label gpu=yes spare=1, then spare-: %v, want gpu=yes", l)
	}
	if out, err := c.dev("node", "label", c.node, "bad key=1"); err == nil {
		t.Errorf("dev node label with a bad key: %s", out)
	}
}
