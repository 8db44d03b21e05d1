package state_test

import (
	"bytes"
	"testing"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// FuzzDecode: a raft entry (what a forwarded write carries) either fails
// to decode or is a command that applies or is refused without a panic,
// and encodes back to an entry that decodes the same.
func FuzzDecode(f *testing.F) {
	for _, c := range []state.Command{
		&state.ApplyProject{Project: api.Project{Name: "p", Services: []api.ServiceSpec{{Project: "p", Name: "web", Image: "x", Replicas: 1}}}},
		&state.Scale{Project: "p", Replicas: map[string]int{"web": 3}},
		&state.Revoke{Revocation: api.Revocation{Kind: api.CertNode, Name: "h2"}},
		&state.PodStatus{Name: "p-web-1", Node: "n1"},
	} {
		b, err := state.Encode(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, entry []byte) {
		c, err := state.Decode(entry)
		if err != nil {
			return
		}
		b, err := state.Encode(c)
		if err != nil {
			t.Fatalf("re-encode %T: %v", c, err)
		}
		c2, err := state.Decode(b)
		if err != nil {
			t.Fatalf("decode of the re-encoded %T: %v", c, err)
		}
		if b2, _ := state.Encode(c2); !bytes.Equal(b, b2) {
			t.Fatalf("%T does not round-trip:\n%s\n%s", c, b, b2)
		}
		st := state.New()
		_ = st.Update(1, func(tx *state.Txn) error { return tx.Apply(c) })
	})
}
