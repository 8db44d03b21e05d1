package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
)

// TestIdleClusterWritesNothing: heartbeats live in the leader's memory, so a
// node that runs a project and changes nothing leaves the raft index where
// it is. With the test timers the agent reports every second: the window
// below holds ten reports, each a raft write before.
func TestIdleClusterWritesNothing(t *testing.T) {
	c := newCluster(t)
	compose := writeTemp(t, "name: e2eidle\nservices:\n  web:\n    image: "+testImage+"\n    deploy:\n      replicas: 2\n")
	c.mustDev("up", "-d", "-f", compose)
	cl, err := api.NewClient("unix://"+filepath.Join(c.dir, "dev.sock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	index := func() uint64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := cl.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.Index
	}
	// The deployment's own writes (pods placed, started, healthy) end once
	// both pods run: from there on the cluster is idle.
	eventually(t, 30*time.Second, "both pods running", func() error {
		if n := len(running(c.ps("e2eidle"), "web")); n != 2 {
			return fmt.Errorf("%d running", n)
		}
		return nil
	})
	start, at := index(), time.Now()
	const window = 10 * time.Second
	for time.Since(at) < window {
		if now := index(); now != start {
			t.Fatalf("raft index moved from %d to %d %s into an idle window (heartbeats must not be written); written: %s",
				start, now, time.Since(at).Round(100*time.Millisecond), writtenSince(t, cl, start))
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("raft index stayed at %d for %s with the agent reporting every second", start, window)
	c.mustDev("down", "-p", "e2eidle")
}

// writtenSince names the pods and nodes whose records changed after index.
func writtenSince(t *testing.T, cl *api.HTTPClient, index uint64) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out []string
	if pods, err := cl.Pods(ctx, api.PodQuery{}); err == nil {
		for _, p := range pods.Pods {
			if p.ModifyIndex > index {
				out = append(out, fmt.Sprintf("pod %s %+v", p.Name, p.Status))
			}
		}
	}
	if nodes, err := cl.Nodes(ctx); err == nil {
		for _, n := range nodes {
			if n.ModifyIndex > index {
				out = append(out, fmt.Sprintf("node %s status %s load %.2f", n.Name, n.Status, n.Load))
			}
		}
	}
	return fmt.Sprint(out)
}
