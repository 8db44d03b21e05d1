package raftstore

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
)

// TestSnapshotFilesArePrivate: a snapshot written through the store is
// 0600 in 0700 directories (hashicorp/raft makes them 0644 and 0755).
func TestSnapshotFilesArePrivate(t *testing.T) {
	dir := t.TempDir()
	files, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, raftLogger())
	if err != nil {
		t.Fatal(err)
	}
	snaps := privateSnapshots{FileSnapshotStore: files, dir: filepath.Join(dir, "snapshots")}
	sink, err := snaps.Create(raft.SnapshotVersionMax, 3, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write([]byte(`{"secret":"state"}`)); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	seen := 0
	err = filepath.WalkDir(snaps.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		want := os.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		} else {
			seen++
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil || seen == 0 {
		t.Fatalf("walk: %v, %d files", err, seen)
	}
}
