package pki

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devhq/dev/cluster/api"
)

// Identity is a node's (or a remote CLI's) certificate, key and the cluster
// CAs it trusts.
type Identity struct {
	// Name is the node or client name, without the "client:" prefix.
	Name string
	// Role is RoleNode, RoleAdmin or RoleRead.
	Role string

	revoked atomic.Pointer[RevokedFunc] // see SetRevoked
	current atomic.Pointer[held]        // Reload and SetRoots replace it
	trust   atomic.Pointer[trust]       // SetRoots replaces it
	mu      sync.Mutex                  // serializes Reload and SetRoots
}

// held is the certificate an identity presents: its own chain (the leaf
// and the intermediates its CA gave with it: the cross-signed CA during a
// CA rotation) followed by the roots it trusts, so that a joining node's
// pinned check (PinnedTLS) finds the self-signed CA in it.
type held struct {
	tls   tls.Certificate
	own   [][]byte            // the leaf and its intermediates, DER
	chain []*x509.Certificate // own, parsed
}

// trust is the set of self-signed cluster CAs an identity accepts: one,
// or two while the CA is rotated (dev ca rotate).
type trust struct {
	roots []*x509.Certificate
	pool  *x509.CertPool
}

func newTrust(roots []*x509.Certificate) *trust {
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	return &trust{roots: roots, pool: pool}
}

// Certificate is the identity's current certificate chain: the one it
// was made with, or the one Reload or SetRoots put in its place. The TLS
// configs present it on every handshake, so a renewal needs no listener
// restarted.
func (id *Identity) Certificate() *tls.Certificate { return &id.current.Load().tls }

// Roots are the self-signed cluster CAs the identity trusts.
func (id *Identity) Roots() []*x509.Certificate { return slices.Clone(id.trust.Load().roots) }

// RootsPEM is Roots, PEM encoded, as ca.crt holds them.
func (id *Identity) RootsPEM() []byte { return encodeCertsPEM(id.trust.Load().roots) }

// Reload puts a renewed certificate (and its key) in place of the current
// one, and the CAs of rootsPEM in place of those trusted (nil: the same):
// it must chain to one of them, be of the same name and role, and be
// valid now.
func (id *Identity) Reload(certPEM, keyPEM, rootsPEM []byte) error {
	id.mu.Lock()
	defer id.mu.Unlock()
	if rootsPEM == nil {
		rootsPEM = id.RootsPEM()
	}
	next, err := newIdentity(certPEM, keyPEM, rootsPEM, time.Now())
	if err != nil {
		return fmt.Errorf("reload certificate: %w", err)
	}
	if next.Name != id.Name || next.Role != id.Role {
		return fmt.Errorf("reload certificate: it is %s %q's, not %s %q's", next.Role, next.Name, id.Role, id.Name)
	}
	id.trust.Store(next.trust.Load())
	id.current.Store(next.current.Load())
	return nil
}

// SetRoots replaces the CAs the identity trusts with those in rootsPEM
// (self-signed CA certificates), on every TLS config of the identity and
// from the next handshake on: a CA rotation adds the new CA, then drops
// the old one. The identity's own certificate must still chain to one of
// them.
func (id *Identity) SetRoots(rootsPEM []byte) error {
	id.mu.Lock()
	defer id.mu.Unlock()
	roots, err := parseRootsPEM(rootsPEM)
	if err != nil {
		return fmt.Errorf("set trusted CAs: %w", err)
	}
	cur := id.current.Load()
	next, err := newIdentityOf(cur.own, cur.tls.PrivateKey.(crypto.Signer), roots, time.Now())
	if err != nil {
		return fmt.Errorf("set trusted CAs: this node's certificate: %w", err)
	}
	id.trust.Store(next.trust.Load())
	id.current.Store(next.current.Load())
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

// SaveIdentity checks that certPEM (the leaf, then any intermediate),
// keyPEM and caPEM (the CAs to trust) form a valid identity, then writes
// node.crt (0644), node.key (0600) and ca.crt (0644) into dir,
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
		{NodeCertFile, encodeDERsPEM(id.current.Load().own), 0o644},
		{CACertFile, id.RootsPEM(), 0o644},
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

// newIdentity builds an Identity from the first certificate in certPEM
// (and the intermediates after it), the key in keyPEM and the CAs in
// caPEM, verifying the certificate at time now.
func newIdentity(certPEM, keyPEM, caPEM []byte, now time.Time) (*Identity, error) {
	certs, err := parseCertsPEM(certPEM)
	if err != nil {
		return nil, err
	}
	roots, err := parseRootsPEM(caPEM)
	if err != nil {
		return nil, err
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, err
	}
	own := [][]byte{certs[0].Raw}
	for _, c := range certs[1:] {
		if !isSelfSignedCA(c) && len(own) <= maxIntermediates {
			own = append(own, c.Raw)
		}
	}
	return newIdentityOf(own, key, roots, now)
}

// newIdentityOf is newIdentity of parsed parts: own is the leaf and its
// intermediates (DER).
func newIdentityOf(own [][]byte, key crypto.Signer, roots []*x509.Certificate, now time.Time) (*Identity, error) {
	chain := make([]*x509.Certificate, len(own))
	for i, der := range own {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		chain[i] = c
	}
	leaf := chain[0]
	if !publicKeysEqual(leaf.PublicKey, key.Public()) {
		return nil, errors.New("the private key does not match the certificate")
	}
	tr := newTrust(roots)
	peer, err := verifyChain(chain, tr, now, x509.ExtKeyUsageAny)
	if err != nil {
		return nil, err
	}
	presented := slices.Clone(own)
	for _, r := range roots {
		presented = append(presented, r.Raw)
	}
	id := &Identity{Name: peer.Name, Role: peer.Role}
	id.trust.Store(tr)
	id.current.Store(&held{
		tls:   tls.Certificate{Certificate: presented, PrivateKey: key, Leaf: leaf},
		own:   slices.Clone(own),
		chain: chain,
	})
	return id, nil
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
	return id.verifyPeerChain(cs.PeerCertificates, x509.ExtKeyUsageAny)
}

// verifyPeerChain is verifyChain against the CAs this identity trusts,
// now, and its revocation list.
func (id *Identity) verifyPeerChain(chain []*x509.Certificate, usage x509.ExtKeyUsage) (Peer, error) {
	peer, err := verifyChain(chain, id.trust.Load(), time.Now(), usage)
	if err != nil {
		return Peer{}, err
	}
	if err := id.checkRevoked(peer, chain[0]); err != nil {
		return Peer{}, err
	}
	return peer, nil
}

// ErrNoCertificate is returned by VerifyPeer when the peer presented no
// certificate (e.g. a node that has not joined yet, on JoinServerTLS).
var ErrNoCertificate = errors.New("no cluster certificate presented: join the cluster first (dev join), or use a client bundle from \"dev token --client\"")

// maxIntermediates caps the certificates a peer may send between its
// leaf and the roots that are tried as a cross-signed CA: one is used
// (during a CA rotation); a few more are tolerated.
const maxIntermediates = 4

// verifyChain checks that chain[0], the leaf, is signed by a CA of tr, or
// by a cross-signed CA among the next certificates of the chain (a CA
// rotation's new CA, signed by the old one, which tr may trust alone), is
// valid at now and allows usage, and returns the identity it carries.
//
// The cluster's CAs are made to sign leaves only (MaxPathLen 0), so the
// standard path building refuses leaf -> cross-signed CA -> old CA. The
// cross-signed CA is instead checked on its own against tr, and then
// trusted as a root for the leaf: the same trust, one hop made explicit.
func verifyChain(chain []*x509.Certificate, tr *trust, now time.Time, usage x509.ExtKeyUsage) (Peer, error) {
	leaf := chain[0]
	opts := x509.VerifyOptions{Roots: tr.pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}}
	_, err := leaf.Verify(opts)
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) {
		if pool := crossSigned(chain[1:], tr, now); pool != nil {
			opts.Roots = pool
			if _, err2 := leaf.Verify(opts); err2 == nil {
				err = nil
			}
		}
	}
	cn := leaf.Subject.CommonName
	var invalid x509.CertificateInvalidError
	switch {
	case err == nil:
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return Peer{}, fmt.Errorf("certificate of %q is expired or not yet valid (valid %s to %s, now %s): check the clocks, or get a new certificate",
			cn, leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case errors.As(err, &unknown):
		return Peer{}, fmt.Errorf("certificate of %q is not signed by this cluster's CA (issuer %q): it belongs to another cluster, or to a CA this cluster no longer trusts (dev ca rotate)", cn, leaf.Issuer.CommonName)
	default:
		return Peer{}, fmt.Errorf("verify certificate of %q: %w", cn, err)
	}
	return PeerOf(leaf)
}

// crossSigned returns tr's pool plus the CA certificates among inter that
// a CA of tr signed (and that are valid at now), or nil when there is
// none.
func crossSigned(inter []*x509.Certificate, tr *trust, now time.Time) *x509.CertPool {
	var pool *x509.CertPool
	for i, c := range inter {
		if i == maxIntermediates {
			break
		}
		if !c.BasicConstraintsValid || !c.IsCA || isSelfSignedCA(c) {
			continue
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: tr.pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			continue
		}
		if pool == nil {
			pool = tr.pool.Clone()
		}
		pool.AddCert(c)
	}
	return pool
}

// SignedBy reports whether cert was signed by ca's key.
func SignedBy(cert, ca *x509.Certificate) bool { return cert.CheckSignatureFrom(ca) == nil }

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

// SaveRoots replaces dir's ca.crt with rootsPEM, the CAs an identity
// trusts (SetRoots): a CA rotation adds one, then drops the old one.
func SaveRoots(dir string, rootsPEM []byte) error {
	if _, err := parseRootsPEM(rootsPEM); err != nil {
		return fmt.Errorf("save CA certificates: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, CACertFile), rootsPEM, 0o644); err != nil {
		return fmt.Errorf("save CA certificates: %w", err)
	}
	return nil
}
