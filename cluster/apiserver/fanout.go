package apiserver

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/devhq/dev/cluster/api"
)

// eachNode calls f for every node at once (this node's own work and its
// peers' calls alike) and waits for them all; it returns the failures as
// "node N: err", sorted. It is how a node gathers what only each node
// knows: `dev stats` (its pods' use of the engine), `dev logs --ingress`
// (its router's access log). ctx bounds the whole.
func (srv *Server) eachNode(ctx context.Context, nodes []string, f func(ctx context.Context, node string) error) []string {
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []string
	)
	for _, node := range nodes {
		wg.Go(func() {
			if err := f(ctx, node); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("node %s: %v", node, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(errs)
	return errs
}

// peerClient is a client of another node's API, as a node calls it; a
// node that the state does not count ready is not called.
func (srv *Server) peerClient(node string) (*api.HTTPClient, error) {
	if n, ok := srv.r.State().Node(node); ok && n.Status != api.NodeReady {
		return nil, fmt.Errorf("the node is %s", n.Status)
	}
	return srv.nodeClient(node)
}
