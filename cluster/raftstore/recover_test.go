package raftstore

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// TestRecover: a non-voter's copy of the state, its voter gone, is made a
// one-voter cluster that elects itself, keeps the state and takes writes.
// (The data dir of the voter n1 stands for n2's copy: they hold the same
// log.)
func TestRecover(t *testing.T) {
	dir := t.TempDir()
	a1, a2 := "127.0.0.1:"+freePort(t), "127.0.0.1:"+freePort(t)
	r, err := Open(Config{DataDir: dir, NodeID: "n1", BindAddr: a1, Bootstrap: true, Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Apply(ctx, &state.PutNode{Node: api.Node{Name: "n1", Status: api.NodeReady}}); err != nil {
		t.Fatal(err)
	}
	if err := r.AddServer("n2", a2, false); err != nil {
		t.Fatal(err)
	}
	r.Close()

	got, err := Members(dir, "n2")
	if err != nil {
		t.Fatal(err)
	}
	want := []Server{{ID: "n1", Address: a1, Voter: true}, {ID: "n2", Address: a2}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Members before = %+v, want %+v", got, want)
	}
	if err := Recover(dir, "n2", a2); err != nil {
		t.Fatal(err)
	}
	if got, _ := Members(dir, "n2"); !reflect.DeepEqual(got, []Server{{ID: "n2", Address: a2, Voter: true}}) {
		t.Fatalf("Members after = %+v, want n2 alone, a voter", got)
	}
	// The snapshot the recovery wrote is private, as the agent's are.
	if err := filepath.WalkDir(filepath.Join(dir, "raft", "snapshots"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if want := map[bool]os.FileMode{true: 0o700, false: 0o600}[d.IsDir()]; fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	r2, err := Open(Config{DataDir: dir, NodeID: "n2", BindAddr: a2, Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if err := r2.WaitReady(ctx); err != nil {
		t.Fatalf("the recovered node does not lead: %v", err)
	}
	if _, ok := r2.State().Node("n1"); !ok {
		t.Errorf("the recovered state lost n1's record")
	}
	if _, err := r2.Apply(ctx, &state.PutNode{Node: api.Node{Name: "n2", Status: api.NodeReady}}); err != nil {
		t.Errorf("write after recovery: %v", err)
	}
}
