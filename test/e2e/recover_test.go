package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const recoverCompose = `name: e2erecover
services:
  web:
    image: ` + testImage + `
    command: ["serve"]
    deploy:
      replicas: 2
`

// TestRecover: two nodes, only the first votes. dev recover on the second
// is refused while the first answers; once the first is gone for good
// (agent stopped, data dir removed), dev recover makes the second the only
// voter from its own state: its agent starts as a one-voter cluster, dev
// scale works there, and the pods come back on it.
func TestRecover(t *testing.T) {
	hosts := newHosts(t, 2)
	ms := newMultiCluster(t, hosts, nil)
	h1, h2 := ms[0], ms[1]
	h1.mustDev(t, "up", "-d", "-f", writeTemp(t, recoverCompose))
	eventually(t, 60*time.Second, "h2 a member, 2 web pods running", func() error {
		if n := h1.nodes(t)[h2.name]; n.Status != "ready" {
			return fmt.Errorf("h2 %+v", n)
		}
		if r := running(h1.pods(t, "e2erecover"), "web"); len(r) != 2 {
			return fmt.Errorf("%d running", len(r))
		}
		return nil
	})

	// The voter answers: refused, and h2's state is left as it was.
	h2.stop()
	out, err := h2.dev(t, "recover", "--node-name", h2.name)
	if err == nil || !strings.Contains(out, "answers") {
		t.Fatalf("dev recover while the voter runs: err=%v, want it refused:\n%s", err, out)
	}

	// The voter is gone for good.
	h1.stop()
	removeAgentDir(t, h1.dir)
	out = h2.mustDev(t, "recover", "--node-name", h2.name)
	if !strings.Contains(out, "only raft voter") {
		t.Errorf("dev recover:\n%s", out)
	}
	startMemberAgent(t, h2, agentArgs(h2.h, h2.name), "nodes")
	eventually(t, 30*time.Second, "h2 leads", func() error {
		if n := h2.nodes(t)[h2.name]; n.Role != "leader" {
			return fmt.Errorf("h2 %+v", n)
		}
		return nil
	})
	h2.mustDev(t, "scale", "-p", "e2erecover", "web=3", "--timeout", "2m")
	eventually(t, 90*time.Second, "3 web pods running on h2", func() error {
		r := running(h2.pods(t, "e2erecover"), "web")
		on := 0
		for _, p := range r {
			if p.Node == h2.name {
				on++
			}
		}
		if on != 3 || len(r) != 3 {
			return fmt.Errorf("running: %+v", r)
		}
		return nil
	})
}
