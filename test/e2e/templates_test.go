package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"

	"github.com/devhq/dev/test/baseimage"
)

// The `dev init` starters, each written by `dev init` into an empty folder and
// brought up with `dev up --build` on this machine's Engine. Their Dockerfiles
// build FROM the real images by default (golang, nginx, redis, node, python),
// which cannot be pulled here: the tests set the build arguments (GO_IMAGE,
// ...) to local stand-ins made from this host's programs (test/baseimage).

// devWith runs the CLI in dir (the test's cwd when "") with extra environment
// variables, with a timeout that leaves room for image builds.
func (c *cluster) devWith(dir string, env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, devBin, args...)
	cmd.Env = append(c.env(), env...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// starter is a project written by `dev init` and deployed.
type starter struct {
	c       *cluster
	dir     string
	project string
	env     []string
	url     string // the published port: http://127.0.0.1:PORT
}

// initStarter runs `dev init TEMPLATE DIR` into a new folder; up deploys it.
func initStarter(t *testing.T, c *cluster, tpl string) *starter {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "my-"+tpl)
	out, err := c.devWith("", nil, "init", tpl, dir)
	if err != nil {
		t.Fatalf("dev init %s %s: %v\n%s", tpl, dir, err, out)
	}
	t.Logf("dev init %s:\n%s", tpl, out)
	if !strings.Contains(out, "compose.yaml") || !strings.Contains(out, "dev up --build") {
		t.Errorf("dev init output lacks the files written or the next command:\n%s", out)
	}
	return &starter{c: c, dir: dir, project: "e2etpl" + tpl}
}

// up builds the stand-ins the project needs, publishes its port
// (portVar, e.g. WEB_PORT) on a free port, runs `dev up -d --build` and
// registers `dev down -v` and the removal of the project's images, failed
// test or not.
func (s *starter) up(t *testing.T, portVar string, bases ...string) {
	t.Helper()
	c := s.c
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	if err := baseimage.Ensure(ctx, c.docker, bases...); err != nil {
		t.Fatalf("stand-in base images: %v", err)
	}
	t.Logf("stand-ins %v ready in %s", bases, time.Since(start).Round(time.Millisecond))
	env, err := baseimage.Env(bases...)
	if err != nil {
		t.Fatal(err)
	}
	p := port(freeAddr(t))
	s.env = append(env, portVar+"="+p)
	s.url = "http://127.0.0.1:" + p

	t.Cleanup(func() {
		if t.Failed() {
			out, _ := c.dev("ps", "-p", s.project)
			t.Logf("dev ps:\n%s", out)
			out, _ = c.devWith(s.dir, s.env, "logs", "-p", s.project)
			t.Logf("dev logs:\n%s", lastLines(out, 80))
		}
		if out, err := c.devWith(s.dir, s.env, "down", "-p", s.project, "-v"); err != nil {
			t.Logf("dev down -v: %v\n%s", err, out)
		}
		removeProjectImages(t, c, s.project)
	})
	start = time.Now()
	out, err := c.devWith(s.dir, s.env, "up", "-d", "--build", "-p", s.project, "--timeout", "4m")
	if err != nil {
		t.Fatalf("dev up -d --build: %v\n%s", err, out)
	}
	t.Logf("dev up -d --build in %s:\n%s", time.Since(start).Round(time.Millisecond), lastLines(out, 20))
}

// removeProjectImages removes the images `dev up --build` made for project
// and the untagged build stages left from stand-in bases.
func removeProjectImages(t *testing.T, c *cluster, project string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	imgs, err := c.docker.ImageList(ctx, image.ListOptions{
		Filters: filters.NewArgs(filters.Arg("label", "dev.project="+project))})
	if err != nil {
		t.Logf("list images of %s: %v", project, err)
		return
	}
	for _, img := range imgs {
		if _, err := c.docker.ImageRemove(ctx, img.ID, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Logf("remove image %v: %v", img.RepoTags, err)
		}
	}
	if err := baseimage.PruneDangling(ctx, c.docker); err != nil {
		t.Logf("prune build stages: %v", err)
	}
}

// get fetches a URL on a new connection (the node proxy balances
// connections) and returns the response with its body read.
func get(u string) (*http.Response, string, error) {
	return do(http.MethodGet, u, nil)
}

func do(method, u string, form url.Values) (*http.Response, string, error) {
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return nil, "", err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

var visitsRe = regexp.MustCompile(`Visits: (\d+) \(served by ([^)]+)\)`)

// TestTemplateGo: the web service counts visits and keeps notes in the db
// stand-in; two web replicas see one count, so it lives in db, and it
// survives a restart of db, so it lives on db's volume.
func TestTemplateGo(t *testing.T) {
	c := newCluster(t)
	s := initStarter(t, c, "go")
	s.up(t, "WEB_PORT", "golang")

	visits := func() (int, string, error) {
		resp, body, err := get(s.url + "/")
		if err != nil {
			return 0, "", err
		}
		m := visitsRe.FindStringSubmatch(body)
		if resp.StatusCode != http.StatusOK || m == nil {
			return 0, "", fmt.Errorf("GET /: %s %q", resp.Status, body)
		}
		n, _ := strconv.Atoi(m[1])
		return n, m[2], nil
	}
	var last int
	eventually(t, 30*time.Second, "web answers through the published port", func() error {
		n, _, err := visits()
		last = n
		return err
	})
	// The published port picks a pod at random for each connection: ask
	// until both answered (6 asks left both unseen 1 time in 32), up to 40.
	hosts := map[string]bool{}
	for i := 0; i < 40 && len(hosts) < 2; i++ {
		n, host, err := visits()
		if err != nil {
			t.Fatal(err)
		}
		if n != last+1 {
			t.Fatalf("visits went from %d to %d, want %d: the count is not shared", last, n, last+1)
		}
		last = n
		hosts[host] = true
	}
	if len(hosts) != 2 {
		t.Errorf("pages served by %v, want both web replicas (round-robin over 2 pods)", hosts)
	}

	note := fmt.Sprintf("remember the milk %d", time.Now().UnixNano())
	resp, body, err := do(http.MethodPost, s.url+"/notes", url.Values{"text": {note}})
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST /notes: %v %v %q", err, resp, body)
	}
	_, body, err = get(s.url + "/api/notes")
	if err != nil || !strings.Contains(body, note) {
		t.Fatalf("GET /api/notes = %q, %v; want the note %q", body, err, note)
	}

	// The data is on db's volume: restart db and find it again.
	if out, err := c.devWith(s.dir, s.env, "restart", "-p", s.project, "db"); err != nil {
		t.Fatalf("dev restart db: %v\n%s", err, out)
	}
	eventually(t, 60*time.Second, "the page with the note and the count after db restarts", func() error {
		_, body, err := get(s.url + "/")
		if err != nil {
			return err
		}
		m := visitsRe.FindStringSubmatch(body)
		if m == nil || !strings.Contains(body, note) {
			return fmt.Errorf("GET / = %q", body)
		}
		if n, _ := strconv.Atoi(m[1]); n <= last {
			return fmt.Errorf("visits %d after restart, want more than %d", n, last)
		}
		return nil
	})
}

// TestTemplateStatic: public/index.html through the proxy service.
func TestTemplateStatic(t *testing.T) {
	c := newCluster(t)
	s := initStarter(t, c, "static")
	index, err := os.ReadFile(filepath.Join(s.dir, "public", "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	s.up(t, "WEB_PORT", "nginx")

	eventually(t, 30*time.Second, "index.html through the proxy", func() error {
		resp, body, err := get(s.url + "/")
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK || body != string(index) {
			return fmt.Errorf("GET /: %s %q, want public/index.html", resp.Status, body)
		}
		if got := resp.Header.Get("X-Served-By"); got != "proxy" {
			return fmt.Errorf("GET /: X-Served-By = %q, want proxy (the response did not pass the proxy)", got)
		}
		return nil
	})
	resp, body, err := get(s.url + "/style.css")
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(body, "font-family") {
		t.Fatalf("GET /style.css: %v %v %q", err, resp, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/css") {
		t.Errorf("style.css Content-Type = %q, want text/css", ct)
	}
	if resp, _, err := get(s.url + "/compose.yaml"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /compose.yaml: %v %v, want 404: only public/ is served", err, resp)
	}
}

// TestTemplateWorker: jobs enqueued through the api are processed by the two
// workers.
func TestTemplateWorker(t *testing.T) {
	c := newCluster(t)
	s := initStarter(t, c, "worker")
	s.up(t, "API_PORT", "golang", "redis")

	enqueue := func(text string) string {
		t.Helper()
		var id string
		eventually(t, 30*time.Second, "POST /jobs", func() error {
			resp, body, err := do(http.MethodPost, s.url+"/jobs", url.Values{"text": {text}})
			if err != nil {
				return err
			}
			var v struct{ ID, Status string }
			if resp.StatusCode != http.StatusAccepted || json.Unmarshal([]byte(body), &v) != nil || v.ID == "" {
				return fmt.Errorf("POST /jobs: %s %q", resp.Status, body)
			}
			id = v.ID
			return nil
		})
		return id
	}
	done := func(id string) map[string]string {
		t.Helper()
		var job map[string]string
		eventually(t, 30*time.Second, "job "+id+" done", func() error {
			resp, body, err := get(s.url + "/jobs/" + id)
			if err != nil {
				return err
			}
			job = nil
			if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &job) != nil {
				return fmt.Errorf("GET /jobs/%s: %s %q", id, resp.Status, body)
			}
			if job["status"] != "done" {
				return fmt.Errorf("job %s: %v", id, job)
			}
			return nil
		})
		return job
	}

	job := done(enqueue("hello dev"))
	if job["result"] != "HELLO DEV (2 words)" || !strings.HasPrefix(job["worker"], s.project+"-worker-") {
		t.Fatalf("job = %v, want result %q by a %s-worker-N pod", job, "HELLO DEV (2 words)", s.project)
	}
	var ids []string
	for i := range 10 {
		ids = append(ids, enqueue(fmt.Sprintf("job number %d", i)))
		time.Sleep(50 * time.Millisecond)
	}
	workers := map[string]int{}
	for _, id := range ids {
		workers[done(id)["worker"]]++
	}
	t.Logf("jobs per worker: %v", workers)
	if len(workers) != 2 {
		t.Errorf("jobs processed by %v, want both worker replicas", workers)
	}
	_, body, err := get(s.url + "/")
	if err != nil || !strings.Contains(body, `"JOB NUMBER 9 (3 words)"`) {
		t.Errorf("GET / = %q, %v; want the latest finished jobs", body, err)
	}
}

// TestTemplateNode: the node starter answers on its published port.
func TestTemplateNode(t *testing.T) {
	c := newCluster(t)
	s := initStarter(t, c, "node")
	s.up(t, "WEB_PORT", "node")
	wantBody(t, s.url+"/", "Hello from Node.js v", s.project+"-web-1")
}

// TestTemplatePython: the python starter answers on its published port.
func TestTemplatePython(t *testing.T) {
	c := newCluster(t)
	s := initStarter(t, c, "python")
	s.up(t, "WEB_PORT", "python")
	wantBody(t, s.url+"/", "Hello from Python 3.", s.project+"-web-1")
}

func wantBody(t *testing.T, u string, want ...string) {
	t.Helper()
	eventually(t, 30*time.Second, "GET "+u, func() error {
		resp, body, err := get(u)
		if err != nil {
			return err
		}
		for _, w := range want {
			if resp.StatusCode != http.StatusOK || !strings.Contains(body, w) {
				return fmt.Errorf("GET %s: %s %q, want %q", u, resp.Status, body, w)
			}
		}
		return nil
	})
}

// TestInitDetectsGoModule: `dev init --yes` in a folder with a Go module
// writes the container files only, leaves the code alone, and the result
// serves that code.
func TestInitDetectsGoModule(t *testing.T) {
	c := newCluster(t)
	dir := filepath.Join(t.TempDir(), "existing")
	app := map[string]string{
		"go.mod": "module example.com/existing\n\ngo 1.26\n",
		"main.go": `package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from my existing app; database at %s\n", os.Getenv("DATABASE_URL"))
	})
	http.ListenAndServe(":8080", nil)
}
`,
		"README.md": "# my app\n",
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range app {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// No terminal and no --yes: a clear refusal, nothing written.
	out, err := c.devWith(dir, nil, "init")
	if err == nil || !strings.Contains(out, "dev init --yes") || !strings.Contains(out, "dev init go") {
		t.Fatalf("dev init without a terminal or --yes: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "Dockerfile")); err == nil {
		t.Fatal("dev init without --yes wrote a Dockerfile")
	}

	out, err = c.devWith(dir, nil, "init", "--yes")
	if err != nil {
		t.Fatalf("dev init --yes: %v\n%s", err, out)
	}
	t.Logf("dev init --yes:\n%s", out)
	for _, f := range []string{"Dockerfile", "compose.yaml", ".dockerignore", "db/Dockerfile", "db/main.go", "db/go.mod"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("dev init --yes did not write %s: %v", f, err)
		}
		if !strings.Contains(out, f) {
			t.Errorf("dev init --yes output does not list %s", f)
		}
	}
	for name, content := range app {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(b) != content {
			t.Errorf("%s changed by dev init: %q, %v", name, b, err)
		}
	}

	s := &starter{c: c, dir: dir, project: "e2etpldetect"}
	s.up(t, "WEB_PORT", "golang")
	wantBody(t, s.url+"/", "hello from my existing app; database at postgres://", "@db:5432/app")
}
