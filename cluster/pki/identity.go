package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/devhq/dev/cluster/api"
)

// Identity is a node's (or a remote CLI's) certificate, key and cluster CA.
type Identity struct {
	// Cert holds the chain [leaf, CA] so that servers send the CA certificate
	// too (PinnedTLS needs it), and Leaf is set.
	Cert   tls.Certificate
	CAPool *x509.CertPool
	CACert *x509.Certificate
	// Name is the node or client name, without the "client:" prefix.
	Name string
	// Role is RoleNode, RoleAdmin or RoleRead.
	Role string

	revoked atomic.Pointer[RevokedFunc]     // see SetRevoked
	current atomic.Pointer[tls.Certificate] // a renewed Cert (Reload); nil: Cert
}

// Certificate is the identity's current certificate chain: Cert, or the
// one Reload put in its place. The TLS configs present it on every
// handshake, so a renewal needs no listener restarted.
func (id *Identity) Certificate() *tls.Certificate {
	if c := id.current.Load(); c != nil {
		return c
	}
	return &id.Cert
}

// Reload puts a renewed certificate (and its key) in place of the current
// one: it must be of the same CA, name and role, and valid now.
func (id *Identity) Reload(certPEM, keyPEM []byte) error {
	next, err := newIdentity(certPEM, keyPEM, encodeCertPEM(id.CACert.Raw), time.Now())
	if err != nil {
		return fmt.Errorf("reload certificate: %w", err)
	}
	if next.Name != id.Name || next.Role != id.Role {
		return fmt.Errorf("reload certificate: it is %s %q's, not %s %q's", next.Role, next.Name, id.Role, id.Name)
	}
	id.current.Store(&next.Cert)
	return nil
}

// RenewAt is when the current certificate should be renewed: at 2/3 of
// its life.
func (id *Identity) RenewAt() time.Time { return RenewAt(id.Certificate().Leaf) }

// RenewAt is when cert should be renewed: at 2/3 of its life since it
// was issued.
func RenewAt(cert *x509.Certificate) time.Time {
	issued := IssuedAt(cert)
	return issued.Add(cert.NotAfter.Sub(issued) * 2 / 3)
}

// RevokedFunc reports whether the certificate of kind (api.CertNode or
// api.CertClient) that name was issued at issued is revoked.
type RevokedFunc func(kind, name string, issued time.Time) bool

// Of reports whether leaf, which peer holds, is revoked; a nil f revokes
// nothing.
func (f RevokedFunc) Of(peer Peer, leaf *x509.Certificate) bool {
	return f != nil && f(peer.Kind(), peer.Name, IssuedAt(leaf))
}

// SetRevoked makes every TLS config of this identity, made before or
// after, refuse a peer whose certificate f says is revoked: on each
// handshake, as a server and as a client, and in VerifyPeer.
func (id *Identity) SetRevoked(f RevokedFunc) { id.revoked.Store(&f) }

// checkRevoked returns an error when leaf, whose holder is peer, is on
// the revocation list.
func (id *Identity) checkRevoked(peer Peer, leaf *x509.Certificate) error {
	if f := id.revoked.Load(); f == nil || !f.Of(peer, leaf) {
		return nil
	}
	return fmt.Errorf("the certificate of %s %q is revoked: it was removed from the cluster (dev node rm, dev leave or dev token --revoke); join again, or ask for a new bundle", peer.Kind(), peer.Name)
}

// IssuedAt is when the CA signed cert: NotBefore is backdated by the
// allowance for clock skew.
func IssuedAt(cert *x509.Certificate) time.Time { return cert.NotBefore.Add(clockSkew) }

// Kind is the kind of certificate the peer holds, as a revocation names
// it: api.CertNode, or api.CertClient for admin and read bundles.
func (p Peer) Kind() string {
	if p.Role == RoleNode {
		return api.CertNode
	}
	return api.CertClient
}

// LoadIdentity reads node.crt, node.key and ca.crt from dir and checks that
// they belong together and that the certificate is currently valid. When a
// file is absent the error satisfies errors.Is(err, os.ErrNotExist).
func LoadIdentity(dir string) (*Identity, error) {
	if err := finishSave(dir); err != nil {
		return nil, fmt.Errorf("load node identity: %w", err)
	}
	var data [3][]byte
	for i, name := range []string{NodeCertFile, NodeKeyFile, CACertFile} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("load node identity: %w", err)
		}
		data[i] = b
	}
	id, err := newIdentity(data[0], data[1], data[2], time.Now())
	if err != nil {
		return nil, fmt.Errorf("load node identity from %s: %w; remove %s, %s and %s there and join the cluster again (dev join)",
			dir, err, NodeCertFile, NodeKeyFile, CACertFile)
	}
	return id, nil
}

// SaveIdentity checks that certPEM, keyPEM and caPEM form a valid identity,
// then writes node.crt (0644), node.key (0600) and ca.crt (0644) into dir,
// creating dir (0700) if needed. The three are replaced as one: a crash
// leaves the old identity or the new one (once LoadIdentity ran).
func SaveIdentity(dir string, certPEM, keyPEM, caPEM []byte) error {
	id, err := newIdentity(certPEM, keyPEM, caPEM, time.Now())
	if err != nil {
		return fmt.Errorf("save node identity: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save node identity: %w", err)
	}
	files := []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{NodeKeyFile, keyPEM, 0o600},
		{NodeCertFile, encodeCertPEM(id.Cert.Leaf.Raw), 0o644},
		{CACertFile, encodeCertPEM(id.CACert.Raw), 0o644},
	}
	// The three files change as one: all are written beside the old ones
	// first (name.next), then renamed into place. LoadIdentity finishes or
	// undoes a save a crash cut short (finishSave).
	for _, f := range files {
		if err := writeFileAtomic(filepath.Join(dir, f.name+nextSuffix), f.data, f.perm); err != nil {
			return fmt.Errorf("save node identity: %w", err)
		}
	}
	for _, f := range files {
		if err := os.Rename(filepath.Join(dir, f.name+nextSuffix), filepath.Join(dir, f.name)); err != nil {
			return fmt.Errorf("save node identity: %w", err)
		}
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("save node identity: %w", err)
	}
	return nil
}

// nextSuffix marks the files of a save not yet renamed into place.
const nextSuffix = ".next"

// finishSave completes a SaveIdentity that a crash interrupted: when the
// files of the save (name.next where not yet renamed, else the file in
// place) form a valid identity, the rest are renamed into place; else the
// save never finished writing them, and they are removed.
func finishSave(dir string) error {
	names := []string{NodeCertFile, NodeKeyFile, CACertFile}
	var data [3][]byte
	pending := false
	for i, name := range names {
		b, err := os.ReadFile(filepath.Join(dir, name+nextSuffix))
		switch {
		case err == nil:
			pending = true
		case errors.Is(err, os.ErrNotExist):
			if b, err = os.ReadFile(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		default:
			return err
		}
		data[i] = b
	}
	if !pending {
		return nil
	}
	if _, err := newIdentity(data[0], data[1], data[2], time.Now()); err != nil {
		for _, name := range names {
			if err := os.Remove(filepath.Join(dir, name+nextSuffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		return nil
	}
	for _, name := range names {
		err := os.Rename(filepath.Join(dir, name+nextSuffix), filepath.Join(dir, name))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// newIdentity builds an Identity from the first certificate in certPEM, the
// key in keyPEM and the CA in caPEM, verifying the certificate at time now.
func newIdentity(certPEM, keyPEM, caPEM []byte, now time.Time) (*Identity, error) {
	certs, err := parseCertsPEM(certPEM)
	if err != nil {
		return nil, err
	}
	leaf := certs[0]
	ca, err := parseCACertPEM(caPEM)
	if err != nil {
		return nil, err
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, err
	}
	if !publicKeysEqual(leaf.PublicKey, key.Public()) {
		return nil, errors.New("the private key does not match the certificate")
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	peer, err := verifyLeaf(leaf, pool, now, x509.ExtKeyUsageAny)
	if err != nil {
		return nil, err
	}
	return &Identity{
		Cert: tls.Certificate{
			Certificate: [][]byte{leaf.Raw, ca.Raw},
			PrivateKey:  key,
			Leaf:        leaf,
		},
		CAPool: pool,
		CACert: ca,
		Name:   peer.Name,
		Role:   peer.Role,
	}, nil
}

// Peer is the verified cluster identity on the other side of a connection.
type Peer struct {
	Name string // without the "client:" prefix
	Role string // RoleNode, RoleAdmin or RoleRead
}

// VerifyPeer returns the identity of the other side of a TLS connection,
// verifying its certificate against this identity's CA (again), so it is safe
// on any connection state. cs may be nil (plain HTTP request: r.TLS).
func (id *Identity) VerifyPeer(cs *tls.ConnectionState) (Peer, error) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return Peer{}, ErrNoCertificate
	}
	return id.verifyPeerLeaf(cs.PeerCertificates[0], x509.ExtKeyUsageAny)
}

// verifyPeerLeaf is verifyLeaf against this identity's CA, now, and its
// revocation list.
func (id *Identity) verifyPeerLeaf(leaf *x509.Certificate, usage x509.ExtKeyUsage) (Peer, error) {
	peer, err := verifyLeaf(leaf, id.CAPool, time.Now(), usage)
	if err != nil {
		return Peer{}, err
	}
	if err := id.checkRevoked(peer, leaf); err != nil {
		return Peer{}, err
	}
	return peer, nil
}

// ErrNoCertificate is returned by VerifyPeer when the peer presented no
// certificate (e.g. a node that has not joined yet, on JoinServerTLS).
var ErrNoCertificate = errors.New("no cluster certificate presented: join the cluster first (dev join), or use a client bundle from \"dev token --client\"")

// verifyLeaf checks that leaf is signed directly by a CA in pool, is valid at
// now and allows usage, and returns the identity it carries. No
// intermediates: the cluster CA signs every leaf itself.
func verifyLeaf(leaf *x509.Certificate, pool *x509.CertPool, now time.Time, usage x509.ExtKeyUsage) (Peer, error) {
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:       pool,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{usage},
	})
	cn := leaf.Subject.CommonName
	var invalid x509.CertificateInvalidError
	var unknown x509.UnknownAuthorityError
	switch {
	case err == nil:
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return Peer{}, fmt.Errorf("certificate of %q is expired or not yet valid (valid %s to %s, now %s): check the clocks, or get a new certificate",
			cn, leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case errors.As(err, &unknown):
		return Peer{}, fmt.Errorf("certificate of %q is not signed by this cluster's CA (issuer %q): it belongs to another cluster", cn, leaf.Issuer.CommonName)
	default:
		return Peer{}, fmt.Errorf("verify certificate of %q: %w", cn, err)
	}
	return PeerOf(leaf)
}

// PeerOf returns the name and role a certificate carries. It verifies
// nothing: call it on a certificate whose chain is verified (a TLS
// connection's VerifiedChains).
func PeerOf(leaf *x509.Certificate) (Peer, error) {
	cn := leaf.Subject.CommonName
	switch {
	case slices.Contains(leaf.Subject.OrganizationalUnit, ouNode):
		return Peer{Name: cn, Role: RoleNode}, nil
	case slices.Contains(leaf.Subject.OrganizationalUnit, ouClient):
		return Peer{Name: strings.TrimPrefix(cn, clientCNPrefx), Role: RoleAdmin}, nil
	case slices.Contains(leaf.Subject.OrganizationalUnit, ouRead):
		return Peer{Name: strings.TrimPrefix(cn, clientCNPrefx), Role: RoleRead}, nil
	default:
		return Peer{}, fmt.Errorf("certificate of %q carries no dev role", cn)
	}
}
