package node

import (
	"context"
	"errors"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/dashboard"
	"github.com/devhq/dev/cluster/events"
	"github.com/devhq/dev/cluster/manager"
	"github.com/devhq/dev/cluster/raftstore"
	"github.com/devhq/dev/cluster/state"
)

// dashboardSource is the dashboard's view of this node: the replicated
// state, the manager's read models and the node's event log.
type dashboardSource struct {
	st     *state.Store
	r      *raftstore.Raft
	mgr    *manager.Manager
	events *events.Recorder
	node   string
}

var _ dashboard.Source = dashboardSource{}

func (d dashboardSource) Snapshot() dashboard.Snapshot {
	return dashboard.Snapshot{
		Index: d.st.Index(), Node: d.node, Leader: d.r.Leader(),
		Nodes: d.mgr.Nodes(), Services: d.mgr.Services(""), Pods: d.st.Pods(state.PodFilter{}),
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

// lateDashboard lets the manager's GET /v1/dashboard be wired before the
// dashboard exists (it needs the manager's handler).
type lateDashboard struct{ *dashboard.Server }

func (l *lateDashboard) Info() (api.DashboardInfo, error) {
	if l.Server == nil {
		return api.DashboardInfo{}, errors.New("this agent serves no dashboard (started with --dashboard-addr \"\")")
	}
	return l.Server.Info()
}
