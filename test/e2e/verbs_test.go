package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
)

// The compose verbs of issue 17 (kill, pause/unpause, top, rm, images, ls)
// and dev describe, each against what docker compose (kubectl) does.

// lcExit returns a container's state and exit code.
func (c *cluster) lcExit(name string) (state string, code int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ins, err := c.docker.ContainerInspect(ctx, name)
	if err != nil {
		c.t.Fatalf("inspect %s: %v", name, err)
	}
	return ins.State.Status, ins.State.ExitCode
}

// TestVerbKill: `dev kill` as `docker compose kill`: SIGKILL leaves the
// restart: always pods exited (137) and not restarted, until `dev start`;
// a signal that is not the stop signal (SIGINT) lets the restart policy
// bring the container back; pods not running are skipped.
func TestVerbKill(t *testing.T) {
	c := newCluster(t)
	c.mustDev("up", "-d", "-f", fixture("basic"))
	wid, _, _ := c.lcInspect("e2ebasic-worker-1")
	before := running(c.ps("e2ebasic"), "worker")[0]

	// SIGINT ends the test app (code 0); restart: always brings it back.
	out := c.mustDev("kill", "-p", "e2ebasic", "-s", "SIGINT", "worker")
	if !strings.Contains(out, "killed e2ebasic-worker-1") {
		t.Fatalf("dev kill -s SIGINT worker printed:\n%s", out)
	}
	eventually(t, 30*time.Second, "worker restarted after SIGINT", func() error {
		rows := running(c.ps("e2ebasic"), "worker")
		if len(rows) != 1 || rows[0].Restarts != before.Restarts+1 {
			return fmt.Errorf("running worker pods %+v, want one with %d restarts", rows, before.Restarts+1)
		}
		return nil
	})
	if id, _, _ := c.lcInspect("e2ebasic-worker-1"); id != wid {
		t.Errorf("worker container replaced (%s -> %s), want it started again", wid[:12], id[:12])
	}

	// SIGKILL (the default): exited 137, kept exited, as compose's.
	out = c.mustDev("kill", "-p", "e2ebasic", "web")
	for _, name := range []string{"e2ebasic-web-1", "e2ebasic-web-2"} {
		if !strings.Contains(out, "killed "+name+" (exited (137))") {
			t.Fatalf("dev kill web printed:\n%s\nwant killed %s (exited (137))", out, name)
		}
		if state, code := c.lcExit(name); state != "exited" || code != 137 {
			t.Errorf("container %s is %s (%d), want exited (137)", name, state, code)
		}
	}
	for _, r := range c.ps("e2ebasic") {
		if r.Service == "web" && (r.State != "exited" || r.Message != "stopped (dev stop)") {
			t.Errorf("dev ps after kill: %s is %s %q, want exited, stopped", r.Name, r.State, r.Message)
		}
		if r.Service == "worker" && r.State != "running" {
			t.Errorf("dev ps after kill web: worker is %s, want running", r.State)
		}
	}
	out = c.mustDev("kill", "-p", "e2ebasic", "web")
	if !strings.Contains(out, "skipped e2ebasic-web-1: not running") {
		t.Errorf("dev kill of killed pods printed:\n%s\nwant them skipped", out)
	}
	if res := c.sess("", "", "kill", "-p", "e2ebasic", "-s", "SIGNOPE"); res.code != 1 || !strings.Contains(res.stderr, "unknown signal") {
		t.Errorf("dev kill -s SIGNOPE: %s", res)
	}

	// dev start brings the same containers back, as docker compose start.
	c.mustDev("start", "-p", "e2ebasic", "web")
	if rows := running(c.ps("e2ebasic"), "web"); len(rows) != 2 {
		t.Fatalf("after dev start: running web pods %v, want 2", podNames(rows))
	}
}

// TestVerbPauseUnpause: `dev pause` freezes the pods' containers (docker
// says paused, dev ps says paused, exec says to unpause), other services
// run on; `dev unpause` thaws the same containers, no restart counted.
func TestVerbPauseUnpause(t *testing.T) {
	c := newCluster(t)
	c.mustDev("up", "-d", "-f", fixture("basic"))
	ids := map[string]string{}
	for _, name := range []string{"e2ebasic-web-1", "e2ebasic-web-2"} {
		ids[name], _, _ = c.lcInspect(name)
	}

	out := c.mustDev("pause", "-p", "e2ebasic", "web")
	for name := range ids {
		if !strings.Contains(out, "paused "+name+" (paused)") {
			t.Fatalf("dev pause web printed:\n%s\nwant paused %s (paused)", out, name)
		}
		if _, state, _ := c.lcInspect(name); state != "paused" {
			t.Errorf("container %s is %s, want paused", name, state)
		}
	}
	for _, r := range c.ps("e2ebasic") {
		want := "running"
		if r.Service == "web" {
			want = "paused"
		}
		if r.State != want {
			t.Errorf("dev ps after pause web: %s is %s, want %s", r.Name, r.State, want)
		}
	}
	res := c.sess("", "", "exec", "-p", "e2ebasic", "web", "/app", "exit", "0")
	if res.code == 0 || !strings.Contains(res.stderr, "dev unpause web") {
		t.Errorf("exec in a paused pod: %s, want an error naming dev unpause", res)
	}
	if out := c.mustDev("pause", "-p", "e2ebasic", "web"); !strings.Contains(out, "skipped e2ebasic-web-1: already paused") {
		t.Errorf("dev pause of paused pods printed:\n%s", out)
	}

	out = c.mustDev("unpause", "-p", "e2ebasic")
	if !strings.Contains(out, "unpaused e2ebasic-web-1") || !strings.Contains(out, "skipped e2ebasic-worker-1: not paused") {
		t.Fatalf("dev unpause printed:\n%s", out)
	}
	for name, id := range ids {
		if got, state, _ := c.lcInspect(name); got != id || state != "running" {
			t.Errorf("after unpause: %s is %s %s, want %s running", name, got[:12], state, id[:12])
		}
	}
	eventually(t, 30*time.Second, "web running and healthy again", func() error {
		for _, r := range c.ps("e2ebasic") {
			if r.Service == "web" && (r.State != "running" || r.Health != "healthy" || r.Restarts != 0) {
				return fmt.Errorf("%s is %s %s, %d restarts", r.Name, r.State, r.Health, r.Restarts)
			}
		}
		return nil
	})
}

// TestVerbTop: `dev top` lists each running pod's processes under its
// name, as `docker compose top` lists each container's; a SERVICE filters;
// a stopped service has none.
func TestVerbTop(t *testing.T) {
	c := newCluster(t)
	c.mustDev("up", "-d", "-f", fixture("basic"))
	out := c.mustDev("top", "-p", "e2ebasic")
	for _, want := range []string{"e2ebasic-web-1\n", "e2ebasic-web-2\n", "e2ebasic-worker-1\n", "PID", "serve"} {
		if !strings.Contains(out, want) {
			t.Errorf("dev top printed:\n%s\nwant %q", out, want)
		}
	}
	out = c.mustDev("top", "-p", "e2ebasic", "worker")
	if !strings.Contains(out, "e2ebasic-worker-1\n") || strings.Contains(out, "e2ebasic-web-1") {
		t.Errorf("dev top worker printed:\n%s", out)
	}
	c.mustDev("stop", "-p", "e2ebasic", "worker")
	res := c.sess("", "", "top", "-p", "e2ebasic", "worker")
	if res.code != 0 || res.stdout != "" || !strings.Contains(res.stderr, "no running pods") {
		t.Errorf("dev top of a stopped service: %s", res)
	}
	res = c.sess("", "", "top", "-p", "e2ebasic", "nosuch")
	if res.code != 1 || !strings.Contains(res.stderr, "no pods of service nosuch") {
		t.Errorf("dev top nosuch: %s", res)
	}
}

// TestVerbRm: `dev rm` as `docker compose rm`: it asks first (unless
// --force), removes only stopped pods with their containers, leaves the
// service defined with nothing to replace them (desired lowered), and `dev
// up` brings them back; -s stops first.
func TestVerbRm(t *testing.T) {
	c := newCluster(t)
	c.mustDev("up", "-d", "-f", fixture("basic"))
	if out := c.mustDev("rm", "-p", "e2ebasic", "--force"); !strings.Contains(out, "No stopped pods") {
		t.Fatalf("dev rm with everything running printed:\n%s", out)
	}

	c.mustDev("stop", "-p", "e2ebasic", "web")
	res := c.sess("n\n", "", "rm", "-p", "e2ebasic")
	if res.code != 0 || !strings.Contains(res.stdout, "Going to remove e2ebasic-web-1, e2ebasic-web-2") {
		t.Fatalf("dev rm answered no: %s", res)
	}
	if n := len(c.ps("e2ebasic")); n != 3 {
		t.Fatalf("after answering no: %d pods, want the 3 still there", n)
	}
	out := c.mustDev("rm", "-p", "e2ebasic", "--force", "web")
	if !strings.Contains(out, "removed e2ebasic-web-1") || !strings.Contains(out, "removed e2ebasic-web-2") {
		t.Fatalf("dev rm --force web printed:\n%s", out)
	}
	rows := c.ps("e2ebasic")
	if len(rows) != 1 || rows[0].Service != "worker" || rows[0].State != "running" {
		t.Fatalf("after dev rm web: pods %+v, want only the running worker", rows)
	}
	for _, ct := range c.containers("e2ebasic") {
		if ct.Labels["dev.service"] == "web" {
			t.Errorf("container %v of web left after dev rm", ct.Names)
		}
	}
	if svc := c.services("e2ebasic")["web"]; svc.Desired != 0 {
		t.Errorf("web desired %d after dev rm, want 0: nothing replaces removed pods", svc.Desired)
	}

	// dev up: the file's replicas again.
	c.mustDev("up", "-d", "-f", fixture("basic"))
	if rows := running(c.ps("e2ebasic"), "web"); len(rows) != 2 {
		t.Fatalf("after dev up: running web pods %v, want 2", podNames(rows))
	}

	// -s: stop first, then remove.
	out = c.mustDev("rm", "-p", "e2ebasic", "-s", "--force", "worker")
	if !strings.Contains(out, "removed e2ebasic-worker-1") {
		t.Fatalf("dev rm -s worker printed:\n%s", out)
	}
	if rows := c.ps("e2ebasic"); len(rows) != 2 {
		t.Errorf("after dev rm -s worker: pods %v, want the 2 web", podNames(rows))
	}
}

// TestVerbImages: `dev images` lists the image of each pod's container as
// `docker compose images` lists each container's, with the ID and size the
// Engine of its node gives; stopped pods are listed too; -q gives each
// image ID once; -o json the same rows; a SERVICE filters.
func TestVerbImages(t *testing.T) {
	c := newCluster(t)
	c.mustDev("up", "-d", "-f", fixture("basic"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	img, err := c.docker.ImageInspect(ctx, "dev-testapp:e2e")
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimPrefix(img.ID, "sha256:")
	c.mustDev("stop", "-p", "e2ebasic", "worker")

	out := c.mustDev("images", "-p", "e2ebasic")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || strings.Join(strings.Fields(lines[0]), " ") != "CONTAINER NODE REPOSITORY TAG IMAGE ID SIZE" {
		t.Fatalf("dev images printed:\n%s\nwant a header and 3 pods", out)
	}
	for i, pod := range []string{"e2ebasic-web-1", "e2ebasic-web-2", "e2ebasic-worker-1"} {
		f := strings.Fields(lines[i+1])
		if len(f) != 6 || f[0] != pod || f[2] != "dev-testapp" || f[3] != "e2e" || f[4] != id[:12] {
			t.Errorf("row %d = %q, want %s ... dev-testapp e2e %s SIZE", i+1, lines[i+1], pod, id[:12])
		}
	}

	if out := c.mustDev("images", "-p", "e2ebasic", "-q"); out != id+"\n" {
		t.Errorf("dev images -q printed %q, want the one image ID %q", out, id)
	}

	var rows []struct {
		Container, Service, Node, Repository, Tag string
		ImageID                                   string `json:"image_id"`
		Size                                      int64
	}
	out = c.mustDev("images", "-p", "e2ebasic", "-o", "json", "worker")
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("dev images -o json: %v in:\n%s", err, out)
	}
	if len(rows) != 1 || rows[0].Container != "e2ebasic-worker-1" || rows[0].Service != "worker" || rows[0].Node == "" ||
		rows[0].ImageID != img.ID || rows[0].Size != img.Size {
		t.Errorf("dev images -o json worker = %+v, want worker-1's image %s of %d bytes", rows, img.ID, img.Size)
	}

	res := c.sess("", "", "images", "-p", "e2ebasic", "nosuch")
	if res.code != 1 || !strings.Contains(res.stderr, "no pods of service nosuch") {
		t.Errorf("dev images nosuch: %s", res)
	}
}

// describeField returns the value of "Key:   value" in dev describe's
// output, or "".
func describeField(out, key string) string {
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && k == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestVerbDescribe: `dev describe pod|service|node NAME` shows what dev ps,
// services, nodes and events know of the object, in kubectl's way: a pod's
// spec (no environment value, no secret), status and events; why a pod is
// pending; a service's replicas, VIP, pods and events; a node's status and
// pods; -o json the object.
func TestVerbDescribe(t *testing.T) {
	c := newCluster(t)
	c.mustDev("up", "-d", "-f", fixture("basic"))
	var web1 podRow
	for _, r := range c.ps("e2ebasic") {
		if r.Name == "e2ebasic-web-1" {
			web1 = r
		}
	}

	out := c.mustDev("describe", "pod", "-p", "e2ebasic", "web-1") // SERVICE-N in -p's project
	for key, want := range map[string]string{
		"Name": "e2ebasic-web-1", "Service": "web", "Node": c.node, "IP": web1.IP, "State": "running",
		"Ready": "1/1", "Health": "healthy", "Command": "serve", "Restart": "always",
		"Environment": "GREETING (values not shown)", "Mounts": "/data from volume data",
	} {
		if got := describeField(out, key); got != want {
			t.Errorf("describe pod: %s is %q, want %q\n%s", key, got, want, out)
		}
	}
	if !strings.HasPrefix(describeField(out, "Image"), testImage) || !strings.Contains(describeField(out, "Labels"), "tier=front") ||
		!strings.Contains(out, "Started") {
		t.Errorf("describe pod web-1: want its image, labels and Started event:\n%s", out)
	}
	out = c.mustDev("describe", "pod", "e2ebasic-worker-1")
	if describeField(out, "Secrets") != "token at /run/secrets/token" || strings.Contains(out, "s3cret") {
		t.Errorf("describe pod worker-1: want its secret by name, never its content:\n%s", out)
	}

	// A pod that fits no node says why, as the scheduler put it.
	compose := writeTemp(t, "name: e2epending\nservices:\n  gpu:\n    image: "+testImage+"\n    command: [\"serve\"]\n"+
		"    deploy:\n      placement:\n        constraints: [node.labels.gpu == yes]\n")
	_, _ = c.dev("up", "-d", "--timeout", "3s", "-f", compose) // its pod cannot start: up gives up waiting
	eventually(t, 20*time.Second, "describe says why gpu-1 is pending", func() error {
		out := c.mustDev("describe", "pod", "e2epending-gpu-1")
		if p := describeField(out, "Pending"); !strings.HasPrefix(p, "0/1 nodes available:") || !strings.Contains(p, "gpu") ||
			describeField(out, "State") != "pending" || describeField(out, "Node") != "-" {
			return fmt.Errorf("describe pod e2epending-gpu-1:\n%s", out)
		}
		return nil
	})

	var svcs []struct{ Name, VIP string }
	if err := json.Unmarshal([]byte(c.mustDev("services", "-p", "e2ebasic", "-o", "json")), &svcs); err != nil {
		t.Fatal(err)
	}
	out = c.mustDev("describe", "service", "-p", "e2ebasic", "web")
	for _, s := range svcs {
		if s.Name == "web" && describeField(out, "VIP") != s.VIP {
			t.Errorf("describe service web: VIP %q, want %q", describeField(out, "VIP"), s.VIP)
		}
	}
	if describeField(out, "Replicas") != "2 desired, 2 ready" || !strings.Contains(out, "e2ebasic-web-1") ||
		!strings.Contains(out, "e2ebasic-web-2") || strings.Contains(out, "e2ebasic-worker-1") || !strings.Contains(out, "Created") {
		t.Errorf("describe service web: want 2/2, its two pods, its Created event:\n%s", out)
	}
	if out := c.mustDev("describe", "svc", "e2ebasic/worker"); describeField(out, "Replicas") != "1 desired, 1 ready" {
		t.Errorf("describe svc e2ebasic/worker:\n%s", out)
	}

	out = c.mustDev("describe", "node", c.node)
	if describeField(out, "Status") != "ready" || describeField(out, "Role") != "leader" ||
		!strings.Contains(out, "e2ebasic-web-1") || !strings.Contains(out, "e2ebasic-worker-1") {
		t.Errorf("describe node %s: want ready, leader, with the pods:\n%s", c.node, out)
	}

	var d struct {
		Pod     struct{ Name, Node string }
		Pending string
		Events  []struct{ Reason string }
	}
	out = c.mustDev("describe", "pod", "e2epending-gpu-1", "-o", "json")
	if err := json.Unmarshal([]byte(out), &d); err != nil || d.Pod.Name != "e2epending-gpu-1" || d.Pod.Node != "" ||
		!strings.Contains(d.Pending, "gpu") {
		t.Errorf("describe pod -o json: %v, %+v\n%s", err, d, out)
	}

	res := c.sess("", "", "describe", "pod", "nosuch")
	if res.code != 1 || !strings.Contains(res.stderr, "no such pod") {
		t.Errorf("dev describe pod nosuch: %s", res)
	}
	res = c.sess("", "", "describe", "volume", "data")
	if res.code != 1 || !strings.Contains(res.stderr, "describe a pod, a service or a node") {
		t.Errorf("dev describe volume data: %s", res)
	}
}

// TestVerbLsPaused: `dev ls` counts paused pods as paused, as `docker
// compose ls` counts paused containers, and as running again once
// unpaused.
func TestVerbLsPaused(t *testing.T) {
	c := newCluster(t)
	c.mustDev("up", "-d", "-f", fixture("basic"))
	c.mustDev("pause", "-p", "e2ebasic", "web")
	line := regexp.MustCompile(`(?m)^e2ebasic\s+paused\(2\), running\(1\)\s+2$`)
	if out := c.mustDev("ls"); !line.MatchString(out) {
		t.Errorf("dev ls after dev pause web:\n%s\nwant e2ebasic paused(2), running(1) with 2 services", out)
	}
	var rows []struct {
		Name string
		Pods map[string]int
	}
	if err := json.Unmarshal([]byte(c.mustDev("ls", "-o", "json")), &rows); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Name == "e2ebasic" && (r.Pods["paused"] != 2 || r.Pods["running"] != 1) {
			t.Errorf("dev ls -o json: e2ebasic pods %v, want paused 2, running 1", r.Pods)
		}
	}
	c.mustDev("unpause", "-p", "e2ebasic")
	if out := c.mustDev("ls"); !regexp.MustCompile(`(?m)^e2ebasic\s+running\(3\)\s+2$`).MatchString(out) {
		t.Errorf("dev ls after dev unpause:\n%s\nwant e2ebasic running(3)", out)
	}
}

// TestVerbWait: `dev wait` as `docker compose wait`: it blocks until the
// job's pod stops, prints its exit code and exits with it; the web
// service's running pods are not waited for; --down-project then removes
// the project.
func TestVerbWait(t *testing.T) {
	c := newCluster(t)
	file := writeTemp(t, `name: e2ewait
services:
  job:
    image: dev-testapp:e2e
    command: ["exit", "3", "4s"]
    restart: "no"
  web:
    image: dev-testapp:e2e
    command: ["serve"]
`)
	c.mustDev("up", "-d", "-f", file)
	start := time.Now()
	res := c.sess("", "", "wait", "-p", "e2ewait", "job")
	if res.code != 3 || !strings.Contains(res.stdout, "pod e2ewait-job-1 exited with status code 3") {
		t.Fatalf("dev wait job: %s", res)
	}
	if time.Since(start) > time.Minute {
		t.Errorf("dev wait took %s", time.Since(start))
	}
	if rows := running(c.ps("e2ewait"), "web"); len(rows) != 1 {
		t.Errorf("after dev wait: running web pods %v, want 1", podNames(rows))
	}
	res = c.sess("", "", "wait", "-p", "e2ewait", "nosuch")
	if res.code != 1 || !strings.Contains(res.stderr, "no pods of service nosuch") {
		t.Errorf("dev wait nosuch: %s", res)
	}
	res = c.sess("", "", "wait", "-p", "e2ewait", "--down-project", "job")
	if res.code != 3 || !strings.Contains(res.stdout, "exited with status code 3") {
		t.Fatalf("dev wait --down-project job: %s", res)
	}
	if rows := c.ps("e2ewait"); len(rows) != 0 {
		t.Errorf("after dev wait --down-project: pods %v, want none", podNames(rows))
	}
}

// TestUpNoStart: `dev up --no-start` as compose's: every pod's container is
// created, not started (a dependent's too, without waiting for its
// depends_on); `dev start` starts them, the same containers; a plain `dev
// up` would too.
func TestUpNoStart(t *testing.T) {
	c := newCluster(t)
	c.mustDev("up", "--no-start", "-f", fixture("deps"))
	ids := map[string]string{}
	for _, r := range c.ps("e2edeps") {
		if r.State != "exited" || r.Message != "stopped (dev stop)" {
			t.Errorf("after up --no-start: %s is %s %q, want exited, stopped", r.Name, r.State, r.Message)
		}
		id, state, _ := c.lcInspect(r.Name)
		if state != "created" {
			t.Errorf("after up --no-start: container %s is %s, want created", r.Name, state)
		}
		ids[r.Name] = id
	}
	if len(ids) != 3 {
		t.Fatalf("after up --no-start: pods %v, want migrate, db and app", ids)
	}
	c.mustDev("start", "-p", "e2edeps")
	eventually(t, 60*time.Second, "db and app running", func() error {
		if n := len(running(c.ps("e2edeps"), "db")) + len(running(c.ps("e2edeps"), "app")); n != 2 {
			return fmt.Errorf("%d of db and app running", n)
		}
		return nil
	})
	for name, id := range ids {
		if got, _, _ := c.lcInspect(name); got != id {
			t.Errorf("dev start replaced %s's container, want the one --no-start created started", name)
		}
	}
}

// TestVerbBuild: dev build builds the image of a service with a build
// section on this machine's Engine (labelled with its project and
// service), skips one that only names an image, deploys nothing, and
// refuses a service the project does not have.
func TestVerbBuild(t *testing.T) {
	c := newCluster(t)
	dir := t.TempDir()
	for name, content := range map[string]string{
		"Dockerfile":   "FROM " + testImage + "\nCOPY hello.txt /hello.txt\n",
		"hello.txt":    "built by dev build",
		"compose.yaml": "name: e2ebuild\nservices:\n  web:\n    build: .\n    image: e2ebuild-web:dev\n  cache:\n    image: " + testImage + "\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = c.docker.ImageRemove(ctx, "e2ebuild-web:dev", image.RemoveOptions{Force: true})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = c.docker.ImageRemove(ctx, "e2ebuild-web:dev", image.RemoveOptions{Force: true})
	})
	if out, err := c.devIn(dir, "build", "nosuch"); err == nil || !strings.Contains(out, "no service nosuch") {
		t.Errorf("dev build nosuch: %v\n%s", err, out)
	}
	out, err := c.devIn(dir, "build")
	if err != nil {
		t.Fatalf("dev build: %v\n%s", err, out)
	}
	if !strings.Contains(out, "cache uses an image, skipping") || !strings.Contains(out, "built e2ebuild-web:dev") {
		t.Errorf("dev build printed:\n%s", out)
	}
	img, err := c.docker.ImageInspect(ctx, "e2ebuild-web:dev")
	if err != nil {
		t.Fatalf("the built image: %v", err)
	}
	if img.Config == nil || img.Config.Labels["dev.project"] != "e2ebuild" || img.Config.Labels["dev.service"] != "web" {
		t.Errorf("the built image's labels: %+v", img.Config)
	}
	if out := c.mustDev("ps", "-p", "e2ebuild"); strings.Contains(out, "e2ebuild-web") {
		t.Errorf("dev build deployed pods:\n%s", out)
	}
}
