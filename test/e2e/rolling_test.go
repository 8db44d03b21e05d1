package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// requestLoop GETs url on a new connection every 20ms until stopped, and
// counts what failed.
type requestLoop struct {
	ok, failed atomic.Int64
	firstErr   atomic.Value
	stop       context.CancelFunc
	done       sync.WaitGroup
}

func startLoop(url string) *requestLoop {
	return startLoopWith(func() (string, error) { return httpGet(url) })
}

// startLoopWith is startLoop with get making each request.
func startLoopWith(get func() (string, error)) *requestLoop {
	ctx, cancel := context.WithCancel(context.Background())
	l := &requestLoop{stop: cancel}
	l.done.Add(1)
	go func() {
		defer l.done.Done()
		for ctx.Err() == nil {
			body, err := get()
			if err != nil || !strings.Contains(body, "hello from") {
				if ctx.Err() != nil {
					return
				}
				l.failed.Add(1)
				l.firstErr.CompareAndSwap(nil, fmt.Sprintf("%v %q", err, body))
			} else {
				l.ok.Add(1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return l
}

func (l *requestLoop) finish() (ok, failed int64, first any) {
	l.stop()
	l.done.Wait()
	return l.ok.Load(), l.failed.Load(), l.firstErr.Load()
}

func webContainers(c *cluster, project string) []string {
	var ids []string
	for _, ct := range c.containers(project) {
		if ct.State == "running" {
			ids = append(ids, ct.ID)
		}
	}
	sort.Strings(ids)
	return ids
}

func TestRollingUpdateWithoutFailedRequests(t *testing.T) {
	c := newCluster(t)
	c.mustDev("up", "-d", "-f", fixture("rolling"))
	before := webContainers(c, "e2eroll")
	// dev port prints what docker compose port prints for the file.
	if out := strings.TrimSpace(c.mustDev("port", "-p", "e2eroll", "web", "8080")); out != "0.0.0.0:18095" {
		t.Errorf("dev port web 8080 = %q, want 0.0.0.0:18095", out)
	}
	if out, err := c.dev("port", "-p", "e2eroll", "web", "9999"); err == nil || !strings.Contains(out, "does not publish 9999/tcp") {
		t.Errorf("dev port of an unpublished port: %v\n%s", err, out)
	}

	loop := startLoop("http://127.0.0.1:18095/")
	// The same through the ingress router, by host: a pod leaves its
	// route before it stops.
	viaIngress := startLoopWith(func() (string, error) { return httpGetHost("http://"+c.ingress+"/", "web.e2eroll.test") })
	time.Sleep(300 * time.Millisecond)
	v2 := writeTemp(t, "services:\n  web:\n    environment:\n      VERSION: \"2\"\n")
	start := time.Now()
	c.mustDev("up", "-d", "-f", fixture("rolling"), "-f", v2)
	took := time.Since(start)
	time.Sleep(300 * time.Millisecond)
	ok, failed, first := loop.finish()
	t.Logf("rolling update of 2 pods took %s; %d requests succeeded, %d failed", took.Round(10*time.Millisecond), ok, failed)
	if failed != 0 || ok < 20 {
		t.Fatalf("during the update %d of %d requests failed (first: %v)", failed, ok+failed, first)
	}
	ok, failed, first = viaIngress.finish()
	t.Logf("through the ingress router: %d requests succeeded, %d failed", ok, failed)
	if failed != 0 || ok < 20 {
		t.Fatalf("during the update %d of %d requests through the ingress router failed (first: %v)", failed, ok+failed, first)
	}
	after := webContainers(c, "e2eroll")
	if len(after) != 2 {
		t.Fatalf("%d web containers after the update, want 2", len(after))
	}
	for _, id := range after {
		for _, old := range before {
			if id == old {
				t.Fatalf("container %s survived the update", id[:12])
			}
		}
	}
	for _, p := range running(c.ps("e2eroll"), "web") {
		if env, err := httpGet("http://" + p.IP + ":8080/env"); err != nil || !strings.Contains(env, "VERSION=2") {
			t.Fatalf("%s after the update: env %q %v", p.Name, env, err)
		}
	}

	// dev rollback returns to the previous version: VERSION=1.
	c.mustDev("rollback", "-p", "e2eroll", "web")
	v1pods := running(c.ps("e2eroll"), "web")
	if len(v1pods) != 2 {
		t.Fatalf("after dev rollback: web pods %v", podNames(v1pods))
	}
	for _, p := range v1pods {
		if env, err := httpGet("http://" + p.IP + ":8080/env"); err != nil || !strings.Contains(env, "VERSION=1") {
			t.Fatalf("%s after dev rollback: env %q %v", p.Name, env, err)
		}
	}
	rolledBack := webContainers(c, "e2eroll")

	// A version whose pods crash is rolled back; the old pods keep serving.
	loop = startLoop("http://127.0.0.1:18095/")
	broken := writeTemp(t, "services:\n  web:\n    command: [\"exit\", \"1\"]\n    environment:\n      VERSION: \"3\"\n")
	out, err := c.dev("up", "-d", "-f", fixture("rolling"), "-f", broken)
	ok, failed, first = loop.finish()
	if err == nil || !strings.Contains(out, "rolled back") {
		t.Fatalf("dev up of a crashing version: err=%v, want an error saying it was rolled back:\n%s", err, out)
	}
	if failed != 0 {
		t.Fatalf("during the failed update %d of %d requests failed (first: %v)", failed, ok+failed, first)
	}
	eventually(t, 30*time.Second, "the VERSION=1 pods serving alone again", func() error {
		ids := webContainers(c, "e2eroll")
		if strings.Join(ids, ",") != strings.Join(rolledBack, ",") {
			return fmt.Errorf("running containers %v, want the VERSION=1 ones %v", ids, rolledBack)
		}
		return nil
	})
}
