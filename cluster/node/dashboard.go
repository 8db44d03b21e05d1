package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/apiserver"
	"github.com/devhq/dev/cluster/dashboard"
	"github.com/devhq/dev/cluster/events"
	"github.com/devhq/dev/cluster/manager"
	"github.com/devhq/dev/cluster/raftstore"
	"github.com/devhq/dev/cluster/state"
)

// dashboardSource is the dashboard's view of this node: the replicated
// state, the manager's and the API server's read models and the node's event log.
type dashboardSource struct {
	st     *state.Store
	r      *raftstore.Raft
	mgr    *manager.Manager
	api    *apiserver.Server
	events *events.Recorder
	node   string
}

var _ dashboard.Source = dashboardSource{}

func (d dashboardSource) Snapshot() dashboard.Snapshot {
	return dashboard.Snapshot{
		Index: d.st.Index(), Node: d.node, Leader: d.r.Leader(),
		Nodes: d.mgr.Nodes(), Services: d.api.Services(""), Pods: d.st.Pods(state.PodFilter{}),
	}
}

// WaitIndex waits for the state to pass after, then gives the event log a
// moment to record what that change meant, so the page shows both at once.
func (d dashboardSource) WaitIndex(ctx context.Context, after uint64) uint64 {
	idx := d.st.WaitIndex(ctx, after)
	if idx > after {
		ectx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		d.events.WaitSeen(ectx, idx)
		cancel()
	}
	return idx
}

func (d dashboardSource) Events(after uint64) api.EventList { return d.events.List(after) }

// dashListener is the dashboard's socket and login secret, opened before
// the API is built: GET /v1/dashboard answers with its login link.
type dashListener struct {
	*dashboard.Listener
	token string
}

// listenDashboard opens the dashboard's socket when the node serves one,
// and returns what GET /v1/dashboard answers. The dashboard is a window on
// the cluster, not part of it: a node whose dashboard port is taken goes on
// without one, and `dev dashboard` says why.
func (n *Node) listenDashboard(creds *credentials) (*dashListener, func() (api.DashboardInfo, error)) {
	if n.cfg.DashboardAddr == "" {
		return nil, func() (api.DashboardInfo, error) {
			return api.DashboardInfo{}, errors.New("this agent serves no dashboard (started with --dashboard-addr \"\")")
		}
	}
	fail := func(err error) (*dashListener, func() (api.DashboardInfo, error)) {
		n.log.Warn("no dashboard", "err", err)
		return nil, func() (api.DashboardInfo, error) {
			return api.DashboardInfo{}, fmt.Errorf("dashboard is not serving: %w", err)
		}
	}
	token, err := dashboard.NewToken()
	if err != nil {
		return fail(err)
	}
	ln, err := dashboard.Listen(n.cfg.DashboardAddr, creds.id.JoinServerTLS())
	if err != nil {
		return fail(err)
	}
	info := dashboard.Login(ln.URL, token)
	return &dashListener{Listener: ln, token: token}, func() (api.DashboardInfo, error) { return info, nil }
}
