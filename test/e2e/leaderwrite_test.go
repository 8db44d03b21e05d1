package e2e

import (
	"fmt"
	"testing"
	"time"
)

// TestWriteFollowsLeader: a write issued on a survivor 0.3 s after the raft
// leader's link is cut (nothing answers, nothing refuses) is forwarded to
// the old leader, gets no answer, and is sent again to the leader elected
// meanwhile: `dev scale` answers within seconds, not when the CLI gives up.
func TestWriteFollowsLeader(t *testing.T) {
	hosts := newHosts(t, 3)
	ms := newMultiCluster(t, hosts, nil)
	compose := writeTemp(t, "name: e2eleaderw\nservices:\n  web:\n    image: "+testImage+"\n")
	ms[0].mustDev(t, "up", "-d", "-f", compose)

	var leader, other *member
	eventually(t, 30*time.Second, "three voters and a leader", func() error {
		nodes := ms[0].nodes(t)
		voters := 0
		leader = nil
		for _, m := range ms {
			switch nodes[m.name].Role {
			case "leader":
				leader = m
				voters++
			case "voter":
				voters++
			}
		}
		if leader == nil || voters != 3 {
			return fmt.Errorf("nodes %v", nodes)
		}
		return nil
	})
	for _, m := range ms {
		if m != leader {
			other = m
			break
		}
	}

	leader.h.Cut(t)
	defer leader.h.Restore(t)
	time.Sleep(300 * time.Millisecond) // the write comes right after the cut, as in the fault test
	start := time.Now()
	out, err := other.dev(t, "scale", "-p", "e2eleaderw", "web=2", "-d")
	took := time.Since(start)
	if err != nil {
		t.Fatalf("dev scale on %s, %s after cutting the leader %s: %v (after %s)\n%s", other.name, 300*time.Millisecond, leader.name, err, took.Round(100*time.Millisecond), out)
	}
	t.Logf("dev scale on %s answered %s after it was issued, 0.3 s after the leader %s was cut off", other.name, took.Round(100*time.Millisecond), leader.name)
	// Before writes followed leadership this took the CLI's whole 60 s and
	// failed. An election takes about a second; a forward attempt 3 s.
	if took > 15*time.Second {
		t.Errorf("dev scale took %s: want it answered within seconds of the election", took.Round(100*time.Millisecond))
	}
	eventually(t, 60*time.Second, "web at 2 on the survivors", func() error {
		if n := len(running(other.pods(t, "e2eleaderw"), "web")); n < 2 {
			return fmt.Errorf("%d running", n)
		}
		return nil
	})
}
