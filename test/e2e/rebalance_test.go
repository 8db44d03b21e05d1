package e2e

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

// rebalanceCompose: six healthy replicas behind a published port.
const rebalanceCompose = `name: e2erebalance
services:
  web:
    image: ` + testImage + `
    command: ["serve"]
    ports:
      - "18098:8080"
    healthcheck:
      test: ["CMD", "/app", "health"]
      interval: 1s
      timeout: 1s
      retries: 1
    deploy:
      replicas: 6
`

// TestRebalance: six replicas placed on two nodes while the third is
// cordoned move to 2/2/2 once it is uncordoned, one at a time, each
// replacement ready before its pod stops: never fewer than six ready
// pods, no failed request on the published port (on a node that gives
// pods away and on the one that takes them). (That a balanced cluster
// and an unchanged dev up move nothing is shown by the controller's
// tests, where "nothing" is a plan, not a wait.)
func TestRebalance(t *testing.T) {
	hosts := newHosts(t, 3)
	ms := newMultiCluster(t, hosts, nil)
	cli := ms[0]
	third := hosts[2].Name
	cli.mustDev(t, "node", "cordon", third)
	cli.mustDev(t, "up", "-d", "-f", writeTemp(t, rebalanceCompose))

	ready := func(rows []podRow) (map[string]int, int, int) {
		per, n, all := map[string]int{}, 0, 0
		for _, p := range rows {
			if p.Service != "web" {
				continue
			}
			all++
			if p.State == "running" && p.Health == "healthy" {
				per[p.Node]++
				n++
			}
		}
		return per, n, all
	}
	eventually(t, 90*time.Second, "6 ready web pods on the two uncordoned nodes", func() error {
		per, n, all := ready(cli.pods(t, "e2erebalance"))
		if n != 6 || all != 6 || per[third] != 0 || len(per) != 2 {
			return fmt.Errorf("ready per node %v (%d ready, %d pods)", per, n, all)
		}
		return nil
	})

	loops := map[string]*requestLoop{
		"published port on " + hosts[0].Name: startLoop("http://" + hosts[0].IP + ":18098/"),
		"published port on " + third:         startLoop("http://" + hosts[2].IP + ":18098/"),
	}
	time.Sleep(300 * time.Millisecond) // some requests before

	cli.mustDev(t, "node", "uncordon", third)
	want := map[string]int{hosts[0].Name: 2, hosts[1].Name: 2, third: 2}
	deadline := time.Now().Add(3 * time.Minute)
	minReady := 6
	for {
		rows := cli.pods(t, "e2erebalance")
		per, n, all := ready(rows)
		if rows != nil && n < minReady {
			minReady = n
			t.Errorf("only %d ready web pods during the rebalance (want >= 6): %v", n, per)
		}
		if n == 6 && all == 6 && reflect.DeepEqual(per, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no 2/2/2 spread after 3 minutes: ready per node %v, %d pods", per, all)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // and some after
	for name, l := range loops {
		ok, failed, first := l.finish()
		t.Logf("%s: %d requests succeeded, %d failed", name, ok, failed)
		if failed != 0 || ok < 20 {
			t.Errorf("requests to %s during the rebalance: %d of %d failed (first: %v)", name, failed, ok+failed, first)
		}
	}
}
