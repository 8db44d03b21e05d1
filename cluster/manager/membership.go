package manager

import (
	"context"
	"crypto/rand"
	"sort"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/raftstore"
	"github.com/devhq/dev/cluster/state"
)

// Member is a gossip member as the manager sees it.
type Member struct {
	Name   string
	Status string // alive, leaving, left, failed
	Tags   map[string]string
}

// Gossip tag keys every node publishes.
const (
	TagRaft   = "raft"   // raft address
	TagAPI    = "api"    // HTTPS API address
	TagIP     = "ip"     // host IP (VXLAN endpoint)
	TagSubnet = "subnet" // pod subnet
	TagVTEP   = "vtep"   // VXLAN device MAC
	TagGossip = "gossip" // gossip address
)

// Membership is the gossip view of the cluster.
type Membership interface {
	Members() []Member
}

// voterTarget is how many voters a cluster of n live managers should have:
// an odd number, 3 from 3 managers and 5 from 7.
func voterTarget(n int) int {
	switch {
	case n >= 7:
		return 5
	case n >= 3:
		return 3
	default:
		return 1
	}
}

// reconcileMembers makes raft membership and node status follow gossip, on
// the leader: joining members are added (managers as voters up to the
// target, the rest as non-voters), members that left are removed, members failed for longer
// than failedTimeout are removed, failed members are marked down.
func (m *Manager) reconcileMembers(ctx context.Context, members []Member, failedSince map[string]time.Time, failedTimeout time.Duration) {
	servers, err := m.r.Servers()
	if err != nil {
		m.log.Warn("read raft configuration", "err", err)
		return
	}
	_, leaderID := m.r.LeaderAddr()
	inRaft := map[string]bool{}
	voters := 0
	for _, s := range servers {
		inRaft[s.ID] = true
		if s.Voter {
			voters++
		}
	}
	st := m.r.State()
	managers := 0
	for _, mb := range members {
		if mb.Status == "alive" && st.MayVote(mb.Name) {
			managers++
		}
	}
	target := voterTarget(managers)
	sort.Slice(members, func(i, j int) bool { return members[i].Name < members[j].Name })
	now := time.Now()
	for _, mb := range members {
		switch mb.Status {
		case "alive":
			delete(failedSince, mb.Name)
			// Only a node that joined with a certificate counts: a gossip
			// member the leader did not admit, or whose certificate was
			// revoked since, is neither made ready nor a raft member.
			if !st.MayJoinRaft(mb.Name) {
				continue
			}
			if n, ok := st.Node(mb.Name); ok && n.Status == api.NodeDown {
				// Alive again: gossip is fresher than the last agent heartbeat,
				// which the node monitor would otherwise find stale at once.
				n.Status, n.DownSince, n.Heartbeat = api.NodeReady, time.Time{}, now.UTC()
				m.live.mark(n.Name, now.UTC())
				m.applyLogged(ctx, &state.PutNode{Node: n})
			}
			if mb.Tags[TagRaft] == "" || inRaft[mb.Name] {
				continue
			}
			voter := voters < target && st.MayVote(mb.Name)
			if err := m.r.AddServer(mb.Name, mb.Tags[TagRaft], voter); err != nil {
				m.log.Warn("add raft member", "node", mb.Name, "err", err)
				continue
			}
			inRaft[mb.Name] = true
			if voter {
				voters++
			}
			m.log.Info("added raft member", "node", mb.Name, "voter", voter)
		case "failed":
			if _, ok := failedSince[mb.Name]; !ok {
				failedSince[mb.Name] = now
			}
			// Down unless its agent has heartbeated since gossip saw it fail:
			// after a partition heals, raft and the API reconnect at once but
			// gossip may take a reconnect interval (30s by default) to see the
			// member alive again; marking it down meanwhile would undo each
			// heartbeat and keep the node out of scheduling.
			n, known := st.Node(mb.Name)
			heartbeated := known && !m.lastSeen(n).Before(failedSince[mb.Name])
			if known && n.Status == api.NodeReady && !heartbeated {
				n.Status, n.DownSince, n.Heartbeat = api.NodeDown, now.UTC(), m.lastSeen(n)
				m.applyLogged(ctx, &state.PutNode{Node: n})
			}
			// Remove a voter that stays failed, but not one whose agent has
			// reached the API since gossip saw it fail: it is back, and
			// gossip is only slow to notice. Removing it then cost a 3-node
			// cluster its quorum for good when another node failed before
			// the removal committed (the leader's latest configuration then
			// counted only itself and the failed node, and with no leader
			// nobody could add the healthy one back).
			if inRaft[mb.Name] && mb.Name != leaderID && now.Sub(failedSince[mb.Name]) > failedTimeout && !heartbeated {
				if err := m.r.RemoveServer(mb.Name); err != nil {
					m.log.Warn("remove failed raft member", "node", mb.Name, "err", err)
				} else {
					m.log.Info("removed failed raft member", "node", mb.Name)
				}
			}
		case "left":
			if n, ok := st.Node(mb.Name); ok && n.Status != api.NodeLeft {
				n.Status = api.NodeLeft
				m.applyLogged(ctx, &state.PutNode{Node: n})
			}
			if inRaft[mb.Name] && mb.Name != leaderID {
				if err := m.r.RemoveServer(mb.Name); err == nil {
					m.log.Info("removed departed raft member", "node", mb.Name)
				}
			}
		}
	}
	m.forgetRevoked(ctx, st, inRaft, leaderID)
	m.rotateGossipKey(ctx, st)
	voters -= m.demoteWorkers(st, servers, leaderID)
	// Promote non-voting managers while the cluster is short of voters
	// (after a failed voter was removed, or as it grows). Workers never
	// vote: a leader must hold the data key.
	if voters < target {
		servers, _ = m.r.Servers()
		for _, s := range servers {
			if voters >= target {
				break
			}
			if s.Voter || !st.MayVote(s.ID) {
				continue
			}
			if isAlive(members, s.ID) {
				if err := m.r.AddServer(s.ID, s.Address, true); err == nil {
					voters++
					m.log.Info("promoted raft member to voter", "node", s.ID)
				}
			}
		}
	}
}

// forgetRevoked forgets the nodes whose certificate was revoked (dev node
// rm, dev leave) and that were not admitted again since: their record
// goes, so the controllers make their pods again elsewhere, and so does
// their raft membership. The decision is the state's (admission against
// revocation), not liveness, which a new leader or gossip may refresh.
// A revoked leader hands leadership over first.
func (m *Manager) forgetRevoked(ctx context.Context, st *state.Store, inRaft map[string]bool, leaderID string) {
	for _, n := range st.Nodes() {
		// A node with a record may stay unless it was revoked and not
		// admitted again since.
		if st.MayJoinRaft(n.Name) || n.Status == api.NodeLeft {
			continue // a node that left keeps its record; membership removes it from raft
		}
		if n.Name == leaderID {
			if err := m.r.TransferLeadership(); err != nil {
				m.log.Warn("hand over leadership from a revoked node", "node", n.Name, "err", err)
			}
			return
		}
		if inRaft[n.Name] {
			if err := m.r.RemoveServer(n.Name); err != nil {
				m.log.Warn("remove revoked raft member", "node", n.Name, "err", err)
				continue
			}
		}
		m.applyLogged(ctx, &state.DeleteNode{Name: n.Name})
		m.log.Info("forgot revoked node", "node", n.Name)
	}
}

// rotateGossipKey replaces the cluster's gossip key once a node was
// revoked since it was made (dev node rm, dev leave): every member sets the
// new key as its only one when the entry reaches it, and the removed node,
// which no longer gets entries, is out of gossip too. Only once no revoked
// node is left in the raft configuration (forgetRevoked removes them), so
// the entry cannot reach one still replicating.
func (m *Manager) rotateGossipKey(ctx context.Context, st *state.Store) {
	gen, stale := st.GossipKeyStale()
	if !stale {
		return
	}
	servers, err := m.r.Servers()
	if err != nil {
		m.log.Warn("read raft configuration", "err", err)
		return
	}
	for _, s := range servers {
		if !st.MayJoinRaft(s.ID) {
			return // forgetRevoked removes it first
		}
	}
	key := make([]byte, state.GossipKeySize)
	if _, err := rand.Read(key); err != nil {
		m.log.Warn("make a gossip key", "err", err)
		return
	}
	if _, err := m.r.Apply(ctx, &state.RotateGossipKey{Key: key, Gen: gen}); err != nil {
		m.log.Warn("rotate the gossip key", "err", err)
		return
	}
	m.log.Info("rotated the gossip key: a node was removed", "generation", gen)
}

// demoteWorkers takes the vote of voters that may not vote (a manager
// admitted again with the worker token): a leader must hold the data key.
// A leader in that case is left be, with a warning: handing leadership on
// would go to any voter, and the founder may lead before its own record
// says it may. It returns how many it demoted.
func (m *Manager) demoteWorkers(st *state.Store, servers []raftstore.Server, leaderID string) int {
	n := 0
	for _, s := range servers {
		if !s.Voter || !st.MayJoinRaft(s.ID) || st.MayVote(s.ID) {
			continue // revoked members go through forgetRevoked
		}
		if s.ID == leaderID {
			m.log.Warn("the leader may not vote (it was admitted again as a worker)", "node", s.ID)
			continue
		}
		if err := m.r.DemoteServer(s.ID); err != nil {
			m.log.Warn("demote raft member", "node", s.ID, "err", err)
			continue
		}
		n++
		m.log.Info("demoted raft member: it was admitted again as a worker", "node", s.ID)
	}
	return n
}

func isAlive(members []Member, name string) bool {
	for _, mb := range members {
		if mb.Name == name {
			return mb.Status == "alive"
		}
	}
	return false
}

func (m *Manager) applyLogged(ctx context.Context, cmd state.Command) {
	if _, err := m.r.Apply(ctx, cmd); err != nil {
		m.log.Warn("apply", "cmd", cmd.Type(), "err", err)
	}
}
