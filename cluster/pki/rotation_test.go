package pki

import (
	"strings"
	"testing"
	"time"
)

// rotating is CA old's successor during a rotation: it signs with its own
// key, sends the cross-signed certificate along, and has what it issues
// trust both.
func rotating(t *testing.T, old, next *CA) *CA {
	t.Helper()
	cross, err := old.CrossSign(next)
	if err != nil {
		t.Fatal(err)
	}
	r := *next
	r.Chain = cross
	r.Trust = append(old.Roots(), next.Cert)
	return &r
}

// TestCARotation walks a rotation's three moments over real TLS: a node
// not yet moved (its certificate of the old CA, trusting only the old CA)
// and a moved one (new CA, trusting both) accept each other both ways;
// once the rotation is done, a node that trusts only the new CA refuses
// the unmoved one; a cross-signature by a CA nobody trusts proves nothing.
func TestCARotation(t *testing.T) {
	old, next, evil := newTestCA(t, "old"), newTestCA(t, "next"), newTestCA(t, "evil")
	rot := rotating(t, old, next)
	unmoved := issue(t, old, "n1", RoleNode, time.Time{}, time.Time{})
	moved := issue(t, rot, "n2", RoleNode, time.Time{}, time.Time{})
	if got := len(moved.Certificate().Certificate); got != 4 {
		t.Errorf("a moved node presents %d certificates, want 4 (leaf, cross-signed CA, both CAs)", got)
	}

	for _, tt := range []struct {
		name           string
		server, client *Identity
	}{
		{"unmoved server, moved client", unmoved, moved},
		{"moved server, unmoved client", moved, unmoved},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := handshake(t, tt.server.NodeServerTLS(), tt.client.ClientTLS())
			if res.clientErr != nil || res.serverErr != nil {
				t.Fatalf("handshake: client %v, server %v", res.clientErr, res.serverErr)
			}
		})
	}

	t.Run("a join token of either CA pins a moved node", func(t *testing.T) {
		for _, ca := range []*CA{old, next} {
			res := handshake(t, moved.JoinServerTLS(), PinnedTLS(ca.Fingerprint()))
			if res.clientErr != nil {
				t.Errorf("pinned to %s: %v", ca.Cert.Subject.CommonName, res.clientErr)
			}
		}
	})

	done := issue(t, next, "n3", RoleNode, time.Time{}, time.Time{}) // trusts the new CA only
	t.Run("done: the unmoved node is refused", func(t *testing.T) {
		res := handshake(t, done.NodeServerTLS(), insecureWithCert(unmoved))
		if res.serverErr == nil || !strings.Contains(res.serverErr.Error(), "not signed by this cluster's CA") {
			t.Errorf("server error = %v, want not signed by this cluster's CA", res.serverErr)
		}
		// The unmoved node, as a client, is told why.
		if res := handshake(t, done.NodeServerTLS(), unmoved.ClientTLS()); res.clientErr == nil ||
			!strings.Contains(res.clientErr.Error(), "dev ca rotate") {
			t.Errorf("client error = %v, want one that names dev ca rotate", res.clientErr)
		}
		if res := handshake(t, done.NodeServerTLS(), moved.ClientTLS()); res.serverErr != nil || res.clientErr != nil {
			t.Errorf("moved node: client %v, server %v", res.clientErr, res.serverErr)
		}
	})

	t.Run("a cross-signature by another CA", func(t *testing.T) {
		forged := issue(t, rotating(t, evil, next), "n4", RoleNode, time.Time{}, time.Time{})
		res := handshake(t, unmoved.NodeServerTLS(), insecureWithCert(forged))
		if res.serverErr == nil {
			t.Error("a node whose CA is cross-signed by an untrusted CA was accepted")
		}
	})

	t.Run("SetRoots", func(t *testing.T) {
		if err := unmoved.SetRoots(rot.RootsPEM()); err != nil {
			t.Fatalf("trust both: %v", err)
		}
		if got := len(unmoved.Roots()); got != 2 {
			t.Errorf("roots = %d, want 2", got)
		}
		if err := unmoved.SetRoots(next.CertPEM); err == nil {
			t.Error("SetRoots dropped the CA of the node's own certificate")
		}
		if err := moved.SetRoots(next.CertPEM); err != nil {
			t.Fatalf("moved node trusts the new CA only: %v", err)
		}
		if res := handshake(t, moved.NodeServerTLS(), insecureWithCert(unmoved)); res.serverErr == nil {
			t.Error("after SetRoots(new only) the unmoved node is still accepted")
		}
		// A server that still sends the cross-signed CA: the unmoved
		// client verifies it, and sees it will be refused.
		if res := handshake(t, moved.NodeServerTLS(), unmoved.ClientTLS()); res.clientErr == nil ||
			!strings.Contains(res.clientErr.Error(), "does not trust this certificate's CA") {
			t.Errorf("client error = %v, want does not trust this certificate's CA", res.clientErr)
		}
		if c := moved.Certificate().Certificate; len(c) != 3 {
			t.Errorf("presents %d certificates, want 3 (leaf, cross-signed CA, new CA)", len(c))
		}
	})
}
