package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const engineCompose = `name: e2eengine
services:
  web:
    image: ` + testImage + `
    command: ["serve"]
    ports:
      - "18098:8080"
    deploy:
      replicas: 3
`

// TestEngineUnreachable: a host whose Docker Engine stops answering (its
// dockerd stopped with SIGSTOP: the containers run on) shows "engine
// unreachable" in dev nodes and in dev events; it takes no new pod (a
// scale to 6 places the 3 new pods on the other nodes), its pod is not
// made again elsewhere, and requests to the published port keep being
// answered. When the Engine answers again, the node is ready again.
func TestEngineUnreachable(t *testing.T) {
	hosts := newHosts(t, 3)
	ms := newMultiCluster(t, hosts, nil)
	cli, victim := ms[0], hosts[2]
	cli.mustDev(t, "up", "-d", "-f", writeTemp(t, engineCompose))
	webPerNode := func() map[string]int {
		per := map[string]int{}
		for _, p := range running(cli.pods(t, "e2eengine"), "web") {
			per[p.Node]++
		}
		return per
	}
	eventually(t, 90*time.Second, "3 web pods, one per node", func() error {
		if per := webPerNode(); len(per) != 3 || sum(per) != 3 {
			return fmt.Errorf("web pods per node %v", per)
		}
		return nil
	})
	var victimPod podRow
	for _, p := range running(cli.pods(t, "e2eengine"), "web") {
		if p.Node == victim.Name {
			victimPod = p
		}
	}

	pid := victim.cmd.Process.Pid // dockerd's own (nsenter execs it)
	var resume sync.Once
	cont := func() { resume.Do(func() { _ = syscall.Kill(pid, syscall.SIGCONT) }) }
	t.Cleanup(cont) // before the hosts' cleanup stops the engines: on failure too
	loop := startLoop("http://" + hosts[0].IP + ":18098/")
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("stop dockerd of %s: %v", victim.Name, err)
	}

	eventually(t, 30*time.Second, "dev nodes shows "+victim.Name+"'s engine unreachable", func() error {
		var nodes []struct {
			Name              string `json:"name"`
			Status            string `json:"status"`
			EngineUnreachable bool   `json:"engine_unreachable"`
		}
		if err := json.Unmarshal([]byte(cli.mustDev(t, "nodes", "-o", "json")), &nodes); err != nil {
			return err
		}
		for _, n := range nodes {
			if n.Name == victim.Name && (!n.EngineUnreachable || n.Status != "ready") {
				return fmt.Errorf("%s: %+v", n.Name, n)
			}
		}
		for _, line := range strings.Split(cli.mustDev(t, "nodes"), "\n") {
			if strings.HasPrefix(line, victim.Name+" ") && !strings.Contains(line, "engine unreachable") {
				return fmt.Errorf("dev nodes: %s", line)
			}
		}
		return nil
	})
	if ev := cli.mustDev(t, "events"); !strings.Contains(ev, "the Docker Engine of "+victim.Name+" does not answer") {
		t.Errorf("dev events while %s's engine does not answer:\n%s", victim.Name, ev)
	}

	// New pods go elsewhere; the victim's pod stays, and nothing is
	// duplicated.
	cli.mustDev(t, "scale", "-p", "e2eengine", "-d", "web=6")
	eventually(t, 60*time.Second, "6 running web pods, the new ones off "+victim.Name, func() error {
		if per := webPerNode(); sum(per) != 6 || per[victim.Name] != 1 {
			return fmt.Errorf("web pods per node %v", per)
		}
		return nil
	})
	stayed := false
	for _, p := range running(cli.pods(t, "e2eengine"), "web") {
		if p.Name == victimPod.Name {
			stayed = p.Node == victim.Name && p.ContainerID == victimPod.ContainerID
		}
	}
	if !stayed {
		t.Errorf("%s (on %s) was moved or replaced while its node's engine did not answer: %+v", victimPod.Name, victim.Name, cli.pods(t, "e2eengine"))
	}
	if ev := cli.mustDev(t, "events"); strings.Contains(ev, "lost with node") {
		t.Errorf("pods were made again elsewhere:\n%s", ev)
	}
	ok, failed, first := loop.finish()
	t.Logf("while %s's engine did not answer: %d requests succeeded, %d failed", victim.Name, ok, failed)
	if failed != 0 || ok < 20 {
		t.Errorf("requests to the published port while %s's engine did not answer: %d of %d failed (first: %v)", victim.Name, failed, ok+failed, first)
	}

	cont()
	eventually(t, 30*time.Second, victim.Name+" ready again", func() error {
		for _, line := range strings.Split(cli.mustDev(t, "nodes"), "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[0] == victim.Name && f[2] != "ready" {
				return fmt.Errorf("dev nodes: %s", line)
			}
		}
		return nil
	})
	if ev := cli.mustDev(t, "events"); !strings.Contains(ev, "the Docker Engine of "+victim.Name+" answers again") {
		t.Errorf("dev events after %s's engine is back:\n%s", victim.Name, ev)
	}
}
