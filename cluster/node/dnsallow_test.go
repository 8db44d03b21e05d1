package node

import (
	"net/netip"
	"testing"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// TestDNSSources: the cluster DNS answers pods, the node itself and the
// cluster's nodes, and no one else; a node that joins is answered from
// the next refresh.
func TestDNSSources(t *testing.T) {
	st := state.New()
	put := func(idx uint64, name, addr string) {
		t.Helper()
		if err := st.Update(idx, func(tx *state.Txn) error {
			tx.PutNode(api.Node{Name: name, Address: addr, Status: api.NodeReady})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	put(1, "h2", "10.99.0.12")
	s := newDNSSources(netip.MustParsePrefix("10.213.0.0/16"), st)
	s.refresh = 0 // re-read on every query
	for _, tt := range []struct {
		addr string
		want bool
	}{
		{"10.213.7.9", true},  // a pod
		{"127.0.0.1", true},   // the node
		{"10.99.0.12", true},  // a peer
		{"192.0.2.7", false},  // a stranger routing to the node
		{"10.214.0.1", false}, // not the cluster CIDR
	} {
		if got := s.Allow(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("Allow(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	put(2, "h3", "192.0.2.7")
	if !s.Allow(netip.MustParseAddr("192.0.2.7")) {
		t.Error("a node that joined is refused")
	}
}
