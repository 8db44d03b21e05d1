// Package rafttest is a raft of one for tests of the packages above raft
// (manager, apiserver): a leader that applies commands to a real state
// store at once, with the raft configuration a test sets.
package rafttest

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/devhq/dev/cluster/raftstore"
	"github.com/devhq/dev/cluster/state"
)

// Raft is node "n1" leading a raft of one over a real state store.
type Raft struct {
	St *state.Store

	mu      sync.Mutex
	servers []raftstore.Server
	removed []string
}

// New returns a leader over st whose raft configuration is servers.
func New(st *state.Store, servers ...raftstore.Server) *Raft {
	return &Raft{St: st, servers: servers}
}

// Apply applies cmd to the store as the next index.
func (r *Raft) Apply(_ context.Context, cmd state.Command) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	idx := r.St.Index() + 1
	return idx, r.St.Update(idx, func(tx *state.Txn) error { return tx.Apply(cmd) })
}

func (r *Raft) IsLeader() bool               { return true }
func (r *Raft) LeaderCh() <-chan bool        { return nil }
func (r *Raft) Leader() string               { return "n1" }
func (r *Raft) LeaderAddr() (string, string) { return "127.0.0.1:1", "n1" }
func (r *Raft) State() *state.Store          { return r.St }
func (r *Raft) WaitReady(context.Context) error {
	return nil
}

// Servers is the raft configuration the test set.
func (r *Raft) Servers() ([]raftstore.Server, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]raftstore.Server(nil), r.servers...), nil
}

// AddServer adds a server, or promotes one (as raft's AddVoter does; its
// AddNonvoter leaves a voter a voter).
func (r *Raft) AddServer(id, _ string, voter bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, s := range r.servers {
		if s.ID == id {
			r.servers[i].Voter = s.Voter || voter
			return nil
		}
	}
	r.servers = append(r.servers, raftstore.Server{ID: id, Voter: voter})
	return nil
}

// DemoteServer takes a server's vote.
func (r *Raft) DemoteServer(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, s := range r.servers {
		if s.ID == id {
			r.servers[i].Voter = false
		}
	}
	return nil
}

// TransferLeadership implements manager.Raft: a raft of one has no one
// to hand leadership to.
func (r *Raft) TransferLeadership() error { return errors.New("rafttest: no other server") }

func (r *Raft) RemoveServer(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removed = append(r.removed, id)
	r.servers = slices.DeleteFunc(r.servers, func(s raftstore.Server) bool { return s.ID == id })
	return nil
}

// Removed lists the servers removed, in order.
func (r *Raft) Removed() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.removed...)
}
