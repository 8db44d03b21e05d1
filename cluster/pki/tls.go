package pki

import (
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ServerTLS is the config for a mutual-TLS listener: TLS 1.3, the node
// certificate sent with the CA certificate in its chain, and a client
// certificate from the cluster CA required (node, admin or read role).
func (id *Identity) ServerTLS() *tls.Config {
	return id.serverTLS(tls.RequireAndVerifyClientCert, RoleNode, RoleAdmin, RoleRead)
}

// NodeServerTLS is ServerTLS accepting only node certificates, for
// node-to-node channels (raft, image streams) a remote CLI must not reach.
func (id *Identity) NodeServerTLS() *tls.Config {
	return id.serverTLS(tls.RequireAndVerifyClientCert, RoleNode)
}

// JoinServerTLS is ServerTLS that also lets a peer without a certificate
// complete the handshake, so that a node not yet in the cluster can call the
// join endpoint. A certificate, if presented, is still verified. Every handler
// except join must check id.VerifyPeer(r.TLS).
func (id *Identity) JoinServerTLS() *tls.Config {
	return id.serverTLS(tls.VerifyClientCertIfGiven, RoleNode, RoleAdmin, RoleRead)
}

func (id *Identity) serverTLS(auth tls.ClientAuthType, roles ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The current certificate at each handshake: renewals take effect
		// without a restart.
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return id.Certificate(), nil },
		ClientAuth:     auth,
		ClientCAs:      id.CAPool,
		// The stack has verified the chain (ClientCAs, client auth usage,
		// validity) before this runs; it adds the role check.
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.VerifiedChains) == 0 {
				if auth == tls.RequireAndVerifyClientCert {
					return ErrNoCertificate // unreachable: the stack refuses first
				}
				return nil
			}
			peer, err := id.verifyPeerLeaf(cs.VerifiedChains[0][0], x509.ExtKeyUsageClientAuth)
			if err != nil {
				return fmt.Errorf("verify client certificate: %w", err)
			}
			for _, r := range roles {
				if peer.Role == r {
					return nil
				}
			}
			return fmt.Errorf("verify client certificate: %q has role %q; this endpoint accepts %s only",
				peer.Name, peer.Role, strings.Join(roles, ", "))
		},
	}
}

// ClientTLS is the config for dialing a cluster node: it presents this
// identity's certificate and accepts only a server whose certificate is a
// node certificate signed directly by the cluster CA. The host name is not
// checked (nodes dial each other by IP), so ServerName may be left empty.
func (id *Identity) ClientTLS() *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return id.Certificate(), nil },
		// The standard verification would check the host name; it is replaced,
		// not dropped, by the explicit chain check in VerifyConnection, which
		// runs on every handshake, resumed ones included.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("verify server certificate: the server presented none")
			}
			peer, err := id.verifyPeerLeaf(cs.PeerCertificates[0], x509.ExtKeyUsageServerAuth)
			if err != nil {
				return fmt.Errorf("verify server certificate: %w; check the address", err)
			}
			if peer.Role != RoleNode {
				return fmt.Errorf("verify server certificate: %q is not a node certificate", peer.Name)
			}
			return nil
		},
	}
}

// PinnedTLS is the config a joining node uses before it has a certificate:
// it presents none and trusts the server only if the server's chain contains
// a self-signed CA whose fingerprint is fingerprint ("sha256:<hex>" or bare
// hex, as in a Token) and the server's own certificate is a node certificate
// signed by that CA.
func PinnedTLS(fingerprint string) *tls.Config {
	want, fpErr := normalizeFingerprint(fingerprint)
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Replaced by the pinned check in VerifyConnection.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if err := verifyPinned(cs, want, fpErr); err != nil {
				return &UntrustedServerError{Err: err}
			}
			return nil
		},
	}
}

// UntrustedServerError is returned (wrapped) by a PinnedTLS handshake with a
// server that is not a node of the token's cluster.
type UntrustedServerError struct{ Err error }

func (e *UntrustedServerError) Error() string { return e.Err.Error() }
func (e *UntrustedServerError) Unwrap() error { return e.Err }

func verifyPinned(cs tls.ConnectionState, want string, fpErr error) error {
	if fpErr != nil {
		return fpErr
	}
	if len(cs.PeerCertificates) == 0 {
		return errors.New("verify server certificate: the server presented none")
	}
	var ca *x509.Certificate
	for _, c := range cs.PeerCertificates {
		if subtle.ConstantTimeCompare([]byte(Fingerprint(c)), []byte(want)) == 1 {
			ca = c
			break
		}
	}
	if ca == nil {
		return fmt.Errorf("verify server: its cluster CA is not the one in the join token (want %s): the address is not a node of that cluster, or the connection is intercepted; check the address and the token", want)
	}
	if !isSelfSignedCA(ca) {
		return errors.New("verify server: the certificate matching the join token fingerprint is not a CA certificate; check the token")
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	peer, err := verifyLeaf(cs.PeerCertificates[0], pool, time.Now(), x509.ExtKeyUsageServerAuth)
	if err != nil {
		return fmt.Errorf("verify server certificate: %w; check the address", err)
	}
	if peer.Role != RoleNode {
		return fmt.Errorf("verify server certificate: %q is not a node certificate", peer.Name)
	}
	return nil
}

// normalizeFingerprint returns "sha256:<lowercase hex>".
func normalizeFingerprint(fp string) (string, error) {
	h := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(fp), fingerprintPrefix))
	if raw, err := hex.DecodeString(h); err != nil || len(raw) != 32 {
		return "", fmt.Errorf("pin CA: malformed fingerprint %q: want sha256:<64 hex digits>, as in the join token", fp)
	}
	return fingerprintPrefix + h, nil
}
