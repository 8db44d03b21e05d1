package manager

import (
	"bytes"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// TestGossipKeyStep walks a rotation from a node's revocation to the old
// key's removal, applying each step to a real store.
func TestGossipKeyStep(t *testing.T) {
	old, next := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	st := state.New()
	idx := uint64(0)
	apply := func(cmd state.Command) {
		t.Helper()
		idx++
		if err := st.Update(idx, func(tx *state.Txn) error { return tx.Apply(cmd) }); err != nil {
			t.Fatal(err)
		}
	}
	apply(&state.SetCluster{Cluster: state.ClusterInfo{ID: "c", GossipKey: old}})
	step := func(now time.Time) *state.SetGossipKeys {
		ci, _ := st.Cluster()
		return gossipKeyStep(ci, st.Revocations(), now, func() []byte { return next })
	}
	ring := func() [][]byte { ci, _ := st.Cluster(); return ci.GossipKeyring() }

	if cmd := step(t0); cmd != nil {
		t.Fatalf("no revocation: step %+v, want none", cmd)
	}
	apply(&state.Revoke{Revocation: api.Revocation{Kind: api.CertClient, Name: "ops", At: t0}})
	if cmd := step(t0); cmd != nil {
		t.Fatalf("a client bundle revoked: step %+v, want none (clients hold no gossip key)", cmd)
	}
	apply(&state.Revoke{Revocation: api.Revocation{Kind: api.CertNode, Name: "h2", At: t0}})
	for i, want := range []struct {
		at   time.Duration
		none bool
		ring [][]byte // primary first
	}{
		{at: time.Second, ring: [][]byte{old, next}},                                // 1: accept the new key
		{at: time.Second + gossipKeyGrace/2, none: true, ring: [][]byte{old, next}}, // within the grace
		{at: time.Second + gossipKeyGrace, ring: [][]byte{next, old}},               // 2: send with it
		{at: time.Second + 2*gossipKeyGrace, ring: [][]byte{next}},                  // 3: the old key goes
		{at: time.Hour, none: true, ring: [][]byte{next}},                           // done: h2's revocation is older than the key
	} {
		cmd := step(t0.Add(want.at))
		if (cmd == nil) != want.none {
			t.Fatalf("step %d at +%s: %+v, want none=%v", i+1, want.at, cmd, want.none)
		}
		if cmd != nil {
			apply(cmd)
		}
		if got := ring(); len(got) != len(want.ring) || !bytes.Equal(got[0], want.ring[0]) || !bytes.Equal(got[len(got)-1], want.ring[len(want.ring)-1]) {
			t.Fatalf("step %d: keyring %x, want %x", i+1, got, want.ring)
		}
	}
	// A node revoked later starts another rotation.
	apply(&state.Revoke{Revocation: api.Revocation{Kind: api.CertNode, Name: "h3", At: t0.Add(2 * time.Hour)}})
	if cmd := step(t0.Add(2*time.Hour + time.Second)); cmd == nil || len(cmd.Keys) != 2 {
		t.Fatalf("a later revocation: step %+v, want a new key accepted", cmd)
	}
	// The state refuses a primary outside the keys.
	if err := st.Update(idx+1, func(tx *state.Txn) error {
		return tx.Apply(&state.SetGossipKeys{Primary: old, Keys: [][]byte{next}})
	}); err == nil {
		t.Error("SetGossipKeys with a primary outside its keys was applied")
	}
}
