package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// drainCompose: web moves (3 healthy replicas behind a published port),
// db keeps its data in a named volume on its node and cannot.
const drainCompose = `name: e2edrain
services:
  web:
    image: ` + testImage + `
    command: ["serve"]
    ports:
      - "18097:8080"
    healthcheck:
      test: ["CMD", "/app", "health"]
      interval: 1s
      timeout: 1s
      retries: 1
    deploy:
      replicas: 3
  db:
    image: ` + testImage + `
    command: ["serve"]
    volumes:
      - data:/data
volumes:
  data: {}
`

// nodeStatusOf returns node's STATUS column in dev nodes' table.
func nodeStatusOf(t *testing.T, m *member, node string) string {
	t.Helper()
	for _, line := range strings.Split(m.mustDev(t, "nodes"), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[0] == node {
			return f[2]
		}
	}
	return ""
}

// TestDrainWithoutFailedRequests: dev node drain moves a node's pods to
// the other nodes, each replacement ready before its pod stops: requests
// to the published port (on the drained node and another) and to the
// service's VIP never fail. The pod whose data is on the node (a named
// volume) stays and runs on; drain names it and exits non-zero. The node
// is left cordoned (dev nodes), dev events says so; a node with nothing
// pinned drains with exit 0, and uncordon takes pods again.
func TestDrainWithoutFailedRequests(t *testing.T) {
	hosts := newHosts(t, 3)
	ms := newMultiCluster(t, hosts, nil)
	cli := ms[0]
	cli.mustDev(t, "up", "-d", "-f", writeTemp(t, drainCompose))

	var db podRow
	eventually(t, 90*time.Second, "3 ready web pods, one per node, and db running", func() error {
		per, ready := map[string]int{}, 0
		db = podRow{}
		for _, p := range cli.pods(t, "e2edrain") {
			switch {
			case p.Service == "web" && p.State == "running":
				per[p.Node]++
				if p.Health == "healthy" {
					ready++
				}
			case p.Service == "db" && p.State == "running":
				db = p
			}
		}
		if ready != 3 || len(per) != 3 || db.Node == "" {
			return fmt.Errorf("web per node %v (%d healthy), db on %q", per, ready, db.Node)
		}
		return nil
	})
	victim, other := db.Node, ""
	for _, h := range hosts {
		if h.Name != victim {
			other = h.Name
		}
	}
	ip := map[string]string{}
	byName := map[string]*testHost{}
	for _, h := range hosts {
		ip[h.Name], byName[h.Name] = h.IP, h
	}
	var vip string
	var rows []serviceRow
	_ = json.Unmarshal([]byte(cli.mustDev(t, "services", "-p", "e2edrain", "-o", "json")), &rows)
	for _, r := range rows {
		if r.Name == "web" {
			vip = r.VIP
		}
	}
	if vip == "" {
		t.Fatalf("no VIP for web in dev services: %+v", rows)
	}
	viaVIP := func(from string) func() (string, error) {
		return func() (string, error) {
			resp, err := byName[from].HTTPClient(3 * time.Second).Get("http://" + vip + ":8080/")
			if err != nil {
				return "", err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("%s", resp.Status)
			}
			return string(b), err
		}
	}
	webPerNode := func() map[string]int {
		per := map[string]int{}
		for _, p := range running(cli.pods(t, "e2edrain"), "web") {
			per[p.Node]++
		}
		return per
	}
	loops := map[string]*requestLoop{
		"published port on the drained node": startLoop("http://" + ip[victim] + ":18097/"),
		"published port on " + other:         startLoop("http://" + ip[other] + ":18097/"),
		"the VIP from " + other:              startLoopWith(viaVIP(other)),
	}
	finish := func(what string) {
		t.Helper()
		for name, l := range loops {
			ok, failed, first := l.finish()
			t.Logf("%s, %s: %d requests succeeded, %d failed", what, name, ok, failed)
			if failed != 0 || ok < 20 {
				t.Errorf("%s, requests to %s: %d of %d failed (first: %v)", what, name, failed, ok+failed, first)
			}
		}
	}
	time.Sleep(300 * time.Millisecond) // some requests before the drain

	start := time.Now()
	out, err := cli.dev(t, "node", "drain", victim, "--timeout", "2m")
	took := time.Since(start)
	time.Sleep(300 * time.Millisecond) // and some after
	finish("while draining " + victim)
	t.Logf("dev node drain %s took %s:\n%s", victim, took.Round(100*time.Millisecond), out)
	if err == nil || !strings.Contains(out, "db-1 keep running there") {
		t.Errorf("dev node drain of the node holding db's volume: err=%v, want it to fail naming db-1:\n%s", err, out)
	}
	if per := webPerNode(); per[victim] != 0 || sum(per) != 3 {
		t.Errorf("web pods per node after draining %s: %v, want 3 on the others", victim, per)
	}
	dbs := running(cli.pods(t, "e2edrain"), "db")
	if len(dbs) != 1 || dbs[0].Node != victim || dbs[0].ContainerID != db.ContainerID {
		t.Errorf("db after the drain: %+v, want the same container still running on %s", dbs, victim)
	}
	if st := nodeStatusOf(t, cli, victim); st != "ready,cordoned" {
		t.Errorf("dev nodes shows %s as %q after the drain, want ready,cordoned", victim, st)
	}
	if ev := cli.mustDev(t, "events"); !strings.Contains(ev, "draining "+victim) || !strings.Contains(ev, victim+" drained; it stays cordoned") {
		t.Errorf("dev events after the drain:\n%s", ev)
	}

	// A node with nothing pinned drains completely: exit 0.
	cli.mustDev(t, "node", "uncordon", victim)
	if st := nodeStatusOf(t, cli, victim); st != "ready" {
		t.Errorf("dev nodes shows %s as %q after uncordon, want ready", victim, st)
	}
	loops = map[string]*requestLoop{
		"published port on the drained node": startLoop("http://" + ip[other] + ":18097/"),
		"published port on " + victim:        startLoop("http://" + ip[victim] + ":18097/"),
		"the VIP from " + victim:             startLoopWith(viaVIP(victim)),
	}
	time.Sleep(300 * time.Millisecond)
	out = cli.mustDev(t, "node", "drain", other)
	time.Sleep(300 * time.Millisecond)
	finish("while draining " + other)
	if !strings.Contains(out, "node "+other+" drained") {
		t.Errorf("dev node drain %s:\n%s", other, out)
	}
	if per := webPerNode(); per[other] != 0 || sum(per) != 3 {
		t.Errorf("web pods per node after draining %s: %v, want 3 on the others", other, per)
	}
	cli.mustDev(t, "node", "uncordon", other)
}
