package e2e

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/devhq/dev/cluster/agent/docker"
)

// TestPodKeepsItsIP: a pod's address is its infra container's. Killing the
// app container (docker kill) restarts it in the same pod: same IP, and
// tasks.<service> unchanged; removing it (docker rm -f) makes a new one,
// still with the pod's IP; an agent restart adopts both containers without
// restarting either; `dev down` leaves no infra container.
func TestPodKeepsItsIP(t *testing.T) {
	c := newCluster(t)
	compose := writeTemp(t, "name: e2epods\nservices:\n  web:\n    image: "+testImage+"\n  client:\n    image: "+testImage+"\n")
	c.mustDev("up", "-d", "-f", compose)
	pod := func(service string) podRow {
		t.Helper()
		rows := running(c.ps("e2epods"), service)
		if len(rows) != 1 {
			t.Fatalf("running %s pods: %v", service, rows)
		}
		return rows[0]
	}
	web, client := pod("web"), pod("client")
	infraID, _, infraStarted := c.lcInspect(docker.InfraName(web.Name))
	// "running" is the container's state: its server may take a moment more.
	eventually(t, 10*time.Second, "tasks.web from the client", func() error {
		if got, err := resolveIn(client, "tasks.web"); err != nil || len(got) != 1 || got[0] != web.IP {
			return fmt.Errorf("tasks.web = %v, %v; want [%s]", got, err, web.IP)
		}
		return nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.docker.ContainerKill(ctx, web.Name, "KILL"); err != nil {
		t.Fatal(err)
	}
	var after podRow
	eventually(t, 30*time.Second, "web running again after docker kill", func() error {
		rows := running(c.ps("e2epods"), "web")
		if len(rows) != 1 || rows[0].Restarts != 1 {
			return fmt.Errorf("web pods %v", rows)
		}
		after = rows[0]
		return nil
	})
	if after.IP != web.IP {
		t.Errorf("after docker kill the pod's IP is %s, want %s", after.IP, web.IP)
	}
	if id, state, started := c.lcInspect(docker.InfraName(web.Name)); id != infraID || state != "running" || started != infraStarted {
		t.Errorf("infra container after the kill: %s %s started %s; want %s running since %s", id, state, started, infraID, infraStarted)
	}
	if got, err := resolveIn(client, "tasks.web"); err != nil || len(got) != 1 || got[0] != web.IP {
		t.Errorf("tasks.web after the kill = %v, %v; want [%s]", got, err, web.IP)
	}

	// A container removed behind the agent's back (docker rm -f) is made
	// again in the same pod: a new container, the same address.
	if err := c.docker.ContainerRemove(ctx, web.Name, container.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "web made again after docker rm -f", func() error {
		rows := running(c.ps("e2epods"), "web")
		if len(rows) != 1 || rows[0].Restarts != 2 {
			return fmt.Errorf("web pods %v", rows)
		}
		after = rows[0]
		return nil
	})
	if after.IP != web.IP {
		t.Errorf("after docker rm -f the pod's IP is %s, want %s", after.IP, web.IP)
	}

	// An agent restart adopts the app and infra containers as they are.
	appID, _, appStarted := c.lcInspect(web.Name)
	c.stopAgent()
	c.startAgent()
	eventually(t, 30*time.Second, "the agent answers again", func() error {
		_, err := c.dev("ps", "-p", "e2epods")
		return err
	})
	for name, want := range map[string][2]string{web.Name: {appID, appStarted}, docker.InfraName(web.Name): {infraID, infraStarted}} {
		if id, state, started := c.lcInspect(name); id != want[0] || state != "running" || started != want[1] {
			t.Errorf("%s after an agent restart: %s %s started %s; want %s running since %s", name, id, state, started, want[0], want[1])
		}
	}

	c.mustDev("down", "-p", "e2epods")
	eventually(t, 30*time.Second, "no infra container left", func() error {
		cs, err := c.docker.ContainerList(ctx, container.ListOptions{All: true,
			Filters: filters.NewArgs(filters.Arg("label", docker.LabelInfra+"=true"), filters.Arg("name", "e2epods-"))})
		if err != nil || len(cs) != 0 {
			return fmt.Errorf("%d infra containers, %v", len(cs), err)
		}
		return nil
	})
}

// TestSidecar: a service with `network_mode: service:web` runs as a
// container in every pod of web: it reaches web on localhost, shares its
// hostname, is reached on its own port through web's name, scales with
// web, and goes with it.
func TestSidecar(t *testing.T) {
	c := newCluster(t)
	compose := writeTemp(t, `name: e2eside
services:
  web:
    image: `+testImage+`
  side:
    image: `+testImage+`
    network_mode: service:web
    environment: {PORT: "9090"}
  client:
    image: `+testImage+`
`)
	c.mustDev("up", "-d", "-f", compose)
	rows := c.ps("e2eside")
	for _, r := range rows {
		if r.Service == "side" {
			t.Fatalf("the sidecar has pods of its own: %v", rows)
		}
	}
	web, client := running(rows, "web"), running(rows, "client")
	if len(web) != 1 || len(client) != 1 {
		t.Fatalf("pods %v", rows)
	}
	// From the client, through web's name, to the sidecar's port; the
	// sidecar fetches web on localhost, and web answers with the pod's
	// hostname (which the sidecar shares).
	var body string
	eventually(t, 30*time.Second, "client -> web:9090 (sidecar) -> localhost:8080 (web)", func() error {
		var err error
		body, err = inPod(client[0], "/fetch", url.Values{"url": {"http://web:9090/fetch?url=http://localhost:8080/"}})
		if err != nil || !strings.Contains(body, "hello from "+web[0].Name) {
			return fmt.Errorf("%q, %v", body, err)
		}
		return nil
	})
	if host, err := inPod(client[0], "/fetch", url.Values{"url": {"http://web:9090/"}}); err != nil || !strings.Contains(host, "hello from "+web[0].Name) {
		t.Errorf("the sidecar's hostname: %q, %v; want the pod's, %s", host, err, web[0].Name)
	}
	eventually(t, 10*time.Second, "dev ps shows READY 2/2 for web, 1/1 for client", func() error {
		for _, r := range c.ps("e2eside") {
			if want := map[string]string{"web": "2/2", "client": "1/1"}[r.Service]; r.Ready != want {
				return fmt.Errorf("%s READY %q, want %q", r.Name, r.Ready, want)
			}
		}
		return nil
	})

	// -c picks the sidecar's container for logs and exec.
	if out := c.mustDev("logs", "-p", "e2eside", "-c", "side", "web"); !strings.Contains(out, "listening on :9090") || strings.Contains(out, ":8080") {
		t.Errorf("dev logs -c side web:\n%s\nwant the sidecar's log only (listening on :9090)", out)
	}
	if out := c.mustDev("logs", "-p", "e2eside", "web"); !strings.Contains(out, "listening on :8080") {
		t.Errorf("dev logs web:\n%s\nwant web's own log", out)
	}
	if out := c.mustDev("exec", "-p", "e2eside", "-c", "side", "web", "/app", "cat", "/proc/1/environ"); !strings.Contains(out, "PORT=9090") {
		t.Errorf("dev exec -c side web: %q, want the sidecar's environment", out)
	}
	if out, err := c.dev("exec", "-p", "e2eside", "-c", "nope", "web", "/app", "exit", "0"); err == nil || !strings.Contains(out, "its containers: web, side") {
		t.Errorf("dev exec -c nope: %v %q, want the pod's containers named", err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c.mustDev("scale", "-p", "e2eside", "web=3")
	eventually(t, 60*time.Second, "three pods of web, each with its sidecar", func() error {
		pods := running(c.ps("e2eside"), "web")
		if len(pods) != 3 {
			return fmt.Errorf("%d web pods", len(pods))
		}
		for _, p := range pods {
			ins, err := c.docker.ContainerInspect(ctx, p.Name+".side")
			if err != nil || !ins.State.Running {
				return fmt.Errorf("sidecar of %s: %v", p.Name, err)
			}
		}
		return nil
	})

	c.mustDev("down", "-p", "e2eside")
	eventually(t, 30*time.Second, "no container of the project left", func() error {
		cs, err := c.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("name", "e2eside-"))})
		if err != nil || len(cs) != 0 {
			return fmt.Errorf("%d containers, %v", len(cs), err)
		}
		return nil
	})
}
