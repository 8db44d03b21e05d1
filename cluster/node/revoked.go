package node

import (
	"context"
	"time"

	"github.com/devhq/dev/cluster/pki"
	"github.com/devhq/dev/cluster/state"
)

// closeRevoked ends, whenever the revocation list changes, the connections
// that revoked certificates opened before: handshakes and API requests
// check the list as they come, this ends what is already open (raft
// streams, `dev logs -f`, `dev exec`, watches).
//
// A sweep runs on every change of the list and every closeRevokedEvery
// besides: a handshake checked just before a revocation may join the
// listener's open connections just after the sweep it brought.
func (n *Node) closeRevoked(ctx context.Context, st *state.Store, lns map[string]*pki.HandshakeListener) error {
	tick := time.NewTicker(closeRevokedEvery)
	defer tick.Stop()
	var seen uint64
	sweep := func() {
		for name, ln := range lns {
			if closed := ln.CloseRevoked(st.Revoked); closed > 0 {
				n.log.Info("closed connections of revoked certificates", "listener", name, "connections", closed)
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if seen > 0 {
				sweep()
			}
		case <-st.Changed():
			if gen := st.RevocationGen(); gen != seen {
				seen = gen
				sweep()
			}
		}
	}
}

// closeRevokedEvery is how often closeRevoked sweeps without a change.
const closeRevokedEvery = 10 * time.Second
