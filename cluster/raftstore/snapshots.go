package raftstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
)

// privateSnapshots is hashicorp/raft's file snapshot store with its files
// made 0600 and its directories 0700: the store creates them 0644 and
// 0755, and a snapshot holds the whole state. (The raft directory above
// is 0700 as well.)
type privateSnapshots struct {
	*raft.FileSnapshotStore
	dir string // the store's snapshots directory
}

var _ raft.SnapshotStore = privateSnapshots{}

// Create implements raft.SnapshotStore: the snapshot is restricted once
// its sink is closed (written and renamed into place).
func (s privateSnapshots) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := s.FileSnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		return nil, err
	}
	return privateSink{SnapshotSink: sink, store: s}, nil
}

// restrict makes every file of the store 0600 and every directory 0700.
func (s privateSnapshots) restrict() error {
	// raft may install a snapshot while it takes one, and reaps old ones:
	// what vanishes meanwhile is skipped.
	err := filepath.WalkDir(s.dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		mode := os.FileMode(0o600)
		if d.IsDir() {
			mode = 0o700
		}
		if err := os.Chmod(path, mode); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("restrict raft snapshots: %w", err)
	}
	return nil
}

type privateSink struct {
	raft.SnapshotSink
	store privateSnapshots
}

func (k privateSink) Close() error {
	if err := k.SnapshotSink.Close(); err != nil {
		return err
	}
	return k.store.restrict()
}
