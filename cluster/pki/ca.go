// Package pki is the cluster's certificate authority, node and client identities, mutual-TLS configs and join tokens.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"
)

// Roles a certificate can carry. A node certificate is valid for server and
// client auth; a client certificate (remote CLI: admin or read) only for
// client auth. The API checks the role on every route.
const (
	RoleNode  = "node"  // an agent
	RoleAdmin = "admin" // `dev token --client NAME`: everything a user can do
	RoleRead  = "read"  // `dev token --client NAME --read`: look, never change
)

// File names inside a CA or identity directory.
const (
	CACertFile   = "ca.crt"
	CAKeyFile    = "ca.key"
	NodeCertFile = "node.crt"
	NodeKeyFile  = "node.key"
)

const (
	caValidity   = 10 * 365 * 24 * time.Hour
	certValidity = 365 * 24 * time.Hour
	// clockSkew backdates NotBefore so that peers with slightly slow clocks
	// accept a certificate issued a moment ago.
	clockSkew = 5 * time.Minute

	organization  = "dev"
	ouNode        = "dev-node"
	ouClient      = "dev-client" // admin
	ouRead        = "dev-read"
	clientCNPrefx = "client:"
	maxNameLen    = 64
)

// CA is the cluster certificate authority: it signs node and client
// certificates.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	// Chain is PEM sent after every certificate the CA signs: during a CA
	// rotation, the new CA cross-signed by the old one, so that a peer
	// that trusts only the old CA still accepts the certificate.
	Chain []byte
	// Trust are the CAs that whom it issues to should trust (Roots): nil
	// is the CA itself; during a rotation, the old CA and the new.
	Trust []*x509.Certificate
}

// Roots are the CAs to trust along with what the CA signs.
func (ca *CA) Roots() []*x509.Certificate {
	if len(ca.Trust) > 0 {
		return ca.Trust
	}
	return []*x509.Certificate{ca.Cert}
}

// RootsPEM is Roots, PEM encoded.
func (ca *CA) RootsPEM() []byte { return encodeCertsPEM(ca.Roots()) }

// CrossSign signs next's certificate (its subject and key) with this CA:
// the intermediate through which a peer that trusts only this CA accepts
// what next signs. It lasts as long as both CAs do.
func (ca *CA) CrossSign(next *CA) ([]byte, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("cross-sign CA: %w", err)
	}
	n := next.Cert
	notAfter := n.NotAfter
	if ca.Cert.NotAfter.Before(notAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               n.Subject,
		SubjectKeyId:          n.SubjectKeyId,
		NotBefore:             time.Now().Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              n.KeyUsage,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, n.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("cross-sign CA: %w", err)
	}
	return encodeCertPEM(der), nil
}

// NewCA creates a self-signed ECDSA P-256 CA valid for 10 years.
func NewCA(clusterID string) (*CA, error) {
	return newCA(clusterID, "dev cluster CA ")
}

// NewLocalCA creates the cluster's local HTTPS CA: the ingress router's
// certificates for routes with tls: local (hosts under .localhost), which
// a user trusts in a browser (dev ca export). It is not the cluster CA:
// trusting it trusts no node or client certificate.
func NewLocalCA(clusterID string) (*CA, error) {
	return newCA(clusterID, "dev local HTTPS CA ", "localhost")
}

// newCA makes a CA; with permitted DNS domains, a critical name
// constraint limits what it can vouch for to those names and the names
// under them.
func newCA(clusterID, cnPrefix string, permitted ...string) (*CA, error) {
	if strings.TrimSpace(clusterID) == "" {
		return nil, errors.New("create CA: empty cluster ID")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("create CA: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   cnPrefix + clusterID,
			Organization: []string{organization},
		},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true, // the CA signs leaves only
	}
	if len(permitted) > 0 {
		tmpl.PermittedDNSDomains = permitted
		tmpl.PermittedDNSDomainsCritical = true
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA: sign certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("create CA: parse certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key, CertPEM: encodeCertPEM(der)}, nil
}

// LoadCA reads ca.crt and ca.key from dir. When either file is absent the
// error satisfies errors.Is(err, os.ErrNotExist).
func LoadCA(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	cert, err := parseCACertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA: %s: %w", filepath.Join(dir, CACertFile), err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA: %s: %w", filepath.Join(dir, CAKeyFile), err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("load CA: %s does not match %s: restore both files from the same backup",
			CAKeyFile, CACertFile)
	}
	return &CA{Cert: cert, Key: key, CertPEM: encodeCertPEM(cert.Raw)}, nil
}

// Save writes ca.crt (0644) and ca.key (0600) into dir, creating dir (0700)
// if needed. Files are replaced atomically.
func (ca *CA) Save(dir string) error {
	keyPEM, err := encodeKeyPEM(ca.Key)
	if err != nil {
		return fmt.Errorf("save CA: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save CA: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, CAKeyFile), keyPEM, 0o600); err != nil {
		return fmt.Errorf("save CA: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, CACertFile), ca.CertPEM, 0o644); err != nil {
		return fmt.Errorf("save CA: %w", err)
	}
	return nil
}

// Fingerprint is the CA certificate's fingerprint, "sha256:<hex>".
func (ca *CA) Fingerprint() string { return Fingerprint(ca.Cert) }

// Fingerprint returns "sha256:<lowercase hex>" of the certificate's DER.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return fingerprintPrefix + hex.EncodeToString(sum[:])
}

const fingerprintPrefix = "sha256:"

// NewKeyAndCSR generates an ECDSA P-256 key and a certificate signing request
// with CN nodeName. Both are PEM encoded; the key as PKCS#8.
func NewKeyAndCSR(nodeName string) (keyPEM, csrPEM []byte, err error) {
	if err := checkName(nodeName); err != nil {
		return nil, nil, fmt.Errorf("create CSR: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("create CSR: generate key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: nodeName},
	}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CSR: %w", err)
	}
	keyPEM, err = encodeKeyPEM(key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CSR: %w", err)
	}
	return keyPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// Sign issues a certificate, valid for one year (never beyond the CA), for the
// public key in csrPEM. The CSR's own subject and extensions are ignored: the
// CA decides them.
//
// role RoleNode: CN = name, SANs = ips + dnsNames + localhost, 127.0.0.1, ::1;
// usable for server and client auth.
// role RoleAdmin or RoleRead: CN = "client:" + name, SANs = ips + dnsNames;
// client auth only, so it can never act as a cluster server.
func (ca *CA) Sign(csrPEM []byte, name, role string, ips []net.IP, dnsNames []string) (certPEM []byte, err error) {
	return ca.SignFor(csrPEM, name, role, ips, dnsNames, certValidity)
}

// DefaultNodeCertLifetime is how long a node certificate lasts unless the
// cluster says otherwise (--cert-lifetime); nodes renew theirs at 2/3 of it.
const DefaultNodeCertLifetime = 90 * 24 * time.Hour

// NodeCertLifetime is the configured node certificate lifetime, or the
// default for none.
func NodeCertLifetime(configured time.Duration) time.Duration {
	if configured > 0 {
		return configured
	}
	return DefaultNodeCertLifetime
}

// SignFor is Sign with a lifetime (never beyond the CA's).
func (ca *CA) SignFor(csrPEM []byte, name, role string, ips []net.IP, dnsNames []string, lifetime time.Duration) (certPEM []byte, err error) {
	now := time.Now()
	notAfter := now.Add(lifetime)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	return ca.sign(csrPEM, name, role, ips, dnsNames, now.Add(-clockSkew), notAfter)
}

// sign is Sign with explicit validity (tests use it for expired certificates).
func (ca *CA) sign(csrPEM []byte, name, role string, ips []net.IP, dnsNames []string, notBefore, notAfter time.Time) ([]byte, error) {
	if err := checkName(name); err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	csr, err := parseCSRPEM(csrPEM)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %q: %w", name, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %q: %w", name, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	for _, d := range dnsNames {
		if d == "" {
			continue
		}
		tmpl.DNSNames = appendUnique(tmpl.DNSNames, d)
	}
	for _, ip := range ips {
		if ip == nil {
			continue
		}
		tmpl.IPAddresses = appendUniqueIP(tmpl.IPAddresses, ip)
	}
	switch role {
	case RoleNode:
		tmpl.Subject = pkix.Name{CommonName: name, Organization: []string{organization}, OrganizationalUnit: []string{ouNode}}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.DNSNames = appendUnique(tmpl.DNSNames, "localhost")
		tmpl.IPAddresses = appendUniqueIP(tmpl.IPAddresses, net.IPv4(127, 0, 0, 1))
		tmpl.IPAddresses = appendUniqueIP(tmpl.IPAddresses, net.IPv6loopback)
	case RoleAdmin, RoleRead:
		ou := ouClient
		if role == RoleRead {
			ou = ouRead
		}
		tmpl.Subject = pkix.Name{CommonName: clientCNPrefx + name, Organization: []string{organization}, OrganizationalUnit: []string{ou}}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	default:
		return nil, fmt.Errorf("sign certificate for %q: unknown role %q (want %q, %q or %q)", name, role, RoleNode, RoleAdmin, RoleRead)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, csr.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %q: %w", name, err)
	}
	return append(encodeCertPEM(der), ca.Chain...), nil
}

// SignServer signs a TLS server certificate for hosts (DNS names, the
// first its CN) for the key of csrPEM, valid for lifetime: what the
// ingress router presents for routes with tls: local.
func (ca *CA) SignServer(csrPEM []byte, hosts []string, lifetime time.Duration) ([]byte, error) {
	if len(hosts) == 0 {
		return nil, errors.New("sign server certificate: no host")
	}
	csr, err := parseCSRPEM(csrPEM)
	if err != nil {
		return nil, fmt.Errorf("sign server certificate for %s: %w", hosts[0], err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("sign server certificate for %s: %w", hosts[0], err)
	}
	now := time.Now()
	notAfter := now.Add(lifetime)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hosts[0], Organization: []string{organization}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              hosts,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, csr.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign server certificate for %s: %w", hosts[0], err)
	}
	return encodeCertPEM(der), nil
}

// checkName accepts a node or client name usable as a certificate CN.
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case len(name) > maxNameLen:
		return fmt.Errorf("name %q is longer than %d bytes", name, maxNameLen)
	case strings.HasPrefix(name, clientCNPrefx):
		return fmt.Errorf("name %q: the prefix %q is reserved", name, clientCNPrefx)
	}
	for _, r := range name {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("name %q contains a space or control character", name)
		}
	}
	return nil
}

func parseCSRPEM(data []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("parse CSR: no CERTIFICATE REQUEST PEM block")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("parse CSR: bad signature: %w", err)
	}
	switch pub := csr.PublicKey.(type) {
	case *ecdsa.PublicKey, ed25519.PublicKey:
	case *rsa.PublicKey:
		if pub.N.BitLen() < 2048 {
			return nil, fmt.Errorf("parse CSR: RSA key of %d bits is too small (want at least 2048)", pub.N.BitLen())
		}
	default:
		return nil, fmt.Errorf("parse CSR: unsupported public key type %T", pub)
	}
	return csr, nil
}

// parseCertsPEM returns every CERTIFICATE block in data, in order.
func parseCertsPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, errors.New("parse certificate: no CERTIFICATE PEM block")
	}
	return certs, nil
}

// parseRootsPEM returns the certificates in data, every one a self-signed
// CA: the CAs an identity trusts (ca.crt).
func parseRootsPEM(data []byte) ([]*x509.Certificate, error) {
	certs, err := parseCertsPEM(data)
	if err != nil {
		return nil, err
	}
	for _, c := range certs {
		if !isSelfSignedCA(c) {
			return nil, fmt.Errorf("parse CA certificates: %q is not a self-signed CA", c.Subject.CommonName)
		}
	}
	return certs, nil
}

// encodeCertsPEM is the PEM of certs, in order.
func encodeCertsPEM(certs []*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, encodeCertPEM(c.Raw)...)
	}
	return b
}

// encodeDERsPEM is the PEM of DER certificates, in order.
func encodeDERsPEM(ders [][]byte) []byte {
	var b []byte
	for _, d := range ders {
		b = append(b, encodeCertPEM(d)...)
	}
	return b
}

func parseCACertPEM(data []byte) (*x509.Certificate, error) {
	certs, err := parseCertsPEM(data)
	if err != nil {
		return nil, err
	}
	if !isSelfSignedCA(certs[0]) {
		return nil, fmt.Errorf("parse CA certificate: %q is not a self-signed CA", certs[0].Subject.CommonName)
	}
	return certs[0], nil
}

func isSelfSignedCA(cert *x509.Certificate) bool {
	return cert.BasicConstraintsValid && cert.IsCA &&
		bytes.Equal(cert.RawIssuer, cert.RawSubject) &&
		cert.CheckSignatureFrom(cert) == nil
}

// parseKeyPEM reads a PKCS#8 ("PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY") key.
func parseKeyPEM(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("parse key: no PRIVATE KEY PEM block")
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parse key: %w", err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("parse key: %T cannot sign", key)
		}
		return signer, nil
	}
}

// EncodeCertPEM is cert as PEM.
func EncodeCertPEM(cert *x509.Certificate) []byte { return encodeCertPEM(cert.Raw) }

func encodeCertPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil // never zero
}

// writeFileAtomic writes data to a temporary file with mode perm and renames
// it over path, so a reader never sees a partial file and perm applies even
// when path already existed with another mode.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func appendUniqueIP(list []net.IP, ip net.IP) []net.IP {
	for _, x := range list {
		if x.Equal(ip) {
			return list
		}
	}
	return append(list, ip)
}
