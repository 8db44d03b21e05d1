package manager

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/raftstore"
	"github.com/devhq/dev/cluster/raftstore/rafttest"
	"github.com/devhq/dev/cluster/state"
)

func TestReconcileMembersFailedVoter(t *testing.T) {
	now := time.Now()
	failedAt := now.Add(-time.Minute) // longer ago than the failed timeout
	tests := []struct {
		name        string
		heartbeat   time.Time // of n2's agent
		wantRemoved bool
		wantStatus  string
	}{
		{name: "failed and silent: removed and down", heartbeat: failedAt.Add(-time.Second), wantRemoved: true, wantStatus: api.NodeDown},
		{name: "failed in gossip but heartbeating: kept and ready", heartbeat: now.Add(-time.Second), wantStatus: api.NodeReady},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := state.New()
			r := rafttest.New(st, raftstore.Server{ID: "n1", Voter: true}, raftstore.Server{ID: "n2", Voter: true}, raftstore.Server{ID: "n3", Voter: true})
			for _, n := range []string{"n1", "n2", "n3"} {
				hb := now
				if n == "n2" {
					hb = tt.heartbeat
				}
				if _, err := r.Apply(context.Background(), &state.PutNode{Node: api.Node{Name: n, Status: api.NodeReady, Heartbeat: hb}}); err != nil {
					t.Fatal(err)
				}
			}
			m := New(r, Options{Node: "n1"}, slog.New(slog.DiscardHandler))
			members := []Member{{Name: "n1", Status: "alive"}, {Name: "n2", Status: "failed"}, {Name: "n3", Status: "alive"}}
			failedSince := map[string]time.Time{"n2": failedAt}
			m.reconcileMembers(context.Background(), members, failedSince, 30*time.Second)
			removed := r.Removed()
			if got := len(removed) == 1 && removed[0] == "n2"; got != tt.wantRemoved || len(removed) > 1 {
				t.Errorf("removed %v, want n2 removed: %v", removed, tt.wantRemoved)
			}
			if n, _ := st.Node("n2"); n.Status != tt.wantStatus {
				t.Errorf("n2 is %s, want %s", n.Status, tt.wantStatus)
			}
		})
	}
}

func TestNodesCountsPodsAndReservations(t *testing.T) {
	st := state.New()
	r := rafttest.New(st, raftstore.Server{ID: "n1", Voter: true}, raftstore.Server{ID: "n2"})
	spec := func(name string, mem int64) api.ServiceSpec {
		return api.ServiceSpec{Project: "p", Name: name, Image: "x", Replicas: 1,
			Resources: api.Resources{Reservations: api.ResourceAmounts{MemoryBytes: mem, NanoCPUs: mem / 2}}}
	}
	pod := func(name, svc string) api.Pod {
		return api.Pod{Name: name, Project: "p", Service: svc, Labels: map[string]string{}}
	}
	for _, cmd := range []state.Command{
		&state.PutNode{Node: api.Node{Name: "n1", Status: api.NodeReady}},
		&state.PutNode{Node: api.Node{Name: "n2", Status: api.NodeReady}},
		&state.ApplyProject{Project: api.Project{Name: "p", Services: []api.ServiceSpec{spec("a", 100), spec("b", 10)}}},
		&state.CreatePods{Pods: []api.Pod{pod("p-a-1", "a"), pod("p-a-2", "a"), pod("p-b-1", "b"), pod("p-b-2", "b"), pod("p-b-3", "b")}},
		&state.AssignPods{Nodes: map[string]string{"p-a-1": "n1", "p-a-2": "n2", "p-b-1": "n1", "p-b-2": "n1"}}, // p-b-3 unscheduled
		&state.MarkPodsDeleting{Names: []string{"p-b-2"}},
	} {
		if _, err := r.Apply(context.Background(), cmd); err != nil {
			t.Fatal(err)
		}
	}
	m := New(r, Options{Node: "n1"}, slog.New(slog.DiscardHandler))
	got := map[string]api.Node{}
	for _, n := range m.Nodes() {
		got[n.Name] = n
	}
	want := map[string]struct {
		role string
		pods int
		mem  int64
	}{"n1": {"leader", 2, 110}, "n2": {"nonvoter", 1, 100}}
	for name, w := range want {
		n := got[name]
		if n.Role != w.role || n.Pods != w.pods || n.Reserved.MemoryBytes != w.mem || n.Reserved.NanoCPUs != w.mem/2 {
			t.Errorf("%s: role %q pods %d reserved %+v, want %q %d mem %d", name, n.Role, n.Pods, n.Reserved, w.role, w.pods, w.mem)
		}
	}
}

// TestReconcileMembersVoters: only managers become voters (up to the
// target their number gives); workers join raft as non-voters and are
// never promoted. A cluster made before the data key (Legacy) keeps the
// old rule: any member may vote.
func TestReconcileMembersVoters(t *testing.T) {
	tests := []struct {
		name       string
		cluster    state.ClusterInfo
		managers   []string // admitted with the manager token, besides the founder n1
		voters     []string // raft voters at the start, besides n1
		wantVoters map[string]bool
	}{
		{name: "a voter admitted again as a worker loses its vote", cluster: state.ClusterInfo{ID: "c", Sealed: []byte("sealed")},
			managers: []string{"n2", "n4"}, voters: []string{"n3"},
			wantVoters: map[string]bool{"n1": true, "n2": true, "n3": false, "n4": true, "n5": false}},
		{name: "managers vote, workers do not", cluster: state.ClusterInfo{ID: "c", Sealed: []byte("sealed")},
			managers:   []string{"n2", "n4"},
			wantVoters: map[string]bool{"n1": true, "n2": true, "n3": false, "n4": true, "n5": false}},
		{name: "two managers: one voter (an odd number)", cluster: state.ClusterInfo{ID: "c", Sealed: []byte("sealed")},
			managers:   []string{"n2"},
			wantVoters: map[string]bool{"n1": true, "n2": false, "n3": false, "n4": false, "n5": false}},
		{name: "legacy cluster: the first three vote", cluster: state.ClusterInfo{ID: "c", CAKeyPEM: []byte("key")},
			wantVoters: map[string]bool{"n1": true, "n2": true, "n3": true, "n4": false, "n5": false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := state.New()
			servers := []raftstore.Server{{ID: "n1", Voter: true}}
			for _, v := range tt.voters {
				servers = append(servers, raftstore.Server{ID: v, Voter: true})
			}
			r := rafttest.New(st, servers...)
			ctx := context.Background()
			if _, err := r.Apply(ctx, &state.SetCluster{Cluster: tt.cluster, Founder: "n1"}); err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			var members []Member
			for _, n := range []string{"n1", "n2", "n3", "n4", "n5"} {
				// The founder is never admitted: SetCluster made it a
				// manager, its own record a member.
				var cmd state.Command = &state.PutNode{Node: api.Node{Name: n, Status: api.NodeReady, Heartbeat: now}}
				if n != "n1" {
					admit := &state.Admit{Name: n, At: now}
					for _, m := range tt.managers {
						admit.Manager = admit.Manager || m == n
					}
					cmd = admit
				}
				if _, err := r.Apply(ctx, cmd); err != nil {
					t.Fatal(err)
				}
				members = append(members, Member{Name: n, Status: "alive", Tags: map[string]string{TagRaft: n + ":7947"}})
			}
			m := New(r, Options{Node: "n1"}, slog.New(slog.DiscardHandler))
			// Twice: the second pass is where a short cluster promotes.
			for range 2 {
				m.reconcileMembers(ctx, members, map[string]time.Time{}, 30*time.Second)
			}
			servers, _ = r.Servers()
			got := map[string]bool{}
			for _, s := range servers {
				got[s.ID] = s.Voter
			}
			for n, want := range tt.wantVoters {
				if v, ok := got[n]; !ok || v != want {
					t.Errorf("%s: in raft %v, voter %v; want a member, voter %v", n, ok, v, want)
				}
			}
		})
	}
}

// TestRotateGossipKeyAfterRevocation: the leader makes a new gossip key
// once a node was revoked and left the raft configuration, even when the
// revocation's time is ahead of the leader's clock, and only once.
func TestRotateGossipKeyAfterRevocation(t *testing.T) {
	st := state.New()
	r := rafttest.New(st, raftstore.Server{ID: "n1", Voter: true}, raftstore.Server{ID: "n2"}, raftstore.Server{ID: "n3"})
	ctx := context.Background()
	first := bytes.Repeat([]byte{1}, state.GossipKeySize)
	now := time.Now().UTC()
	for _, cmd := range []state.Command{
		&state.SetCluster{Cluster: state.ClusterInfo{ID: "c1", GossipKey: first, Sealed: []byte{1}}, Founder: "n1"},
		&state.PutNode{Node: api.Node{Name: "n1", Status: api.NodeReady, Heartbeat: now}},
		&state.Admit{Name: "n2", At: now.Add(-time.Hour)},
		&state.Admit{Name: "n3", At: now.Add(-time.Hour)},
		&state.PutNode{Node: api.Node{Name: "n2", Status: api.NodeReady, Heartbeat: now}},
		&state.PutNode{Node: api.Node{Name: "n3", Status: api.NodeReady, Heartbeat: now}},
	} {
		if _, err := r.Apply(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}
	m := New(r, Options{Node: "n1"}, slog.New(slog.DiscardHandler))
	members := []Member{{Name: "n1", Status: "alive"}, {Name: "n2", Status: "alive"}, {Name: "n3", Status: "alive"}}
	key := func() []byte { ci, _ := st.Cluster(); return ci.GossipKey }

	m.reconcileMembers(ctx, members, map[string]time.Time{}, 30*time.Second)
	if !bytes.Equal(key(), first) {
		t.Fatal("the key was rotated with no node revoked")
	}
	// Revoked at a time ahead of the leader's clock (an earlier leader's).
	revokedAt := now.Add(time.Hour)
	if _, err := r.Apply(ctx, &state.Revoke{Revocation: api.Revocation{Kind: api.CertNode, Name: "n3", At: revokedAt}}); err != nil {
		t.Fatal(err)
	}
	m.rotateGossipKey(ctx, st) // n3 is still in the raft configuration: not yet
	if !bytes.Equal(key(), first) {
		t.Fatal("the key was rotated while the revoked node was still a raft member, which may get the entry")
	}
	m.reconcileMembers(ctx, members, map[string]time.Time{}, 30*time.Second)
	if !slices.Contains(r.Removed(), "n3") {
		t.Fatalf("n3 not removed from raft (removed %v)", r.Removed())
	}
	second := key()
	ci, _ := st.Cluster()
	if bytes.Equal(second, first) || len(second) != state.GossipKeySize || ci.GossipKeyGen != 1 {
		t.Fatalf("after n3's revocation: key rotated %v (%d bytes), generation %d",
			!bytes.Equal(second, first), len(second), ci.GossipKeyGen)
	}
	m.reconcileMembers(ctx, members, map[string]time.Time{}, 30*time.Second)
	if !bytes.Equal(key(), second) {
		t.Fatal("the key was rotated again with no new revocation")
	}
}
