package node

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/devhq/dev/cluster/state"
	"github.com/devhq/dev/gossip"
)

// The gossip key file holds the keys gossip accepts, 32 bytes each, the
// one it sends with first (a file of one key is the common case).

// readGossipKeys reads the key file: the key to send with, and the others.
func readGossipKeys(file string) ([]byte, [][]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, fmt.Errorf("read gossip key: %w", err)
	}
	if len(b) == 0 || len(b)%gossip.KeySize != 0 {
		return nil, nil, fmt.Errorf("read gossip key: %s holds %d bytes, not a whole number of %d-byte keys", file, len(b), gossip.KeySize)
	}
	keys := slices.Collect(slices.Chunk(b, gossip.KeySize))
	return keys[0], keys[1:], nil
}

// writeGossipKeys replaces the key file whole (a crash leaves the old one
// or the new one, never a mix).
func writeGossipKeys(file string, keys [][]byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), ".gossip-key-*")
	if err != nil {
		return fmt.Errorf("write gossip key: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	_, err = tmp.Write(bytes.Join(keys, nil))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), file)
	}
	if err != nil {
		return fmt.Errorf("write gossip key: %w", err)
	}
	return nil
}

// followGossipKeys keeps gossip's keys, and the key file a restart reads,
// in line with the replicated state as the leader rotates the key after
// a node's revocation (manager.rotateGossipKey).
func (n *Node) followGossipKeys(ctx context.Context, g *gossip.Gossip, st *state.Store, file string, have [][]byte) error {
	for {
		if ci, ok := st.Cluster(); ok && len(ci.GossipKey) == gossip.KeySize {
			ring := ci.GossipKeyring()
			if !slices.EqualFunc(ring, have, bytes.Equal) {
				if err := g.SetKeys(ring); err != nil {
					n.log.Warn("change the gossip keys", "err", err)
				} else {
					have = ring
					n.log.Info("gossip keys changed", "keys", len(ring))
					if err := writeGossipKeys(file, ring); err != nil {
						n.log.Warn("save the gossip keys", "err", err)
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-st.Changed():
		}
	}
}
