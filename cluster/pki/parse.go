package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// ParseCA rebuilds a CA from its certificate and key PEM, as replicated in
// the cluster store so that any leader can sign.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := parseCACertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("parse CA: %w", err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("parse CA: %w", err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, errors.New("parse CA: key does not match certificate")
	}
	return &CA{Cert: cert, Key: key, CertPEM: encodeCertPEM(cert.Raw)}, nil
}

// KeyPEM encodes the CA's private key.
func (ca *CA) KeyPEM() ([]byte, error) {
	b, err := encodeKeyPEM(ca.Key)
	if err != nil {
		return nil, fmt.Errorf("encode CA key: %w", err)
	}
	return b, nil
}

// ParseRoots reads the CAs to trust (ca.crt, state.ClusterInfo.TrustedCAs):
// one or more self-signed CA certificates, PEM.
func ParseRoots(pemData []byte) ([]*x509.Certificate, error) {
	roots, err := parseRootsPEM(pemData)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificates: %w", err)
	}
	return roots, nil
}

// ClusterLabel is the cluster label on dev's containers (api.LabelCluster)
// of a cluster whose first CA is the first certificate of caPEM: 16 hex
// digits of its fingerprint. A CA rotation keeps it (state.ClusterInfo.Label).
func ClusterLabel(caPEM []byte) (string, error) {
	certs, err := parseCertsPEM(caPEM)
	if err != nil {
		return "", fmt.Errorf("cluster label: %w", err)
	}
	return strings.TrimPrefix(Fingerprint(certs[0]), fingerprintPrefix)[:16], nil
}
