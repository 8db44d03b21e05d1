package pki

import (
	"bytes"
	"fmt"
	"os"
	"time"
)

// ClientBundle issues a client certificate for name (role RoleAdmin or
// RoleRead, CN "client:<name>") with a fresh key, and returns a single PEM
// file holding the certificate, the key and the CA certificate, for `dev
// token --client`. Anyone holding it can use the cluster API with that role:
// it must be stored with mode 0600.
func (ca *CA) ClientBundle(name, role string) ([]byte, error) {
	if role != RoleAdmin && role != RoleRead {
		return nil, fmt.Errorf("create client bundle: role %q is not a client's (want %q or %q)", role, RoleAdmin, RoleRead)
	}
	keyPEM, csrPEM, err := NewKeyAndCSR(name)
	if err != nil {
		return nil, fmt.Errorf("create client bundle: %w", err)
	}
	certPEM, err := ca.Sign(csrPEM, name, role, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("create client bundle: %w", err)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# dev client bundle for %q (role %s), cluster CA %s\n# Keep it secret: it grants access to the cluster API.\n", name, role, ca.Fingerprint())
	b.Write(certPEM)
	b.Write(keyPEM)
	b.Write(ca.CertPEM)
	return b.Bytes(), nil
}

// ParseBundle reads a bundle made by ClientBundle: a leaf certificate, its
// key and the self-signed CA certificate, in any order.
func ParseBundle(data []byte) (*Identity, error) {
	certs, err := parseCertsPEM(data)
	if err != nil {
		return nil, fmt.Errorf("parse client bundle: %w", err)
	}
	var leafPEM, caPEM []byte
	for _, c := range certs {
		if isSelfSignedCA(c) {
			caPEM = encodeCertPEM(c.Raw)
		} else if leafPEM == nil {
			leafPEM = encodeCertPEM(c.Raw)
		}
	}
	if leafPEM == nil || caPEM == nil {
		return nil, fmt.Errorf(`parse client bundle: want a client certificate and the CA certificate; create the bundle with "dev token --client"`)
	}
	id, err := newIdentity(leafPEM, data, caPEM, time.Now())
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
