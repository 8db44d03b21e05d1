package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/devhq/dev/cluster/agent/docker"
	"github.com/devhq/dev/cluster/api"
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
  debug:
    image: `+testImage+`
    network_mode: service:web
    pid: service:web
    environment: {PORT: "9091"}
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
	// pid: service:web: debug sees web's processes (and pause, the PID 1
	// of the pod's namespace); side, without it, only its own.
	procs := func(port string) string {
		out, err := inPod(client[0], "/fetch", url.Values{"url": {"http://web:" + port + "/procs"}})
		if err != nil {
			t.Errorf("processes seen on port %s: %v", port, err)
		}
		return out
	}
	apps := func(s string) int { return strings.Count(s, " app\n") }
	if got := procs("9091"); apps(got) != 2 || !strings.Contains(got, "1 pause\n") {
		t.Errorf("debug (pid: service:web) sees:\n%swant web's app, its own and pause as PID 1", got)
	}
	if got := procs("9090"); apps(got) != 1 {
		t.Errorf("side sees:\n%swant its own process only", got)
	}
	eventually(t, 10*time.Second, "dev ps shows READY 3/3 for web, 1/1 for client", func() error {
		for _, r := range c.ps("e2eside") {
			if want := map[string]string{"web": "3/3", "client": "1/1"}[r.Service]; r.Ready != want {
				return fmt.Errorf("%s READY %q, want %q", r.Name, r.Ready, want)
			}
		}
		return nil
	})

	// -c picks the sidecar's container for logs and exec.
	if out := c.mustDev("logs", "-p", "e2eside", "-c", "side", "web"); !strings.Contains(out, "listening on :9090") || strings.Contains(out, ":8080") {
		t.Errorf("dev logs -c side web:\n%s\nwant the sidecar's log only (listening on :9090)", out)
	}
	// Without -c: every container of the pods, each with its prefix.
	if out := c.mustDev("logs", "-p", "e2eside", "web"); !regexp.MustCompile(`(?m)^web-1 +\| .*listening on :8080 `).MatchString(out) ||
		!regexp.MustCompile(`(?m)^web-1/side +\| .*listening on :9090 `).MatchString(out) ||
		!regexp.MustCompile(`(?m)^web-1/debug +\| .*listening on :9091 `).MatchString(out) {
		t.Errorf("dev logs web:\n%s\nwant the logs of web-1, web-1/side and web-1/debug", out)
	}
	if out := c.mustDev("exec", "-p", "e2eside", "-c", "side", "web", "/app", "cat", "/proc/1/environ"); !strings.Contains(out, "PORT=9090") {
		t.Errorf("dev exec -c side web: %q, want the sidecar's environment", out)
	}
	if out, err := c.dev("exec", "-p", "e2eside", "-c", "nope", "web", "/app", "exit", "0"); err == nil || !strings.Contains(out, "its containers: web, debug, side") {
		t.Errorf("dev exec -c nope: %v %q, want the pod's containers named", err, out)
	}

	// An agent restart adopts the pod's containers, sidecars included,
	// without restarting any.
	names := []string{web[0].Name, api.SidecarContainer(web[0].Name, "side"), api.SidecarContainer(web[0].Name, "debug"), docker.InfraName(web[0].Name)}
	before := map[string][2]string{}
	for _, n := range names {
		id, _, started := c.lcInspect(n)
		before[n] = [2]string{id, started}
	}
	c.stopAgent()
	c.startAgent()
	eventually(t, 30*time.Second, "the agent answers again", func() error {
		_, err := c.dev("ps", "-p", "e2eside")
		return err
	})
	for _, n := range names {
		if id, state, started := c.lcInspect(n); id != before[n][0] || state != "running" || started != before[n][1] {
			t.Errorf("%s after an agent restart: %s %s started %s; want %s running since %s", n, id, state, started, before[n][0], before[n][1])
		}
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
			for _, sc := range []string{"side", "debug"} {
				ins, err := c.docker.ContainerInspect(ctx, api.SidecarContainer(p.Name, sc))
				if err != nil || !ins.State.Running {
					return fmt.Errorf("sidecar %s of %s: %v", sc, p.Name, err)
				}
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

// TestHostNetwork: a service with network_mode: host runs in the node's
// network: other pods reach it by its name (the VIP) and tasks.<name>
// gives the node's address on the pod network; a second pod that serves
// the same port stays pending with the reason, as nothing else could bind
// it on the one node.
func TestHostNetwork(t *testing.T) {
	c := newCluster(t)
	port := strconv.Itoa(freeTCPPort(t))
	compose := writeTemp(t, `name: e2ehost
services:
  agent:
    image: `+testImage+`
    network_mode: host
    environment: {PORT: "`+port+`"}
    expose: ["`+port+`"]
    deploy: {replicas: 2}
  client:
    image: `+testImage+`
`)
	// agent-2 never fits: up deploys everything and times out waiting.
	if out, err := c.dev("up", "-d", "-f", compose, "--timeout", "15s"); err == nil || !strings.Contains(out, "did not converge") {
		t.Fatalf("dev up: %v\n%s\nwant a time-out (agent-2 cannot be placed)", err, out)
	}
	defer c.dev("down", "-p", "e2ehost") //nolint:errcheck // best effort on failure
	var agent podRow
	eventually(t, 30*time.Second, "one agent pod running, the other pending on its port", func() error {
		rows := c.ps("e2ehost")
		run := running(rows, "agent")
		if len(run) != 1 || len(running(rows, "client")) != 1 {
			return fmt.Errorf("pods %v", rows)
		}
		agent = run[0]
		for _, r := range rows {
			if r.Service == "agent" && r.Name != agent.Name && !strings.Contains(r.Message, "host port "+port+"/tcp in use") {
				return fmt.Errorf("%s: %s %q, want pending for host port %s/tcp", r.Name, r.State, r.Message, port)
			}
		}
		return nil
	})
	client := running(c.ps("e2ehost"), "client")[0]
	host, _ := os.Hostname()
	eventually(t, 30*time.Second, "client -> agent (VIP) -> the node's network", func() error {
		body, err := inPod(client, "/fetch", url.Values{"url": {"http://agent:" + port + "/"}})
		if err != nil || !strings.Contains(body, "hello from "+host) {
			return fmt.Errorf("%q, %v; want the node's hostname %s", body, err, host)
		}
		return nil
	})
	if got, err := resolveIn(client, "tasks.agent"); err != nil || len(got) != 1 || got[0] != agent.IP {
		t.Errorf("tasks.agent = %v, %v; want [%s]", got, err, agent.IP)
	}
}

// TestSidecarExample runs examples/sidecar as its README says: the
// published port is served by each pod's ambassador, which forwards to the
// app on the pod's loopback; both containers of a pod are ready; the
// ambassador sees the app's process (pid: service:app).
func TestSidecarExample(t *testing.T) {
	c := newCluster(t)
	dir := exampleCopy(t, t.TempDir(), "sidecar", "app", "ambassador")
	c.mustDev("up", "-d", "--build", "-f", filepath.Join(dir, "compose.yaml"))
	defer c.dev("down", "-p", "sidecar") //nolint:errcheck // best effort on failure
	pods := running(c.ps("sidecar"), "app")
	if len(pods) != 2 {
		t.Fatalf("app pods %v, want 2", pods)
	}
	for _, p := range pods {
		if p.Ready != "2/2" {
			t.Errorf("%s READY %s, want 2/2", p.Name, p.Ready)
		}
	}
	seen := map[string]bool{}
	fresh := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}} // a new connection, a new pick
	eventually(t, 30*time.Second, "both pods answer on the published port through their ambassador", func() error {
		resp, err := fresh.Get("http://127.0.0.1:8088/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		amb := resp.Header.Get("X-Ambassador")
		if resp.StatusCode != http.StatusOK || amb == "" || string(b) != "Hello from app in pod "+amb+"\n" {
			return fmt.Errorf("%s, ambassador %q: %q", resp.Status, amb, b)
		}
		seen[amb] = true
		if len(seen) < 2 {
			return fmt.Errorf("answered by %v so far", seen)
		}
		return nil
	})
	if out := c.mustDev("exec", "-p", "sidecar", "-c", "ambassador", "app", "/ambassador", "-health"); out != "" {
		t.Errorf("dev exec -c ambassador app /ambassador -health: %q", out)
	}
	if out := c.mustDev("logs", "-p", "sidecar", "app"); !strings.Contains(out, "/ambassador | ") || !strings.Contains(out, "GET / from") ||
		!strings.Contains(out, "app "+pods[0].Name+" listening on 127.0.0.1:8081") {
		t.Errorf("dev logs app:\n%s\nwant both containers' logs, the ambassador's requests among them", out)
	}
}
