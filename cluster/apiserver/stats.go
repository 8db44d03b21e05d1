package apiserver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// StatsReader reads what this node's running pods use from its container
// engine (cluster/agent/docker.Driver.PodStats): with window > 0, two
// reads window apart, for the CPU %.
type StatsReader interface {
	PodStats(ctx context.Context, pods []string, window time.Duration) ([]api.PodStats, error)
}

// statsWindow is the interval over which `dev stats` samples the CPU, as
// `docker stats` does; statsTimeout bounds a whole answer, peers included.
const (
	statsWindow  = time.Second
	statsTimeout = 15 * time.Second
)

func (srv *Server) registerStats(mux *http.ServeMux) {
	handle(mux, "GET /v1/stats", roleRead, srv.handleStats)
}

// handleStats is `dev stats`: the stats of the running pods the query
// selects, read by each node that runs some (this node's from its engine,
// the others' through their own GET /v1/stats?local=1, at the same time).
// A node that cannot answer leaves its pods out and says so in Errors.
func (srv *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	q := api.StatsQueryOf(r.URL.Query())
	byNode := statsTargets(srv.r.State().Pods(state.PodFilter{Project: q.Project}), q)
	if q.Local {
		byNode = map[string][]string{srv.opts.Node: byNode[srv.opts.Node]}
	}
	ctx, cancel := context.WithTimeout(r.Context(), statsTimeout)
	defer cancel()
	var (
		mu   sync.Mutex
		list = api.StatsList{Pods: []api.PodStats{}}
	)
	errs := srv.eachNode(ctx, slices.Collect(maps.Keys(byNode)), func(ctx context.Context, node string) error {
		var got api.StatsList
		err := srv.statsRefused(node)
		switch {
		case err != nil:
		case node == srv.opts.Node:
			got.Pods, err = srv.localStats(ctx, byNode[node])
		default:
			got, err = srv.peerStats(ctx, node, q)
		}
		mu.Lock()
		defer mu.Unlock()
		list.Pods = append(list.Pods, got.Pods...)
		list.Errors = append(list.Errors, got.Errors...) // a peer's say which node
		return err
	})
	list.Errors = append(list.Errors, errs...)
	list.Sort()
	slices.Sort(list.Errors)
	writeJSON(w, list)
}

// statsTargets groups the running pods q selects by the node that runs
// them, each node's sorted by name.
func statsTargets(pods []api.Pod, q api.StatsQuery) map[string][]string {
	out := map[string][]string{}
	for i := range pods {
		p := &pods[i]
		if p.Node == "" || p.Status.State != api.PodRunning || !q.Matches(p) {
			continue
		}
		out[p.Node] = append(out[p.Node], p.Name)
	}
	for _, names := range out {
		slices.Sort(names)
	}
	return out
}

// localStats reads this node's pods from its engine.
func (srv *Server) localStats(ctx context.Context, pods []string) ([]api.PodStats, error) {
	if len(pods) == 0 {
		return nil, nil
	}
	if srv.opts.Stats == nil {
		return nil, errors.New("this node reads no stats")
	}
	got, err := srv.opts.Stats.PodStats(ctx, pods, statsWindow)
	if err != nil {
		return nil, fmt.Errorf("read stats: %w", err)
	}
	return got, nil
}

// statsRefused says why a node's pods are left out at once rather than
// waited for: the node is not ready, or its Docker Engine does not answer
// (its stats would not come before the timeout, at every refresh).
func (srv *Server) statsRefused(node string) error {
	n, ok := srv.r.State().Node(node)
	switch {
	case !ok:
		return nil
	case n.Status != api.NodeReady:
		return fmt.Errorf("the node is %s", n.Status)
	case n.EngineUnreachable:
		return errors.New("its Docker Engine does not answer (dev nodes); its pods are left out until it does")
	}
	return nil
}

// peerStats asks another node for its own pods' stats.
func (srv *Server) peerStats(ctx context.Context, node string, q api.StatsQuery) (api.StatsList, error) {
	c, err := srv.peerClient(node)
	if err != nil {
		return api.StatsList{}, err
	}
	q.Local = true
	return c.Stats(ctx, q)
}
