package state_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/state"
)

func TestACMEStorage(t *testing.T) {
	w := newWriter(t)
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	put := func(k string) {
		w.must(&state.PutACME{Key: k, Entry: state.ACMEEntry{Value: []byte(k), Modified: t0}})
	}
	put("certificates/ca/a.example/a.example.crt")
	put("certificates/ca/a.example/a.example.key")
	put("certificates/ca/a.example.org/a.example.org.crt") // not under a.example/
	if err := w.apply(&state.PutACME{Key: "certificates/"}); err == nil {
		t.Error("a directory stored as a key")
	}
	if e, ok := w.st.ACME("certificates/ca/a.example/a.example.key"); !ok || string(e.Value) != "certificates/ca/a.example/a.example.key" {
		t.Errorf("ACME(key) = %q, %v", e.Value, ok)
	}
	w.must(&state.DeleteACME{Key: "certificates/ca/a.example"})
	if got := w.st.ACMEKeys(); !slices.Equal(got, []string{"certificates/ca/a.example.org/a.example.org.crt"}) {
		t.Errorf("after deleting a.example's directory: %v", got)
	}

	lock := func(owner string, at time.Time) error {
		return w.apply(&state.LockACME{Name: "issue_cert_a.example", Owner: owner, At: at, Until: at.Add(5 * time.Minute)})
	}
	w.must(&state.LockACME{Name: "issue_cert_a.example", Owner: "n1", At: t0, Until: t0.Add(5 * time.Minute)})
	if err := lock("n2", t0.Add(time.Minute)); !errors.Is(err, state.ErrACMELocked) {
		t.Errorf("n2 took n1's lock: %v", err)
	}
	if err := lock("n1", t0.Add(time.Minute)); err != nil {
		t.Errorf("n1 extends its own lock: %v", err)
	}
	if err := lock("n2", t0.Add(7*time.Minute)); err != nil {
		t.Errorf("n2 takes the lock n1 let expire: %v", err)
	}
	w.must(&state.UnlockACME{Name: "issue_cert_a.example", Owner: "n1"}) // not n1's any more: nothing
	if err := lock("n1", t0.Add(8*time.Minute)); !errors.Is(err, state.ErrACMELocked) {
		t.Errorf("n1's unlock released n2's lock: %v", err)
	}
	w.must(&state.UnlockACME{Name: "issue_cert_a.example", Owner: "n2"})
	if err := lock("n1", t0.Add(8*time.Minute)); err != nil {
		t.Errorf("the lock after n2's unlock: %v", err)
	}

	st := snapshotCopy(t, w.st)
	if got := st.ACMEKeys(); len(got) != 1 {
		t.Errorf("restored keys: %v", got)
	}
}
