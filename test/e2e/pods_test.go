package e2e

import (
	"context"
	"fmt"
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
	if got, err := resolveIn(client, "tasks.web"); err != nil || len(got) != 1 || got[0] != web.IP {
		t.Fatalf("tasks.web = %v, %v; want [%s]", got, err, web.IP)
	}

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
