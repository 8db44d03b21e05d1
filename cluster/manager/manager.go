// Package manager is the control plane's core on every node: it runs the
// leader-only loops (controllers, scheduler, node monitor, raft membership)
// while this node leads, keeps the nodes' heartbeats in the leader's memory,
// and applies writes, forwarding them to the leader from a follower. It
// serves no HTTP: cluster/apiserver does, and calls it.
package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/controller"
	"github.com/devhq/dev/cluster/peers"
	"github.com/devhq/dev/cluster/raftstore"
	"github.com/devhq/dev/cluster/state"
)

// Raft is the replicated store as the manager uses it.
type Raft interface {
	Apply(ctx context.Context, cmd state.Command) (uint64, error)
	IsLeader() bool
	LeaderCh() <-chan bool
	Leader() string
	LeaderAddr() (addr, id string)
	State() *state.Store
	Servers() ([]raftstore.Server, error)
	AddServer(id, addr string, voter bool) error
	DemoteServer(id string) error
	RemoveServer(id string) error
	TransferLeadership() error
	// WaitReady returns once the store has caught up with the log it had
	// when the node started (and a leader is known).
	WaitReady(ctx context.Context) error
}

// Options configure the manager.
type Options struct {
	Node        string
	ClusterCIDR string // pod network, split into one /24 per node
	Controller  controller.Options
	// Peers reach the leader from a follower; nil on a node that cannot
	// reach peers (writes then only work on the leader).
	Peers *peers.Peers
	// Membership is the gossip view the leader reconciles raft membership
	// and node status with; nil on a node without gossip.
	Membership Membership
	// FailedTimeout is how long a failed member stays a raft server.
	FailedTimeout time.Duration
}

// Manager runs the leader-only loops and applies writes.
type Manager struct {
	r    Raft
	opts Options
	log  *slog.Logger

	regMu sync.Mutex // one node report at a time on the leader (read, compare, write)
	live  liveness   // agents' last reports, on the leader (liveness.go)
}

// New returns a manager; it starts nothing.
func New(r Raft, opts Options, log *slog.Logger) *Manager {
	if opts.ClusterCIDR == "" {
		opts.ClusterCIDR = "10.213.0.0/16"
	}
	return &Manager{r: r, opts: opts, log: log.With("component", "manager")}
}

// Run starts the leader-only loops whenever this node leads and stops them
// when it loses leadership, until ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	var (
		cancel context.CancelFunc
		done   chan struct{}
	)
	stop := func() {
		if cancel != nil {
			cancel()
			<-done
			cancel = nil
		}
	}
	defer stop()
	start := func() {
		if cancel != nil {
			return
		}
		var lctx context.Context
		lctx, cancel = context.WithCancel(ctx)
		done = make(chan struct{})
		m.log.Info("leading: starting controllers")
		go func() {
			defer close(done)
			var wg sync.WaitGroup
			if m.opts.Membership != nil {
				wg.Go(func() { m.runMembership(lctx) })
			}
			m.live.reset(m.r.State().Nodes(), time.Now().UTC())
			copts := m.opts.Controller
			copts.LastSeen = m.live.get
			c := controller.New(m.r.State(), m.r, copts, m.log)
			_ = c.Run(lctx)
			wg.Wait()
		}()
	}
	if m.r.IsLeader() {
		start()
	}
	check := time.NewTicker(time.Second) // LeaderCh may drop signals; re-check
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-m.r.LeaderCh():
		case <-check.C:
		}
		if m.r.IsLeader() {
			start()
		} else if cancel != nil {
			m.log.Info("lost leadership: stopping controllers")
			stop()
		}
	}
}

// Apply proposes a command: on the leader directly, on a follower by
// forwarding it to the leader. While an election is under way (no leader
// yet) it waits for one, up to 10s.
//
// A write follows leadership: a forward to a leader that does not answer
// within forwardAttempt (its link cut: nothing answers, nothing refuses) is
// tried again against whoever leads then, until applyDeadline. So a write
// issued as the leader is lost is answered soon after the next election,
// not when the caller gives up. A forward that timed out may have been
// applied: commands are idempotent (they set records, not add to them), so
// applying one twice is harmless.
func (m *Manager) Apply(ctx context.Context, cmd state.Command) (uint64, error) {
	deadline := time.Now().Add(applyDeadline)
	for {
		idx, err := m.r.Apply(ctx, cmd)
		if errors.Is(err, raftstore.ErrNotLeader) && m.r.Leader() != "" {
			idx, err = m.forwardAttempt(ctx, cmd)
		}
		if !retryable(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return idx, err
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

const (
	// applyDeadline bounds a write's wait for a leader that takes it.
	applyDeadline = 30 * time.Second
	// forwardTimeout bounds one forward to the leader: raft applies in
	// milliseconds, so a leader silent this long is cut off or gone.
	forwardTimeout = 3 * time.Second
)

// forwardAttempt is one forward to the leader, bounded by forwardTimeout.
func (m *Manager) forwardAttempt(ctx context.Context, cmd state.Command) (uint64, error) {
	actx, cancel := context.WithTimeout(ctx, forwardTimeout)
	defer cancel()
	idx, err := m.forward(actx, cmd)
	if err != nil && actx.Err() != nil && ctx.Err() == nil {
		return idx, fmt.Errorf("%w: the leader did not answer within %s", errLeaderSilent, forwardTimeout)
	}
	return idx, err
}

// errLeaderSilent: a forward got no answer in time; the next attempt goes
// to whoever leads then.
var errLeaderSilent = errors.New("leader unreachable")

// retryable says whether a write may be tried again: no leader, or one
// that cannot be reached (a leader's answer, even an error, is final).
func retryable(err error) bool {
	return errors.Is(err, raftstore.ErrNotLeader) || errors.Is(err, errLeaderSilent) || errors.Is(err, api.ErrUnreachable)
}

// RegisterNode takes a node's report (its heartbeat): the leader notes it in
// memory and writes the node's record only when it changes (its first
// registration gets a pod subnet from the state machine).
func (m *Manager) RegisterNode(ctx context.Context, n api.Node) (api.Node, error) {
	if !m.r.IsLeader() && m.opts.Peers != nil {
		// One bounded attempt: the agent reports again at its next beat,
		// to whoever leads then.
		fctx, cancel := context.WithTimeout(ctx, forwardTimeout)
		defer cancel()
		addr, err := m.LeaderAPI()
		if err != nil {
			return api.Node{}, err
		}
		return m.opts.Peers.Register(fctx, addr, n)
	}
	m.regMu.Lock()
	defer m.regMu.Unlock()
	st := m.r.State()
	old, known := st.Node(n.Name)
	if known {
		n.PodSubnet = old.PodSubnet
		if n.Labels == nil {
			n.Labels = old.Labels
		} else {
			n.Labels = state.NodeLabels(n.Labels, old.UserLabels) // as the record holds them
		}
	}
	n.Status = api.NodeReady
	if known && old.Status == api.NodeLeft {
		n.Status = api.NodeLeft // draining for `dev leave`: stays out of scheduling
	}
	n.DownSince = time.Time{}
	now := time.Now().UTC()
	m.live.report(n.Name, now, n.Load)
	if known && sameReport(old, n) {
		return old, nil // a heartbeat: answered from memory, nothing written
	}
	n.Heartbeat = now
	if _, err := m.Apply(ctx, &state.PutNode{Node: n, ClusterCIDR: m.opts.ClusterCIDR}); err != nil {
		return api.Node{}, err
	}
	got, _ := st.Node(n.Name)
	return got, nil
}

// LeaderAPI returns the API address of the current leader.
func (m *Manager) LeaderAPI() (string, error) {
	_, id := m.r.LeaderAddr()
	if id == "" {
		return "", fmt.Errorf("no leader elected yet: %w", raftstore.ErrNotLeader)
	}
	n, ok := m.r.State().Node(id)
	if !ok || n.APIAddr == "" {
		return "", fmt.Errorf("leader %s has not registered its API address yet: %w", id, raftstore.ErrNotLeader)
	}
	return n.APIAddr, nil
}

// forward sends cmd to the leader and waits until the local replica has
// applied it, so that the caller reads its own write.
func (m *Manager) forward(ctx context.Context, cmd state.Command) (uint64, error) {
	if m.opts.Peers == nil {
		return 0, raftstore.ErrNotLeader
	}
	addr, err := m.LeaderAPI()
	if err != nil {
		return 0, err
	}
	idx, err := m.opts.Peers.Apply(ctx, addr, cmd)
	if err != nil {
		return 0, err
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m.r.State().WaitIndex(wctx, idx-1)
	return idx, nil
}

// runMembership reconciles raft membership with gossip every second while
// this node leads.
func (m *Manager) runMembership(ctx context.Context) {
	timeout := m.opts.FailedTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	failedSince := map[string]time.Time{}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		m.reconcileMembers(ctx, m.opts.Membership.Members(), failedSince, timeout)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
