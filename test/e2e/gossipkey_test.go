package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devhq/dev/gossip"
)

// TestGossipKeyRotation on three hosts, h2 and h3 workers: removing a node
// (dev node rm) rotates the gossip key. The nodes left take the new key and
// stay ready; the removed node keeps the old one, which gossip no longer
// takes (a member holding it cannot join, one holding the new key can),
// and no file of its data dir holds the new key. A node that was down
// through the rotation, and dropped from raft meanwhile, gets the new key
// from a peer's API when it starts again and is ready again.
func TestGossipKeyRotation(t *testing.T) {
	hosts := newHosts(t, 3)
	ms := newMultiClusterWith(t, hosts, nil, func(h *testHost) []string { return agentArgs(h, h.Name) }, "h2", "h3")
	keyOf := func(m *member) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(m.dir, "pki", "gossip.key"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	old := keyOf(ms[0])
	for _, m := range ms[1:] {
		if !bytes.Equal(keyOf(m), old) {
			t.Fatalf("%s joined with another gossip key than h1's", m.name)
		}
	}

	// h2 goes down, long enough to be dropped from raft (10 s with --fast).
	ms[1].stop()
	eventually(t, 60*time.Second, "h2 down and out of raft", func() error {
		n, ok := ms[0].nodes(t)["h2"]
		if !ok || n.Status != "down" || n.Role != "" {
			return fmt.Errorf("h2 is %+v", n)
		}
		return nil
	})

	ms[0].mustDev(t, "node", "rm", "h3", "--force")
	var rotated []byte
	eventually(t, 30*time.Second, "a new gossip key on h1", func() error {
		if rotated = keyOf(ms[0]); bytes.Equal(rotated, old) {
			return errors.New("h1 still has the old key")
		}
		return nil
	})
	if !bytes.Equal(keyOf(ms[2]), old) {
		t.Error("the removed node h3 changed its gossip key")
	}
	walkFiles(t, ms[2].dir, func(path string, b []byte) {
		if bytes.Contains(b, rotated) {
			t.Errorf("the removed node's %s holds the new gossip key", path)
		}
	})

	// Gossip from outside, as the removed node would speak it.
	if err := gossipJoin(t, old, hosts[0].IP); err == nil {
		t.Error("a member with the old key joined h1's gossip")
	}
	if err := gossipJoin(t, rotated, hosts[0].IP); err != nil {
		t.Errorf("a member with the new key: %v (the test's probe is wrong, or h1 does not use the new key)", err)
	}

	// h2 starts again with the old key in its file and a state from before.
	startMemberAgent(t, ms[1], agentArgs(hosts[1], "h2"), "nodes")
	eventually(t, 90*time.Second, "h2 ready again, a worker in raft", func() error {
		n, ok := ms[0].nodes(t)["h2"]
		if !ok || n.Status != "ready" || n.Role != "worker" {
			return fmt.Errorf("h2 is %+v", n)
		}
		return nil
	})
	if !bytes.Equal(keyOf(ms[1]), rotated) {
		t.Error("h2 did not save the new gossip key")
	}
	// Exactly one node leads, as each node's metrics say.
	leaders := 0.0
	for _, m := range ms[:2] {
		fams, err := scrape(filepath.Join(m.dir, "dev.sock"))
		if err != nil {
			t.Fatalf("scrape %s: %v", m.name, err)
		}
		v, ok := metricValue(fams, "dev_raft_leader", nil)
		if !ok {
			t.Fatalf("%s has no dev_raft_leader", m.name)
		}
		leaders += v
	}
	if leaders != 1 {
		t.Errorf("dev_raft_leader sums to %v over h1 and h2, want 1", leaders)
	}
	if out := ms[0].mustDev(t, "nodes"); strings.Contains(out, "h3") {
		t.Errorf("dev nodes lists the removed h3:\n%s", out)
	}
}

// gossipJoin runs a gossip member with key on the hosts' bridge and joins
// the gossip of the node at ip; it leaves and stops before returning.
func gossipJoin(t *testing.T, key []byte, ip string) error {
	t.Helper()
	g, err := gossip.New(gossip.Config{NodeName: "e2e-probe", BindAddr: hostsGateway, BindPort: gossip.AnyPort, Key: key, Fast: true, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	select {
	case <-g.Ready():
	case err := <-done:
		t.Fatalf("gossip probe: %v", err)
	}
	_, err = g.Join(ctx, []string{ip + ":7946"})
	if err == nil {
		_ = g.Leave()
	}
	return err
}
