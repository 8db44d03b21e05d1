package manager

import (
	"sync"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/controller"
)

// liveness is when each node's agent last reported, kept in the leader's
// memory like Nomad's heartbeat timers: an agent's heartbeat is answered
// without a raft write, and the log records only what changes (a node's
// status, address, labels, resources). An idle cluster's raft index stays
// where it is.
type liveness struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

// mark records a report from node at t.
func (l *liveness) mark(node string, t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = map[string]time.Time{}
	}
	l.seen[node] = t
}

// get is the node's last report this leader saw; zero for none.
func (l *liveness) get(node string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen[node]
}

// reset starts every node's clock at t: a new leader has seen no reports
// yet, and gives each node a full timeout to send one (as Nomad's leader
// does when it takes over).
func (l *liveness) reset(nodes []api.Node, t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen = map[string]time.Time{}
	for _, n := range nodes {
		l.seen[n.Name] = t
	}
}

// lastSeen is the later of the node's last report to this leader and the
// heartbeat its record holds (written when it last changed): the node
// monitor's rule.
func (m *Manager) lastSeen(n api.Node) time.Time {
	return controller.Options{LastSeen: m.live.get}.SeenAt(n)
}

// sameReport says whether a node's report changes nothing the cluster
// acts on, so that it need not be written: the same status, addresses,
// subnet, labels and resources, and a load within a quarter of its CPUs
// (the dashboard's load bar).
func sameReport(old, n api.Node) bool {
	if old.Name != n.Name || old.Address != n.Address || old.APIAddr != n.APIAddr || old.Status != n.Status ||
		old.PodSubnet != n.PodSubnet || old.Allocatable != n.Allocatable || !old.DownSince.Equal(n.DownSince) ||
		len(old.Labels) != len(n.Labels) {
		return false
	}
	for k, v := range n.Labels {
		if ov, ok := old.Labels[k]; !ok || ov != v {
			return false
		}
	}
	cpus := max(float64(n.Allocatable.NanoCPUs)/1e9, 1)
	d := n.Load - old.Load
	return d <= cpus/4 && d >= -cpus/4
}
