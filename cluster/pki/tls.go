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
	return id.serverTLS(true, RoleNode, RoleAdmin, RoleRead)
}

// NodeServerTLS is ServerTLS accepting only node certificates, for
// node-to-node channels (raft, image streams) a remote CLI must not reach.
func (id *Identity) NodeServerTLS() *tls.Config {
	return id.serverTLS(true, RoleNode)
}

// JoinServerTLS is ServerTLS that also lets a peer without a certificate
// complete the handshake, so that a node not yet in the cluster can call the
// join endpoint. A certificate, if presented, is still verified. Every handler
// except join must check id.VerifyPeer(r.TLS).
func (id *Identity) JoinServerTLS() *tls.Config {
	return id.serverTLS(false, RoleNode, RoleAdmin, RoleRead)
}

// serverTLS verifies a client's certificate itself, in VerifyConnection,
// against the CAs the identity trusts at that handshake (SetRoots changes
// them) and cross-signed ones (verifyChain): the stack's own check takes
// a fixed pool and no cross-signing. A completed handshake that carries
// peer certificates therefore carries verified ones (VerifiedLeaf).
func (id *Identity) serverTLS(require bool, roles ...string) *tls.Config {
	auth := tls.RequestClientCert
	if require {
		auth = tls.RequireAnyClientCert
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The current certificate at each handshake: renewals take effect
		// without a restart.
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return id.Certificate(), nil },
		ClientAuth:     auth,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				if require {
					return ErrNoCertificate // unreachable: the stack refuses first
				}
				return nil
			}
			peer, err := id.verifyPeerChain(cs.PeerCertificates, x509.ExtKeyUsageClientAuth)
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

// VerifiedLeaf is the client certificate of a connection accepted with
// one of an Identity's server configs (which verify it in the handshake),
// or nil when the client presented none.
func VerifiedLeaf(cs *tls.ConnectionState) *x509.Certificate {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return nil
	}
	return cs.PeerCertificates[0]
}

// ClientTLS is the config for dialing a cluster node: it presents this
// identity's certificate and accepts only a server whose certificate is a
// node certificate of a cluster CA it trusts (verifyChain). The host name is not
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
			peer, err := id.verifyPeerChain(cs.PeerCertificates, x509.ExtKeyUsageServerAuth)
			if err != nil {
				return fmt.Errorf("verify server certificate: %w; check the address", err)
			}
			if peer.Role != RoleNode {
				return fmt.Errorf("verify server certificate: %q is not a node certificate", peer.Name)
			}
			return id.trustedBy(cs.PeerCertificates[1:])
		},
	}
}

// trustedBy checks that a server that sent the CAs it trusts among sent
// (as every node does) will accept this identity's certificate, so that a
// refusal says why: once a CA rotation is done, a certificate of the old
// CA is refused, and the server's TLS alert alone would not say so.
func (id *Identity) trustedBy(sent []*x509.Certificate) error {
	var roots []*x509.Certificate
	for _, c := range sent {
		if isSelfSignedCA(c) {
			roots = append(roots, c)
		}
	}
	if len(roots) == 0 {
		return nil
	}
	own := id.current.Load().chain
	signs := func(c *x509.Certificate) bool {
		for _, r := range roots {
			if SignedBy(c, r) {
				return true
			}
		}
		return false
	}
	// Signatures only: whether the certificate is still valid is the
	// server's to say.
	if signs(own[0]) {
		return nil
	}
	for _, c := range own[1:] {
		if SignedBy(own[0], c) && signs(c) {
			return nil
		}
	}
	next := "join the cluster again"
	if id.Role != RoleNode {
		next = fmt.Sprintf("ask for a new bundle on a manager: dev token --client %s", id.Name)
	}
	return fmt.Errorf("the node does not trust this certificate's CA (%q): the cluster moved to another CA (dev ca rotate) while it was not in use; %s", own[0].Issuer.CommonName, next)
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
	peer, err := verifyChain(cs.PeerCertificates, newTrust([]*x509.Certificate{ca}), time.Now(), x509.ExtKeyUsageServerAuth)
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
