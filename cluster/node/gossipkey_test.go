package node

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
	"github.com/devhq/dev/gossip"
)

// TestGossipKeys: the member takes the newest key, its state's or a
// peer's, as its only one and saves it with its generation; a state that
// lags behind a peer's answer does not take it back, but a state that
// moves on does, whatever generation a peer claimed (a node revoked since
// may have answered); a restart reads the saved generation.
func TestGossipKeys(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, pkiDir), 0o700); err != nil {
		t.Fatal(err)
	}
	key := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	g, err := gossip.New(gossip.Config{NodeName: "h1", BindAddr: "127.0.0.1", BindPort: gossip.AnyPort, Key: key(1)})
	if err != nil {
		t.Fatal(err)
	}
	st := state.New()
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
	only := func(want []byte, gen string) error {
		if ks := g.Keys(); len(ks) != 1 || !bytes.Equal(ks[0], want) {
			return fmt.Errorf("gossip keys %d, first %x; want only %x", len(ks), first(ks), want[:1])
		}
		if b, _ := os.ReadFile(filepath.Join(dir, pkiDir, gossipKeyFile)); !bytes.Equal(b, want) {
			return fmt.Errorf("saved key %x, want %x", first([][]byte{b}), want[:1])
		}
		if b, _ := os.ReadFile(filepath.Join(dir, pkiDir, gossipGenFile)); strings.TrimSpace(string(b)) != gen {
			return fmt.Errorf("saved generation %q, want %q", b, gen)
		}
		return nil
	}
	run := func(k *gossipKeys) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- k.Run(ctx) }()
		stop = sync.OnceFunc(func() {
			cancel()
			<-done
		})
		t.Cleanup(stop)
		return stop
	}
	// waitRound waits until Run has looked at the state after the last change.
	waitRound := func(k *gossipKeys) {
		t.Helper()
		want := k.rounds.Load() + 1
		waitFor(t, 5*time.Second, func() error {
			if k.rounds.Load() < want {
				return fmt.Errorf("state looked at %d times, want %d", k.rounds.Load(), want)
			}
			return nil
		})
	}

	// The state is at generation 1; a peer answers generation 2.
	apply(&state.SetCluster{Cluster: state.ClusterInfo{ID: "c", GossipKey: key(1)}},
		&state.Revoke{Revocation: api.Revocation{Kind: api.CertNode, Name: "h7"}},
		&state.RotateGossipKey{Key: key(2), Gen: 1})
	peer := api.GossipKeyResponse{Key: key(3), Gen: 2}
	ask := func(context.Context) []api.GossipKeyResponse {
		return []api.GossipKeyResponse{{Key: key(2), Gen: 1}, peer, {Key: key(1), Gen: 0}} // a stale node too
	}
	k := newGossipKeys(g, st, dir, key(1), slog.New(slog.DiscardHandler), ask)
	stop := run(k)
	waitFor(t, 5*time.Second, func() error { return only(key(3), "2 peer") })
	// A state change that leaves the generation: the peer's key stays.
	apply(&state.PutNode{Node: api.Node{Name: "h2"}})
	waitRound(k)
	if err := only(key(3), "2 peer"); err != nil {
		t.Fatalf("after a state change at the older generation: %v", err)
	}
	// The state reaches generation 2 with another key than the peer said:
	// the state wins.
	apply(&state.Revoke{Revocation: api.Revocation{Kind: api.CertNode, Name: "h8"}}, &state.RotateGossipKey{Key: key(4), Gen: 2})
	waitFor(t, 5*time.Second, func() error { return only(key(4), "2") })

	// A restart: the saved generation is read; a peer claiming a far
	// newer one is taken for now, and the state's next rotation wins.
	stop()
	peer = api.GossipKeyResponse{Key: key(9), Gen: 99}
	k2 := newGossipKeys(g, st, dir, key(4), slog.New(slog.DiscardHandler), ask)
	if k2.gen != 2 || k2.fromPeer {
		t.Fatalf("read generation %d (from a peer: %v), want 2 from the state", k2.gen, k2.fromPeer)
	}
	if !k2.refresh(context.Background()) {
		t.Fatal("a peer's newer generation was not taken")
	}
	k2.fromState(mustCluster(t, st)) // the state at generation 2: not newer
	if err := only(key(9), "99 peer"); err != nil {
		t.Fatal(err)
	}
	apply(&state.Revoke{Revocation: api.Revocation{Kind: api.CertNode, Name: "h9"}}, &state.RotateGossipKey{Key: key(5), Gen: 3})
	k2.fromState(mustCluster(t, st))
	if err := only(key(5), "3"); err != nil {
		t.Fatalf("the state moved on after a peer's key: %v", err)
	}
}

func mustCluster(t *testing.T, st *state.Store) state.ClusterInfo {
	t.Helper()
	ci, ok := st.Cluster()
	if !ok {
		t.Fatal("no cluster record")
	}
	return ci
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
