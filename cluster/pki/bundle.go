package pki

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"
)

// DefaultClientCertLifetime is how long a client bundle lasts unless asked
// otherwise (dev token --client NAME --valid-for); the CLI renews it at
// 2/3 of its life.
const DefaultClientCertLifetime = 365 * 24 * time.Hour

// ClientBundle issues a client certificate for name (role RoleAdmin or
// RoleRead, CN "client:<name>") with a fresh key, valid for lifetime
// (0: DefaultClientCertLifetime), and returns a single PEM file holding the
// certificate, the key and the CA certificate, for `dev token --client`.
// Anyone holding it can use the cluster API with that role: it must be
// stored with mode 0600.
func (ca *CA) ClientBundle(name, role string, lifetime time.Duration) ([]byte, error) {
	if role != RoleAdmin && role != RoleRead {
		return nil, fmt.Errorf("create client bundle: role %q is not a client's (want %q or %q)", role, RoleAdmin, RoleRead)
	}
	if lifetime <= 0 {
		lifetime = DefaultClientCertLifetime
	}
	keyPEM, csrPEM, err := NewKeyAndCSR(name)
	if err != nil {
		return nil, fmt.Errorf("create client bundle: %w", err)
	}
	certPEM, err := ca.SignFor(csrPEM, name, role, nil, nil, lifetime)
	if err != nil {
		return nil, fmt.Errorf("create client bundle: %w", err)
	}
	return BundlePEM(name, role, certPEM, keyPEM, ca.Roots()), nil
}

// BundlePEM is the client bundle file of a certificate (and the
// intermediates its CA gave with it), its key and the CAs to trust, with
// a header that says what it is.
func BundlePEM(name, role string, certPEM, keyPEM []byte, roots []*x509.Certificate) []byte {
	var b bytes.Buffer
	fps := make([]string, len(roots))
	for i, r := range roots {
		fps[i] = Fingerprint(r)
	}
	fmt.Fprintf(&b, "# dev client bundle for %q (role %s), cluster CA %s\n# Keep it secret: it grants access to the cluster API.\n", name, role, strings.Join(fps, " and "))
	b.Write(certPEM)
	b.Write(keyPEM)
	b.Write(encodeCertsPEM(roots))
	return b.Bytes()
}

// ParseBundle reads a bundle made by ClientBundle: a leaf certificate, any
// intermediate, its key and the self-signed CA certificates, in any order
// but the leaf first of the certificates that are not self-signed.
func ParseBundle(data []byte) (*Identity, error) {
	certs, err := parseCertsPEM(data)
	if err != nil {
		return nil, fmt.Errorf("parse client bundle: %w", err)
	}
	var chainPEM, caPEM []byte
	for _, c := range certs {
		if isSelfSignedCA(c) {
			caPEM = append(caPEM, encodeCertPEM(c.Raw)...)
		} else {
			chainPEM = append(chainPEM, encodeCertPEM(c.Raw)...)
		}
	}
	if chainPEM == nil || caPEM == nil {
		return nil, fmt.Errorf(`parse client bundle: want a client certificate and the CA certificate; create the bundle with "dev token --client"`)
	}
	id, err := newIdentity(chainPEM, data, caPEM, time.Now())
	if err != nil {
		return nil, fmt.Errorf("parse client bundle: %w; create a new one with \"dev token --client\"", err)
	}
	return id, nil
}

// LoadClientBundle reads and parses the bundle file at path.
func LoadClientBundle(path string) (*Identity, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load client bundle: %w", err)
	}
	id, err := ParseBundle(data)
	if err != nil {
		return nil, fmt.Errorf("load client bundle %s: %w", path, err)
	}
	return id, nil
}
