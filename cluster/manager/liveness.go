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
	load map[string]float64 // the load each node last reported
}

// mark records that node was heard of at t.
func (l *liveness) mark(node string, t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = map[string]time.Time{}
	}
	l.seen[node] = t
}

// report records a node's report at t, with its load.
func (l *liveness) report(node string, t time.Time, load float64) {
	l.mark(node, t)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.load == nil {
		l.load = map[string]float64{}
	}
	l.load[node] = load
}

// lastLoad is the load the node last reported to this leader.
func (l *liveness) lastLoad(node string) (float64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.load[node]
	return v, ok
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
	l.load = map[string]float64{}
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
// subnet, labels and resources. The load is not among them: it moves all
// the time (a load average decays by half a CPU in ten seconds after a busy
// minute), so the leader keeps it in memory and serves it from there
// (Nodes), and the record holds the load of its last change.
func sameReport(old, n api.Node) bool {
	if old.Name != n.Name || old.Address != n.Address || old.APIAddr != n.APIAddr || old.Status != n.Status ||
		old.PodSubnet != n.PodSubnet || old.Allocatable != n.Allocatable || !old.DownSince.Equal(n.DownSince) ||
		old.EngineUnreachable != n.EngineUnreachable ||
		len(old.Labels) != len(n.Labels) {
		return false
	}
	for k, v := range n.Labels {
		if ov, ok := old.Labels[k]; !ok || ov != v {
			return false
		}
	}
	return true
}
