package raftstore

import (
	"fmt"
	"io"

	"github.com/hashicorp/raft"

	"github.com/devhq/dev/cluster/state"
)

// fsm applies raft log entries to the in-memory state. It only mutates
// state; every decision was taken before the entry was proposed.
type fsm struct {
	state *state.Store
}

var _ raft.FSM = (*fsm)(nil)

// Apply decodes one entry (type byte + JSON) and applies it. The returned
// value is the error, if any, handed back to the proposer.
func (f *fsm) Apply(l *raft.Log) any {
	cmd, err := state.Decode(l.Data)
	if err != nil {
		return err
	}
	return f.state.Update(l.Index, func(tx *state.Txn) error { return tx.Apply(cmd) })
}

// Snapshot captures the whole state. raft calls it from the FSM goroutine,
// so no Apply runs concurrently.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	b, err := f.state.MarshalSnapshot()
	if err != nil {
		return nil, err
	}
	return snapshot(b), nil
}

// Restore replaces the state with a snapshot.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	return f.state.RestoreSnapshot(b)
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("write snapshot: %w", err)
	}
	return sink.Close()
}

func (s snapshot) Release() {}
