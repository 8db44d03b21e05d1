package state_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/devhq/dev/cluster/state"
)

func TestCARotationSteps(t *testing.T) {
	w := newWriter(t)
	rot := state.CARotation{ID: "sha256:new", CertPEM: []byte("new"), CrossPEM: []byte("cross"), Sealed: []byte("newkey")}
	if err := w.apply(&state.StartCARotation{Rotation: rot, Label: "old"}); err == nil {
		t.Error("a rotation started before the cluster is set up")
	}
	w.must(&state.SetCluster{Cluster: state.ClusterInfo{ID: "c1", CACertPEM: []byte("old"), Sealed: []byte("s1")}, Founder: "n1"})
	w.must(&state.StartCARotation{Rotation: rot, Label: "oldfp"})
	ci, _ := w.st.Cluster()
	if got := ci.TrustedCAs(); !bytes.Equal(got, []byte("oldnew")) {
		t.Errorf("TrustedCAs during the rotation = %q, want both", got)
	}
	if ci.Label != "oldfp" {
		t.Errorf("label = %q, want the old CA's", ci.Label)
	}
	if err := w.apply(&state.StartCARotation{Rotation: rot}); err == nil {
		t.Error("a second rotation started during the first")
	}
	w.must(&state.MoveToCA{ID: rot.ID, Node: "n1"})
	w.must(&state.MoveToCA{ID: rot.ID, Node: "n2"})
	w.must(&state.MoveToCA{ID: rot.ID, Node: "n1"}) // again: recorded once
	if err := w.apply(&state.MoveToCA{ID: "sha256:other", Node: "n3"}); !errors.Is(err, state.ErrNoCARotation) {
		t.Errorf("MoveToCA of another rotation = %v, want ErrNoCARotation", err)
	}
	ci, _ = w.st.Cluster()
	if !slices.Equal(ci.Rotation.Moved, []string{"n1", "n2"}) {
		t.Errorf("moved = %v, want [n1 n2]", ci.Rotation.Moved)
	}
	if err := w.apply(&state.FinishCARotation{ID: rot.ID, Sealed: []byte("s2"), Prev: []byte("stale")}); err == nil {
		t.Error("finished over secrets that changed meanwhile")
	}
	w.must(&state.FinishCARotation{ID: rot.ID, Sealed: []byte("s2"), Prev: []byte("s1")})
	ci, _ = w.st.Cluster()
	if ci.Rotation != nil || string(ci.CACertPEM) != "new" || string(ci.Sealed) != "s2" || string(ci.TrustedCAs()) != "new" || ci.Label != "oldfp" {
		t.Errorf("after the rotation: %+v", ci)
	}
	// The record survives a snapshot.
	st := snapshotCopy(t, w.st)
	if got, _ := st.Cluster(); got.Label != "oldfp" || string(got.CACertPEM) != "new" {
		t.Errorf("restored: label %q CA %q", got.Label, got.CACertPEM)
	}
}
