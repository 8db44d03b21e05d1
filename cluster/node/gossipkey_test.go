package node

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
	"github.com/devhq/dev/gossip"
)

// TestGossipKeys: the member takes the state's key as its only one and
// saves it; a peer's newer key wins over a state that lags behind, and an
// older one changes nothing; a key installed behind its back goes at the
// next resync.
func TestGossipKeys(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, pkiDir), 0o700); err != nil {
		t.Fatal(err)
	}
	k1, k2, k3 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 32)
	g, err := gossip.New(gossip.Config{NodeName: "h1", BindAddr: "127.0.0.1", BindPort: gossip.AnyPort, Key: k1})
	if err != nil {
		t.Fatal(err)
	}
	st := state.New()
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	peer := api.GossipKeyResponse{Key: k3, At: t0.Add(2 * time.Minute)}
	asked := make(chan struct{}, 1)
	keys := newGossipKeys(g, st, dir, k1, slog.New(slog.DiscardHandler), func(context.Context) (api.GossipKeyResponse, bool) {
		select {
		case asked <- struct{}{}:
		default:
		}
		return peer, true
	})
	only := func(want []byte) error {
		if ks := g.Keys(); len(ks) != 1 || !bytes.Equal(ks[0], want) {
			return fmt.Errorf("gossip keys %d, first %x; want only %x", len(ks), first(ks), want[:1])
		}
		if b, _ := os.ReadFile(keys.file); !bytes.Equal(b, want) {
			return fmt.Errorf("saved key %x, want %x", b, want)
		}
		return nil
	}
	apply := func(cmds ...state.Command) {
		t.Helper()
		if err := st.Update(st.Index()+1, func(tx *state.Txn) error {
			for _, c := range cmds {
				if err := tx.Apply(c); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}

	// The state's key made at t0+1m; the peer has a newer one (t0+2m).
	apply(&state.SetCluster{Cluster: state.ClusterInfo{ID: "c", GossipKey: k1}},
		&state.RotateGossipKey{Key: k2, At: t0.Add(time.Minute)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- keys.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	<-asked
	waitFor(t, 5*time.Second, func() error { return only(k3) })
	// The state catches up to an older key: the peer's stays.
	apply(&state.PutNode{Node: api.Node{Name: "h2"}})
	if err := only(k3); err != nil {
		t.Fatalf("after a state change with the older key: %v", err)
	}
	// A newer rotation in the state wins.
	k4 := bytes.Repeat([]byte{4}, 32)
	apply(&state.RotateGossipKey{Key: k4, At: t0.Add(3 * time.Minute)})
	waitFor(t, 5*time.Second, func() error { return only(k4) })
	if keys.set(k2, t0.Add(time.Minute), "test") {
		t.Error("an older key was set")
	}
}

func first(ks [][]byte) []byte {
	if len(ks) == 0 || len(ks[0]) == 0 {
		return nil
	}
	return ks[0][:1]
}

// waitFor retries f every 10ms until it succeeds or within has passed.
func waitFor(t *testing.T, within time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", within, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
