package manager

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/raftstore"
	"github.com/devhq/dev/cluster/raftstore/rafttest"
	"github.com/devhq/dev/cluster/state"
)

// TestRetryable: a write is tried again when there is no leader or the
// leader cannot be reached, never after the leader's own answer.
func TestRetryable(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"no leader", fmt.Errorf("apply: %w", raftstore.ErrNotLeader), true},
		{"leader silent", fmt.Errorf("%w: the leader did not answer within 3s", errLeaderSilent), true},
		{"leader unreachable", fmt.Errorf("forward write: %w at tcp://10.0.0.1:7948: connection refused", api.ErrUnreachable), true},
		{"the leader refused", &api.APIError{Status: 400, Code: "invalid", Message: "replicas must be >= 0"}, false},
		{"applied", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := retryable(tt.err); got != tt.want {
				t.Errorf("retryable(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// TestSameReport: a heartbeat that changes nothing the cluster acts on is
// not written to raft.
func TestSameReport(t *testing.T) {
	base := api.Node{Name: "n1", Address: "10.0.0.1", APIAddr: "10.0.0.1:7948", Status: api.NodeReady,
		PodSubnet: "10.213.1.0/24", Labels: map[string]string{"zone": "a"},
		Allocatable: api.ResourceAmounts{NanoCPUs: 2e9, MemoryBytes: 1 << 30}, Load: 0.3}
	tests := []struct {
		name   string
		change func(n *api.Node)
		want   bool
	}{
		{"only the time", func(n *api.Node) { n.Heartbeat = time.Now() }, true},
		{"load moved a little", func(n *api.Node) { n.Load = 0.7 }, true},
		{"load moved a lot: kept in memory, not written", func(n *api.Node) { n.Load = 1.9 }, true},
		{"status", func(n *api.Node) { n.Status = api.NodeLeft }, false},
		{"address", func(n *api.Node) { n.Address = "10.0.0.2" }, false},
		{"label value", func(n *api.Node) { n.Labels = map[string]string{"zone": "b"} }, false},
		{"label added", func(n *api.Node) { n.Labels = map[string]string{"zone": "a", "gpu": "1"} }, false},
		{"resources", func(n *api.Node) { n.Allocatable.MemoryBytes = 2 << 30 }, false},
		{"engine unreachable", func(n *api.Node) { n.EngineUnreachable = true }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := base
			n.Labels = map[string]string{"zone": "a"}
			tt.change(&n)
			if got := sameReport(base, n); got != tt.want {
				t.Errorf("sameReport = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestLoadIsServedFromMemory: a report whose load moved is not written, yet
// the leader's node list shows the latest load.
func TestLoadIsServedFromMemory(t *testing.T) {
	st := state.New()
	r := rafttest.New(st, raftstore.Server{ID: "n1", Voter: true})
	m := New(r, Options{Node: "n1"}, slog.New(slog.DiscardHandler))
	n := api.Node{Name: "n1", Address: "10.0.0.1", Allocatable: api.ResourceAmounts{NanoCPUs: 2e9}, Load: 0.1}
	if _, err := m.RegisterNode(t.Context(), n); err != nil {
		t.Fatal(err)
	}
	idx := st.Index()
	n.Load = 1.9
	if _, err := m.RegisterNode(t.Context(), n); err != nil {
		t.Fatal(err)
	}
	if st.Index() != idx {
		t.Errorf("a report whose load moved was written (index %d -> %d)", idx, st.Index())
	}
	if got := m.Nodes(); len(got) != 1 || got[0].Load != 1.9 {
		t.Errorf("Nodes = %+v, want n1 with load 1.9", got)
	}
}

// TestHeartbeatKeepsUserLabels: after dev node label, the node's own
// report (its --label flags) is a heartbeat like any other: nothing is
// written and the user's labels stay.
func TestHeartbeatKeepsUserLabels(t *testing.T) {
	st := state.New()
	r := rafttest.New(st, raftstore.Server{ID: "n1", Voter: true})
	m := New(r, Options{Node: "n1"}, slog.New(slog.DiscardHandler))
	n := api.Node{Name: "n1", Address: "10.0.0.1", Labels: map[string]string{"zone": "a"}}
	if _, err := m.RegisterNode(t.Context(), n); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Apply(t.Context(), &state.LabelNode{Name: "n1", Labels: map[string]string{"zone": "", "gpu": "yes"}}); err != nil {
		t.Fatal(err)
	}
	idx := st.Index()
	if _, err := m.RegisterNode(t.Context(), n); err != nil {
		t.Fatal(err)
	}
	if st.Index() != idx {
		t.Errorf("a heartbeat after dev node label was written (index %d -> %d)", idx, st.Index())
	}
	if got, _ := st.Node("n1"); len(got.Labels) != 1 || got.Labels["gpu"] != "yes" {
		t.Errorf("labels after the heartbeat: %v, want gpu=yes only", got.Labels)
	}
}
