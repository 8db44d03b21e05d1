package manager

import (
	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// Nodes lists the cluster's nodes with their raft role, pod count and
// reservations filled in.
func (m *Manager) Nodes() []api.Node {
	st := m.r.State()
	nodes := st.Nodes()
	roles := map[string]string{}
	if servers, err := m.r.Servers(); err == nil {
		_, leader := m.r.LeaderAddr()
		for _, s := range servers {
			switch {
			case s.ID == leader:
				roles[s.ID] = "leader"
			case s.Voter:
				roles[s.ID] = "voter"
			case st.IsWorker(s.ID):
				roles[s.ID] = "worker" // joined with the worker token: never votes
			default:
				roles[s.ID] = "nonvoter" // a manager kept in reserve
			}
		}
	}
	// One pass over the pods (not one per node): the dashboard asks at
	// every change of the cluster.
	byName := make(map[string]*api.Node, len(nodes))
	leading := m.r.IsLeader()
	for i := range nodes {
		nodes[i].Role = roles[nodes[i].Name]
		if load, ok := m.live.lastLoad(nodes[i].Name); ok && leading {
			nodes[i].Load = load // the latest report, which the record need not hold
		}
		byName[nodes[i].Name] = &nodes[i]
	}
	reserved := map[string]api.ResourceAmounts{} // per service, looked up once
	for _, p := range st.Pods(state.PodFilter{}) {
		n := byName[p.Node]
		if n == nil || p.Deleting {
			continue
		}
		n.Pods++
		key := api.RCKey(p.Project, p.Service)
		res, seen := reserved[key]
		if !seen {
			if rc, ok := st.RC(key); ok {
				res = rc.Template.PodReservations()
			}
			reserved[key] = res
		}
		n.Reserved.NanoCPUs += res.NanoCPUs
		n.Reserved.MemoryBytes += res.MemoryBytes
	}
	return nodes
}
