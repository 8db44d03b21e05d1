package node

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/pki"
	"github.com/devhq/dev/cluster/state"
	"github.com/devhq/dev/gossip"
)

// gossipKeys keeps this member's gossip key the cluster's. The leader
// rotates the key when a node is removed (state.RotateGossipKey); each
// member sets the key its state holds as its only one, at once, and saves
// it for its next start. A member that missed a rotation (down through
// it, dropped from raft meanwhile, or joined with the key it replaced)
// cannot hear the others, nor they it, so it asks a peer's API for the key
// over mutual TLS, which a revoked node cannot pass.
type gossipKeys struct {
	g    *gossip.Gossip
	st   *state.Store
	file string
	log  *slog.Logger
	// peerKey asks another node for the cluster's key (nil: none).
	peerKey func(ctx context.Context) (api.GossipKeyResponse, bool)

	mu  sync.Mutex
	key []byte
	at  time.Time // when key was made; zero: the first key, or not known (read from the file)
}

func newGossipKeys(g *gossip.Gossip, st *state.Store, dataDir string, key []byte, log *slog.Logger, peerKey func(context.Context) (api.GossipKeyResponse, bool)) *gossipKeys {
	return &gossipKeys{g: g, st: st, file: filepath.Join(dataDir, pkiDir, gossipKeyFile), key: bytes.Clone(key),
		log: log.With("component", "gossip-key"), peerKey: peerKey}
}

// set makes key, made at at, this member's key unless the one in use was
// made later. It reports whether the key changed.
func (k *gossipKeys) set(key []byte, at time.Time, from string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(key) != state.GossipKeySize || at.Before(k.at) {
		return false
	}
	if bytes.Equal(key, k.key) {
		k.at = at
		return false
	}
	if err := k.g.SetKey(key); err != nil {
		k.log.Warn("set the gossip key", "err", err)
		return false
	}
	// Saved after it is in use: a crash in between starts with the old key
	// and asks a peer (Run).
	if err := pki.WriteSecretFile(k.file, key); err != nil {
		k.log.Warn("save the gossip key", "err", err)
	}
	k.key, k.at = bytes.Clone(key), at
	k.log.Info("gossip key replaced", "from", from, "made", at)
	return true
}

// refresh asks a peer for the cluster's key and sets it when newer. It
// reports whether the key changed.
func (k *gossipKeys) refresh(ctx context.Context) bool {
	if k.peerKey == nil {
		return false
	}
	res, ok := k.peerKey(ctx)
	return ok && k.set(res.Key, res.At, "a peer")
}

// Run follows the state's key until ctx ends, after asking a peer once
// (this node may have been down through a rotation). Every
// gossipKeyResync it also drops keys that serf's key queries installed:
// the state's key is the only one.
func (k *gossipKeys) Run(ctx context.Context) error {
	k.refresh(ctx)
	tick := time.NewTicker(gossipKeyResync)
	defer tick.Stop()
	for {
		changed := k.st.Changed()
		if ci, ok := k.st.Cluster(); ok {
			k.set(ci.GossipKey, ci.GossipKeyAt, "the state")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-tick.C:
			k.mu.Lock()
			if keys := k.g.Keys(); len(keys) != 1 || !bytes.Equal(keys[0], k.key) {
				if err := k.g.SetKey(k.key); err != nil {
					k.log.Warn("set the gossip key", "err", err)
				} else {
					k.log.Warn("dropped gossip keys that were not the cluster's (installed by a serf key query)", "keys", len(keys))
				}
			}
			k.mu.Unlock()
		}
	}
}

// gossipKeyResync is how often Run checks that no other key was installed.
const gossipKeyResync = 30 * time.Second

// peerGossipKey returns a function that asks the other nodes this node
// knows of (its state's records, then the address it joined through) for
// the cluster's gossip key, each for at most 5 s, and returns the first
// answer.
func peerGossipKey(st *state.Store, self, joinAddr string, get func(ctx context.Context, addr string) (api.GossipKeyResponse, error), log *slog.Logger) func(context.Context) (api.GossipKeyResponse, bool) {
	return func(ctx context.Context) (api.GossipKeyResponse, bool) {
		var addrs []string
		for _, n := range st.Nodes() {
			if n.Name != self && n.APIAddr != "" && n.Status != api.NodeLeft {
				addrs = append(addrs, n.APIAddr)
			}
		}
		if joinAddr != "" {
			addrs = append(addrs, joinAddr)
		}
		for _, addr := range addrs {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			res, err := get(cctx, addr)
			cancel()
			if err == nil {
				return res, true
			}
			log.Debug("ask a peer for the gossip key", "addr", addr, "err", err)
		}
		return api.GossipKeyResponse{}, false
	}
}
