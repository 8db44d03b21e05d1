package pki

import (
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// A join goes to whichever node the joining host was pointed at, which
// relays it to the leader: possibly a worker, which must learn neither the
// token's secret nor the data key a manager gets. So the joiner never
// sends the secret, only JoinProof, which binds it to the joiner's own CSR
// (a relay cannot reuse it for a key of its own); and the data key comes
// back sealed to the CSR's key (SealToCSR), which only the joiner holds.

// JoinProof is HMAC-SHA256 under the token's secret of the joining node's
// name and CSR.
func JoinProof(secret, name string, csrPEM []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("dev join v1\x00" + name + "\x00"))
	m.Write(csrPEM)
	return m.Sum(nil)
}

// ProofMatches reports, in constant time, whether proof is JoinProof of
// secret for name and csrPEM. An empty secret never matches.
func ProofMatches(proof []byte, secret, name string, csrPEM []byte) bool {
	return secret != "" && hmac.Equal(proof, JoinProof(secret, name, csrPEM))
}

const sealToKeyInfo = "dev sealed to a node key v1"

// SealToCSR encrypts data to the P-256 key of csrPEM (ECIES: an ephemeral
// ECDH key, SHA-256 of the shared secret, AES-256-GCM): only the holder of
// the CSR's private key opens it (OpenWithKey).
func SealToCSR(csrPEM, data []byte) ([]byte, error) {
	csr, err := parseCSRPEM(csrPEM)
	if err != nil {
		return nil, err
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("seal to CSR: a %T key; want ECDSA P-256", csr.PublicKey)
	}
	to, err := pub.ECDH()
	if err != nil {
		return nil, fmt.Errorf("seal to CSR: %w", err)
	}
	eph, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("seal to CSR: %w", err)
	}
	aead, err := sealToKeyAEAD(eph, to)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal to CSR: %w", err)
	}
	out := append(eph.PublicKey().Bytes(), nonce...)
	return aead.Seal(out, nonce, data, []byte(sealToKeyInfo)), nil
}

// OpenWithKey opens what SealToCSR sealed to the key of keyPEM.
func OpenWithKey(keyPEM, sealed []byte) ([]byte, error) {
	signer, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("open sealed data: %w", err)
	}
	key, ok := signer.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("open sealed data: a %T key; want ECDSA P-256", signer)
	}
	priv, err := key.ECDH()
	if err != nil {
		return nil, fmt.Errorf("open sealed data: %w", err)
	}
	const pubLen = 65 // uncompressed P-256 point
	if len(sealed) < pubLen {
		return nil, errors.New("open sealed data: malformed")
	}
	eph, err := ecdh.P256().NewPublicKey(sealed[:pubLen])
	if err != nil {
		return nil, fmt.Errorf("open sealed data: %w", err)
	}
	aead, err := sealToKeyAEAD(priv, eph)
	if err != nil {
		return nil, err
	}
	rest := sealed[pubLen:]
	if len(rest) < aead.NonceSize()+aead.Overhead() {
		return nil, errors.New("open sealed data: malformed")
	}
	plain, err := aead.Open(nil, rest[:aead.NonceSize()], rest[aead.NonceSize():], []byte(sealToKeyInfo))
	if err != nil {
		return nil, errors.New("open sealed data: not sealed to this key (or altered)")
	}
	return plain, nil
}

// sealToKeyAEAD is AES-256-GCM under SHA-256 of the ECDH secret of priv
// and pub.
func sealToKeyAEAD(priv *ecdh.PrivateKey, pub *ecdh.PublicKey) (cipher.AEAD, error) {
	shared, err := priv.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("seal to key: %w", err)
	}
	k := sha256.Sum256(append([]byte(sealToKeyInfo+"\x00"), shared...))
	dk, err := ParseDataKey(k[:]) // the same AES-256-GCM
	if err != nil {
		return nil, fmt.Errorf("seal to key: %w", err)
	}
	return dk.aead, nil
}
