package node

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/pki"
)

// TestLocalCerts: a host's certificate is asked for once however many
// handshakes want it at once, verifies against the local CA for that host,
// and is asked for again once past 2/3 of its life.
func TestLocalCerts(t *testing.T) {
	ca, err := pki.NewLocalCA("c1")
	if err != nil {
		t.Fatal(err)
	}
	var issued atomic.Int32
	life := time.Hour
	certs := newLocalCerts(func(_ context.Context, host string, csr []byte) (api.IngressCertResponse, error) {
		issued.Add(1)
		cert, err := ca.SignServer(csr, []string{host}, life)
		return api.IngressCertResponse{Cert: cert, CA: ca.CertPEM}, err
	})
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if _, err := certs.Certificate(context.Background(), "web.shop.localhost"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := issued.Load(); n != 1 {
		t.Fatalf("10 handshakes at once asked for %d certificates, want 1", n)
	}
	c, err := certs.Certificate(context.Background(), "web.shop.localhost")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "web.shop.localhost"}); err != nil {
		t.Errorf("the certificate does not verify for its host against the local CA: %v", err)
	}
	if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "other.localhost"}); err == nil {
		t.Error("the certificate verifies for another host")
	}
	// The local CA's name constraint: a certificate it signed for a name
	// outside .localhost verifies nowhere, whoever got it signed.
	_, csr, _ := pki.NewKeyAndCSR("x")
	evilPEM, err := ca.SignServer(csr, []string{"github.com"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(evilPEM)
	evil, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := evil.Verify(x509.VerifyOptions{Roots: pool, DNSName: "github.com"}); err == nil {
		t.Error("a certificate of the local CA for github.com verifies: the CA has no name constraint")
	}
	// Past 2/3 of its life: asked for again.
	certs.hosts["web.shop.localhost"].renewAt = time.Now().Add(-time.Second)
	if _, err := certs.Certificate(context.Background(), "web.shop.localhost"); err != nil || issued.Load() != 2 {
		t.Errorf("after its renewal time: %v, %d certificates asked for, want 2", err, issued.Load())
	}
}
