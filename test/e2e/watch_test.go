package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"

	"github.com/devhq/dev/test/testimage"
)

// lockedBuffer collects a subprocess's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

const watchCompose = `name: e2ewatch
services:
  web:
    build: .
    deploy:
      replicas: 2
      update_config:
        parallelism: 2
        monitor: 1s
    develop:
      watch:
        - path: ./static
          action: sync
          target: /srv
          ignore: ["*.tmp"]
        - path: ./app.txt
          action: rebuild
        - path: ./conf
          action: sync+exec
          target: /etc/app
          exec:
            command: ["/app", "cat", "/etc/app/conf.txt"]
`

// TestWatch runs `dev up --watch` on a service built from a directory: a
// new file under the sync path shows up in every pod, a removed one goes
// away, and a change of the rebuild path replaces the pods with ones from
// a new image. Ctrl-C stops the project.
func TestWatch(t *testing.T) {
	const project = "e2ewatch"
	// Registered first, so it runs last: after the cluster's cleanup has
	// removed the containers that use the images.
	dc := testimage.Docker(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		imgs, _ := dc.ImageList(ctx, image.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "dev.project="+project))})
		for _, img := range imgs {
			_, _ = dc.ImageRemove(ctx, img.ID, image.RemoveOptions{Force: true, PruneChildren: true})
		}
	})
	c := newCluster(t)

	dir := t.TempDir()
	write := func(rel, content string) {
		t.Helper()
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("Dockerfile", "FROM "+testImage+"\nCOPY app.txt /data/app.txt\n")
	write("app.txt", "v1")
	write("static/index.txt", "index")
	write("conf/README", "settings synced into /etc/app")
	write("compose.yaml", watchCompose)

	var out lockedBuffer
	up := exec.Command(devBin, "up", "--watch", "-f", filepath.Join(dir, "compose.yaml"))
	up.Env = c.env()
	up.Dir = dir
	up.Stdout, up.Stderr = &out, &out
	up.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- up.Wait() }()
	t.Cleanup(func() { // on failure: the watch is still running
		select {
		case <-exited:
		default:
			_ = syscall.Kill(-up.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() || testing.Verbose() {
			t.Logf("dev up --watch output:\n%s", lastLines(out.String(), 80))
		}
	})
	waitOutput := func(timeout time.Duration, want string) {
		t.Helper()
		eventually(t, timeout, "dev up --watch printing "+want, func() error {
			select {
			case err := <-exited:
				exited <- err
				return fmt.Errorf("dev up --watch exited: %v", err)
			default:
			}
			if !strings.Contains(out.String(), want) {
				return errors.New("not yet")
			}
			return nil
		})
	}
	waitOutput(3*time.Minute, "watch: watching 3 rules of web")

	pods := running(c.ps(project), "web")
	if len(pods) != 2 {
		t.Fatalf("web pods after up: %v", podNames(pods))
	}
	before := webContainers(c, project)
	readAll := func(path, want string) func() error {
		return func() error {
			for _, p := range running(c.ps(project), "web") {
				body, err := httpGet("http://" + p.IP + ":8080/file?path=" + path)
				if err != nil || body != want {
					return fmt.Errorf("%s: %s = %q (%v), want %q", p.Name, path, body, err, want)
				}
			}
			return nil
		}
	}

	// (1) sync: a new file reaches every pod; an ignored one does not.
	start := time.Now()
	write("static/skip.tmp", "ignored")
	write("static/new.txt", "hello from the host")
	eventually(t, 15*time.Second, "new.txt synced into the pods", readAll("/srv/new.txt", "hello from the host"))
	t.Logf("a new file reached both pods %s after it was written", time.Since(start).Round(10*time.Millisecond))
	waitOutput(5*time.Second, "watch: synced 1 file to web (2 pods)")
	for _, p := range pods {
		if body, _ := httpGet("http://" + p.IP + ":8080/file?path=/srv/skip.tmp"); body == "ignored" {
			t.Fatalf("%s: the ignored skip.tmp was synced", p.Name)
		}
	}
	// A removal is synced too (the image has no rm: the agent removes the
	// file through the container's root).
	if err := os.Remove(filepath.Join(dir, "static", "new.txt")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "new.txt removed from the pods", func() error {
		for _, p := range pods {
			if body, _ := httpGet("http://" + p.IP + ":8080/file?path=/srv/new.txt"); !strings.Contains(body, "no such file") {
				return fmt.Errorf("%s: /srv/new.txt = %q", p.Name, body)
			}
		}
		return nil
	})
	waitOutput(5*time.Second, "watch: removed 1 path from web (2 pods)")
	if after := webContainers(c, project); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Fatalf("a sync replaced containers: %v -> %v", before, after)
	}

	// (1b) sync+exec: the command runs in every pod after the sync, and
	// sees the synced file.
	write("conf/conf.txt", "setting=on")
	waitOutput(15*time.Second, `watch: ran "/app cat /etc/app/conf.txt" in 2 pods`)
	for _, p := range pods {
		if want := "watch: " + strings.TrimPrefix(p.Name, project+"-") + " | setting=on"; !strings.Contains(out.String(), want) {
			t.Fatalf("no %q in the watch output", want)
		}
	}

	// (2) rebuild: the pods are replaced by pods of the new image.
	start = time.Now()
	write("app.txt", "v2")
	waitOutput(2*time.Minute, "watch: rebuilt web, rolling update done (2 pods")
	t.Logf("rebuild and rolling update took %s", time.Since(start).Round(10*time.Millisecond))
	eventually(t, 30*time.Second, "the new image's pods serving alone", func() error {
		after := webContainers(c, project)
		if len(after) != 2 {
			return fmt.Errorf("running containers %v", after)
		}
		for _, id := range after {
			for _, old := range before {
				if id == old {
					return fmt.Errorf("container %s survived the rebuild", id[:12])
				}
			}
		}
		return readAll("/data/app.txt", "v2")()
	})

	// Ctrl-C stops watching and the project, as an attached up does.
	if err := up.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("dev up --watch after Ctrl-C: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatalf("dev up --watch did not exit within a minute of Ctrl-C")
	}
	if !strings.Contains(out.String(), "Stopping "+project) {
		t.Fatalf("dev up --watch did not stop the project")
	}
	if rows := c.ps(project); len(rows) != 0 {
		t.Fatalf("pods left after Ctrl-C: %v", podNames(rows))
	}
}
