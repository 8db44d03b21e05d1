package raftstore

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// TestObserveApply: Config.ObserveApply is told of every write the leader
// applied, with how long it took.
func TestObserveApply(t *testing.T) {
	var (
		mu   sync.Mutex
		took []time.Duration
	)
	r, err := Open(Config{DataDir: t.TempDir(), NodeID: "n1", BindAddr: "127.0.0.1:" + freePort(t), Bootstrap: true, Fast: true,
		ObserveApply: func(d time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			took = append(took, d)
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"n1", "n2"} {
		start := time.Now()
		if _, err := r.Apply(ctx, &state.PutNode{Node: api.Node{Name: name, Status: api.NodeReady}}); err != nil {
			t.Fatal(err)
		}
		elapsed := time.Since(start)
		mu.Lock()
		last := took[len(took)-1]
		mu.Unlock()
		if last <= 0 || last > elapsed {
			t.Errorf("apply of %s observed %v, want more than 0 and at most the %v Apply took", name, last, elapsed)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(took) != 2 {
		t.Errorf("ObserveApply called %d times for 2 writes", len(took))
	}
}
