package node

import (
	"slices"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/manager"
	"github.com/devhq/dev/cluster/state"
	"github.com/devhq/dev/gossip"
)

// TestOverlayPeers: VXLAN entries go to the cluster's nodes only, for the
// subnet and address the state gives them; a gossip member without a node
// record, a revoked node, or one claiming another subnet gets none.
func TestOverlayPeers(t *testing.T) {
	st := state.New()
	t0 := time.Now().UTC().Add(-time.Hour)
	if err := st.Update(1, func(tx *state.Txn) error {
		for _, n := range []api.Node{
			{Name: "h1", Address: "10.99.0.11", PodSubnet: "10.213.1.0/24"},
			{Name: "h2", Address: "10.99.0.12", PodSubnet: "10.213.2.0/24"},
			{Name: "h3", Address: "10.99.0.13", PodSubnet: "10.213.3.0/24"},
			{Name: "h4", Address: "10.99.0.14", PodSubnet: "10.213.4.0/24"},
			{Name: "h5", Address: "10.99.0.15", PodSubnet: "10.213.5.0/24"},
			{Name: "h7", Address: "10.99.0.17", PodSubnet: "10.213.7.0/24"},
		} {
			tx.PutNode(n)
			if err := tx.Apply(&state.Admit{Name: n.Name, At: t0}); err != nil {
				return err
			}
		}
		return tx.Apply(&state.Revoke{Revocation: api.Revocation{Kind: api.CertNode, Name: "h3", At: t0.Add(time.Minute)}})
	}); err != nil {
		t.Fatal(err)
	}
	member := func(name, ip, subnet string) gossip.Member {
		return gossip.Member{Name: name, Status: gossip.StatusAlive, Tags: map[string]string{
			manager.TagIP: ip, manager.TagSubnet: subnet, manager.TagVTEP: "0e:64:0a:63:00:01"}}
	}
	failed := member("h5", "10.99.0.15", "10.213.5.0/24")
	failed.Status = gossip.StatusFailed
	members := []gossip.Member{
		member("h1", "10.99.0.11", "10.213.1.0/24"), // self
		member("h2", "10.99.0.12", "10.213.2.0/24"), // a node of the cluster
		member("h3", "10.99.0.13", "10.213.3.0/24"), // revoked
		member("h4", "10.99.0.14", "10.213.2.0/24"), // claims h2's subnet
		member("h7", "10.99.0.66", "10.213.7.0/24"), // another address than its record's
		failed, // not alive
		member("rogue", "10.99.0.66", "10.213.66.0/24"),     // gossip only, no certificate
		member("h2-moved", "10.99.0.77", "10.213.2.0/24"),   // no node record
		{Name: "h6", Status: gossip.StatusAlive, Tags: nil}, // not set up
	}
	var got []string
	for _, p := range overlayPeers(members, "h1", st) {
		got = append(got, p.Name+" "+p.HostIP.String()+" "+p.PodSubnet.String())
	}
	if want := []string{"h2 10.99.0.12 10.213.2.0/24"}; !slices.Equal(got, want) {
		t.Fatalf("overlay peers = %q, want %q", got, want)
	}
}
