package manager

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/peers"
	"github.com/devhq/dev/cluster/raftstore"
	"github.com/devhq/dev/cluster/state"
)

// followerRaft is a follower whose leader is "old" until elected is set,
// then "new".
type followerRaft struct {
	st      *state.Store
	elected *atomic.Bool
}

func (r followerRaft) leader() string {
	if r.elected.Load() {
		return "new"
	}
	return "old"
}
func (r followerRaft) Apply(context.Context, state.Command) (uint64, error) {
	return 0, raftstore.ErrNotLeader
}
func (r followerRaft) IsLeader() bool                       { return false }
func (r followerRaft) LeaderCh() <-chan bool                { return nil }
func (r followerRaft) Leader() string                       { return r.leader() }
func (r followerRaft) LeaderAddr() (string, string)         { return "", r.leader() }
func (r followerRaft) State() *state.Store                  { return r.st }
func (r followerRaft) Servers() ([]raftstore.Server, error) { return nil, nil }
func (r followerRaft) AddServer(string, string, bool) error { return nil }
func (r followerRaft) RemoveServer(string) error            { return nil }
func (r followerRaft) DemoteServer(string) error            { return nil }
func (r followerRaft) TransferLeadership() error            { return raftstore.ErrNotLeader }
func (r followerRaft) WaitReady(context.Context) error      { return nil }

// TestWriteFollowsLeader: a write forwarded to a leader that accepts the
// connection and then says nothing (its link cut mid-way) is sent again,
// within the forward bound, to the leader elected meanwhile. Real sockets,
// real TLS; before, it waited for the caller's whole deadline.
func TestWriteFollowsLeader(t *testing.T) {
	// The old leader: takes connections, never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	var elected atomic.Bool
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			elected.Store(true) // meanwhile the others elect a new leader
		}
	}()
	// The new leader: applies forwarded writes.
	var applied atomic.Int32
	newLeader := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/internal/apply" {
			http.NotFound(w, r)
			return
		}
		applied.Add(1)
		_ = json.NewEncoder(w).Encode(api.WriteResult{Index: 1})
	}))
	defer newLeader.Close()

	st := state.New()
	for name, addr := range map[string]string{"old": silent.Addr().String(), "new": newLeader.Listener.Addr().String()} {
		cmd := &state.PutNode{Node: api.Node{Name: name, Status: api.NodeReady, APIAddr: addr}}
		if err := st.Update(st.Index()+1, func(tx *state.Txn) error { return tx.Apply(cmd) }); err != nil {
			t.Fatal(err)
		}
	}
	m := New(followerRaft{st: st, elected: &elected}, Options{Node: "me",
		Peers: peers.New(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})}, slog.Default()) //nolint:gosec // a test server's own certificate

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := m.Apply(ctx, &state.Scale{Project: "p", Replicas: map[string]int{"web": 2}}); err != nil {
		t.Fatalf("Apply: %v (after %s)", err, time.Since(start))
	}
	took := time.Since(start)
	if applied.Load() != 1 || !elected.Load() {
		t.Fatalf("applied %d times by the new leader (old leader reached: %v), want once after trying the old", applied.Load(), elected.Load())
	}
	if took > forwardTimeout+2*time.Second {
		t.Errorf("the write took %s: want about one forward bound (%s)", took, forwardTimeout)
	}
	t.Logf("write answered by the new leader %s after it was issued (forward bound %s)", took.Round(10*time.Millisecond), forwardTimeout)
}
