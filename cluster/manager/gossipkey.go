package manager

import (
	"bytes"
	"context"
	"crypto/rand"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// gossipKeyGrace is how long each step of a gossip key rotation lasts
// before the next: every node applies a step within raft's replication
// delay, far less than this.
const gossipKeyGrace = 5 * time.Second

// rotateGossipKey moves the gossip key rotation that follows a node's
// revocation one step, on the leader. A removed node keeps the key it was
// given; once the rotation is done no member accepts it.
func (m *Manager) rotateGossipKey(ctx context.Context, st *state.Store, now time.Time) {
	ci, ok := st.Cluster()
	if !ok {
		return
	}
	cmd := gossipKeyStep(ci, st.Revocations(), now.UTC(), newGossipKey)
	if cmd == nil {
		return
	}
	if _, err := m.r.Apply(ctx, cmd); err != nil {
		m.log.Warn("rotate the gossip key", "err", err)
		return
	}
	step := "1/3: a new key is accepted"
	switch {
	case len(cmd.Keys) == 1:
		step = "3/3: the old key is dropped"
	case !bytes.Equal(cmd.Primary, ci.GossipKey):
		step = "2/3: the new key is sent with"
	}
	m.log.Info("gossip key rotation", "step", step)
}

// gossipKeyStep is the next step of a gossip key rotation, or nil. A node
// revoked after the newest key was made starts one:
//
//  1. a new key is accepted besides the current one;
//  2. after gossipKeyGrace, the new key is the one sent with;
//  3. after gossipKeyGrace, the old key goes.
//
// Every node accepts a key before any sends with it, and stops sending
// with the old one before any drops it, so no member is cut off on the way.
func gossipKeyStep(ci state.ClusterInfo, revs []api.Revocation, now time.Time, newKey func() []byte) *state.SetGossipKeys {
	ring := ci.GossipKeyring()
	switch {
	case len(ring) == 1:
		for _, r := range revs {
			if r.Kind == api.CertNode && r.At.After(ci.GossipKeyMade) {
				return &state.SetGossipKeys{Primary: ci.GossipKey, Keys: [][]byte{ci.GossipKey, newKey()}, Made: now, At: now}
			}
		}
		return nil
	case now.Sub(ci.GossipKeyStep) < gossipKeyGrace:
		return nil
	case len(ci.GossipKeys) == 2 && bytes.Equal(ci.GossipKey, ci.GossipKeys[0]):
		return &state.SetGossipKeys{Primary: ci.GossipKeys[1], Keys: ci.GossipKeys, At: now}
	default:
		return &state.SetGossipKeys{Primary: ci.GossipKey, Keys: [][]byte{ci.GossipKey}, At: now}
	}
}

func newGossipKey() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k) // never fails (crypto/rand)
	return k
}
