package node

import (
	"context"
	"fmt"

	"github.com/devhq/dev/cluster/pki"
	"github.com/devhq/dev/cluster/state"
)

// revocable is a listener whose open connections a revocation can end.
type revocable interface {
	CloseRevoked(revoked pki.RevokedFunc) int
}

// closeRevoked ends, whenever the revocation list changes, the connections
// that revoked certificates opened before: handshakes and API requests
// check the list as they come, this ends what is already open (raft
// streams, `dev logs -f`, `dev exec`, watches).
func (n *Node) closeRevoked(ctx context.Context, st *state.Store, lns map[string]revocable) error {
	seen := ""
	for {
		if revs := st.Revocations(); len(revs) > 0 {
			if key := fmt.Sprint(revs); key != seen {
				seen = key
				for name, ln := range lns {
					if closed := ln.CloseRevoked(st.Revoked); closed > 0 {
						n.log.Info("closed connections of revoked certificates", "listener", name, "connections", closed)
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
