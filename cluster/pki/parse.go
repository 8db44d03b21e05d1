package pki

import (
	"errors"
	"fmt"
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
