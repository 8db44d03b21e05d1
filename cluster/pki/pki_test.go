package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func newTestCA(t *testing.T, id string) *CA {
	t.Helper()
	ca, err := NewCA(id)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return ca
}

// issue signs a fresh key for name/role, valid from notBefore to notAfter
// (zero: the normal Sign validity), and returns the identity.
func issue(t *testing.T, ca *CA, name, role string, notBefore, notAfter time.Time) *Identity {
	t.Helper()
	keyPEM, csrPEM, err := NewKeyAndCSR(name)
	if err != nil {
		t.Fatalf("NewKeyAndCSR: %v", err)
	}
	var certPEM []byte
	if notAfter.IsZero() {
		certPEM, err = ca.Sign(csrPEM, name, role, []net.IP{net.IPv4(10, 0, 0, 1)}, nil)
	} else {
		certPEM, err = ca.sign(csrPEM, name, role, nil, nil, notBefore, notAfter)
	}
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	// Build the identity at a time inside the validity window so that expired
	// certificates can be loaded for the refusal tests.
	at := time.Now()
	if !notAfter.IsZero() {
		at = notBefore.Add(time.Minute)
	}
	id, err := newIdentity(certPEM, keyPEM, ca.RootsPEM(), at)
	if err != nil {
		t.Fatalf("newIdentity: %v", err)
	}
	return id
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestNewCA(t *testing.T) {
	ca := newTestCA(t, "c1")
	c := ca.Cert
	if got, want := c.Subject.CommonName, "dev cluster CA c1"; got != want {
		t.Errorf("CN = %q, want %q", got, want)
	}
	if !isSelfSignedCA(c) {
		t.Error("not a self-signed CA")
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Error("no cert-sign key usage")
	}
	if d := time.Until(c.NotAfter); d < 9*365*24*time.Hour || d > 11*365*24*time.Hour {
		t.Errorf("NotAfter in %v, want ~10 years", d)
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", c.PublicKey)
	}
	if _, err := NewCA(" "); err == nil {
		t.Error("NewCA with empty ID: want error")
	}
}

func TestCASaveLoad(t *testing.T) {
	ca := newTestCA(t, "c1")
	dir := filepath.Join(t.TempDir(), "pki")
	// A stale key file with loose permissions must end up 0600.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, CAKeyFile), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(dir); err != nil {
		t.Fatalf("Save: %v", err)
	}
	if got := fileMode(t, filepath.Join(dir, CAKeyFile)); got != 0o600 {
		t.Errorf("ca.key mode = %o, want 600", got)
	}
	if got := fileMode(t, filepath.Join(dir, CACertFile)); got != 0o644 {
		t.Errorf("ca.crt mode = %o, want 644", got)
	}
	got, err := LoadCA(dir)
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	if !got.Cert.Equal(ca.Cert) || !bytes.Equal(got.CertPEM, ca.CertPEM) {
		t.Error("loaded certificate differs")
	}
	if !publicKeysEqual(got.Key.Public(), ca.Key.Public()) {
		t.Error("loaded key differs")
	}
	if got.Fingerprint() != ca.Fingerprint() {
		t.Errorf("fingerprint after load = %s, want %s", got.Fingerprint(), ca.Fingerprint())
	}
	// The loaded CA signs certificates the original's pool accepts.
	id := issue(t, got, "n1", RoleNode, time.Time{}, time.Time{})
	if _, err := id.Certificate().Leaf.Verify(x509.VerifyOptions{Roots: id.trust.Load().pool}); err != nil {
		t.Errorf("certificate from loaded CA: %v", err)
	}

	t.Run("absent", func(t *testing.T) {
		_, err := LoadCA(filepath.Join(t.TempDir(), "nope"))
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("LoadCA(absent) = %v, want os.ErrNotExist", err)
		}
	})
	t.Run("mismatched key", func(t *testing.T) {
		other := newTestCA(t, "c2")
		mixed := t.TempDir()
		if err := other.Save(mixed); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mixed, CACertFile), ca.CertPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadCA(mixed); err == nil || !strings.Contains(err.Error(), "does not match") {
			t.Errorf("LoadCA(mismatched) = %v, want a mismatch error", err)
		}
	})
}

func TestFingerprint(t *testing.T) {
	a, b := newTestCA(t, "a"), newTestCA(t, "b")
	fp := a.Fingerprint()
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(fp) {
		t.Errorf("Fingerprint = %q, want sha256:<64 hex>", fp)
	}
	if Fingerprint(a.Cert) != fp {
		t.Error("Fingerprint(cert) != ca.Fingerprint()")
	}
	reparsed, err := parseCACertPEM(a.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if Fingerprint(reparsed) != fp {
		t.Error("fingerprint changed after a PEM round trip")
	}
	if b.Fingerprint() == fp {
		t.Error("two CAs share a fingerprint")
	}
}

func TestNewSecret(t *testing.T) {
	s1, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	s2, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if s1 == s2 {
		t.Error("two secrets are equal")
	}
	if !regexp.MustCompile(`^[a-z2-7]{52}$`).MatchString(s1) {
		t.Errorf("secret %q: want 52 chars of lowercase base32", s1)
	}
	raw, err := secretEncoding.DecodeString(s1)
	if err != nil || len(raw) != 32 {
		t.Errorf("secret decodes to %d bytes (%v), want 32", len(raw), err)
	}
}

func TestToken(t *testing.T) {
	ca := newTestCA(t, "c1")
	secret, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	tok := Token{Fingerprint: ca.Fingerprint(), Secret: secret}
	s := tok.String()
	hexFP := strings.TrimPrefix(ca.Fingerprint(), "sha256:")
	if want := "DEVTKN-1-" + hexFP + "-" + secret; s != want {
		t.Fatalf("String = %q, want %q", s, want)
	}

	tests := []struct {
		name    string
		in      string
		want    Token
		wantErr string
	}{
		{name: "round trip", in: s, want: tok},
		{name: "surrounding whitespace", in: "  " + s + "\n", want: tok},
		{name: "empty", in: "", wantErr: "join token: empty"},
		{name: "garbage", in: "hello", wantErr: "join token: malformed: want DEVTKN-1-"},
		{name: "wrong prefix", in: "XEVTKN-1-" + hexFP + "-" + secret, wantErr: "malformed"},
		{name: "missing secret", in: "DEVTKN-1-" + hexFP, wantErr: "malformed"},
		{name: "extra part", in: s + "-x", wantErr: "malformed"},
		{name: "future version", in: "DEVTKN-2-" + hexFP + "-" + secret, wantErr: `unsupported version "2"`},
		{name: "short fingerprint", in: "DEVTKN-1-" + hexFP[:62] + "-" + secret, wantErr: "malformed CA fingerprint"},
		{name: "non-hex fingerprint", in: "DEVTKN-1-" + strings.Repeat("z", 64) + "-" + secret, wantErr: "malformed CA fingerprint"},
		{name: "uppercase fingerprint", in: "DEVTKN-1-" + strings.ToUpper(hexFP) + "-" + secret, wantErr: "malformed CA fingerprint"},
		{name: "short secret", in: "DEVTKN-1-" + hexFP + "-" + secret[:40], wantErr: "malformed secret"},
		{name: "uppercase secret", in: "DEVTKN-1-" + hexFP + "-" + strings.ToUpper(secret), wantErr: "malformed secret"},
		{name: "truncated by copy-paste", in: s[:len(s)-3], wantErr: "malformed secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseToken(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseToken(%q) error = %v, want containing %q", tt.in, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), `"dev token"`) {
					t.Errorf("error %q does not say what to do", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseToken: %v", err)
			}
			if got != tt.want {
				t.Errorf("ParseToken = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestSecretMatches(t *testing.T) {
	tok := Token{Secret: "abcdef"}
	tests := []struct {
		name  string
		token Token
		in    string
		want  bool
	}{
		{name: "equal", token: tok, in: "abcdef", want: true},
		{name: "different", token: tok, in: "abcdeg"},
		{name: "prefix", token: tok, in: "abc"},
		{name: "longer", token: tok, in: "abcdefg"},
		{name: "empty input", token: tok, in: ""},
		{name: "empty token secret", token: Token{}, in: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.token.SecretMatches(tt.in); got != tt.want {
				t.Errorf("SecretMatches(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestSign(t *testing.T) {
	ca := newTestCA(t, "c1")
	_, csrPEM, err := NewKeyAndCSR("n1")
	if err != nil {
		t.Fatal(err)
	}
	tampered := func() []byte {
		block, _ := pem.Decode(csrPEM)
		der := bytes.Clone(block.Bytes)
		der[len(der)-5] ^= 0xff // inside the signature
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}()
	ip := net.ParseIP("192.0.2.7")

	tests := []struct {
		name      string
		csr       []byte
		certName  string
		role      string
		ips       []net.IP
		dns       []string
		wantCN    string
		wantEKU   []x509.ExtKeyUsage
		wantDNS   []string
		wantIPs   []string
		wantNoIPs bool
		wantErr   string
	}{
		{
			name: "node", csr: csrPEM, certName: "n1", role: RoleNode,
			ips: []net.IP{ip, net.IPv4(127, 0, 0, 1)}, dns: []string{"n1.example", "localhost"},
			wantCN:  "n1",
			wantEKU: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			wantDNS: []string{"n1.example", "localhost"},
			wantIPs: []string{"192.0.2.7", "127.0.0.1", "::1"},
		},
		{
			name: "client", csr: csrPEM, certName: "alice", role: RoleAdmin,
			wantCN:    "client:alice",
			wantEKU:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			wantNoIPs: true,
		},
		{name: "unknown role", csr: csrPEM, certName: "n1", role: "root", wantErr: `unknown role "root"`},
		{name: "empty name", csr: csrPEM, certName: "", role: RoleNode, wantErr: "empty name"},
		{name: "reserved prefix", csr: csrPEM, certName: "client:n1", role: RoleNode, wantErr: "reserved"},
		{name: "space in name", csr: csrPEM, certName: "n 1", role: RoleNode, wantErr: "space"},
		{name: "not a CSR", csr: ca.CertPEM, certName: "n1", role: RoleNode, wantErr: "no CERTIFICATE REQUEST"},
		{name: "bad CSR signature", csr: tampered, certName: "n1", role: RoleNode, wantErr: "bad signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certPEM, err := ca.Sign(tt.csr, tt.certName, tt.role, tt.ips, tt.dns)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Sign error = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			certs, err := parseCertsPEM(certPEM)
			if err != nil {
				t.Fatal(err)
			}
			c := certs[0]
			if c.Subject.CommonName != tt.wantCN {
				t.Errorf("CN = %q, want %q", c.Subject.CommonName, tt.wantCN)
			}
			if !slices.Equal(c.ExtKeyUsage, tt.wantEKU) {
				t.Errorf("ExtKeyUsage = %v, want %v", c.ExtKeyUsage, tt.wantEKU)
			}
			if c.IsCA {
				t.Error("leaf is a CA")
			}
			if err := c.CheckSignatureFrom(ca.Cert); err != nil {
				t.Errorf("not signed by the CA: %v", err)
			}
			if d := time.Until(c.NotAfter); d < 364*24*time.Hour || d > 366*24*time.Hour {
				t.Errorf("NotAfter in %v, want ~1 year", d)
			}
			if !slices.Equal(c.DNSNames, tt.wantDNS) {
				t.Errorf("DNSNames = %v, want %v", c.DNSNames, tt.wantDNS)
			}
			var ips []string
			for _, ip := range c.IPAddresses {
				ips = append(ips, ip.String())
			}
			if tt.wantNoIPs && len(ips) > 0 || !tt.wantNoIPs && !slices.Equal(ips, tt.wantIPs) {
				t.Errorf("IPAddresses = %v, want %v", ips, tt.wantIPs)
			}
			peer, err := verifyChain([]*x509.Certificate{c}, newTrust(ca.Roots()), time.Now(), x509.ExtKeyUsageAny)
			if err != nil {
				t.Fatalf("verifyLeaf: %v", err)
			}
			if want := (Peer{Name: tt.certName, Role: tt.role}); peer != want {
				t.Errorf("peer = %+v, want %+v", peer, want)
			}
		})
	}
}

func TestIdentitySaveLoad(t *testing.T) {
	ca, other := newTestCA(t, "c1"), newTestCA(t, "c2")
	keyPEM, csrPEM, err := NewKeyAndCSR("n1")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.Sign(csrPEM, "n1", RoleNode, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	otherKeyPEM, _, err := NewKeyAndCSR("n1")
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		cert    []byte
		key     []byte
		ca      []byte
		wantErr string
	}{
		{name: "valid", cert: certPEM, key: keyPEM, ca: ca.CertPEM},
		{name: "key of another certificate", cert: certPEM, key: otherKeyPEM, ca: ca.CertPEM, wantErr: "does not match"},
		{name: "certificate from another CA", cert: certPEM, key: keyPEM, ca: other.CertPEM, wantErr: "not signed by this cluster's CA"},
		{name: "leaf given as CA", cert: certPEM, key: keyPEM, ca: certPEM, wantErr: "not a self-signed CA"},
		{name: "no key", cert: certPEM, key: nil, ca: ca.CertPEM, wantErr: "no PRIVATE KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "id")
			err := SaveIdentity(dir, tt.cert, tt.key, tt.ca)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("SaveIdentity error = %v, want containing %q", err, tt.wantErr)
				}
				if _, err := os.Stat(filepath.Join(dir, NodeKeyFile)); !errors.Is(err, os.ErrNotExist) {
					t.Error("an invalid identity was written")
				}
				return
			}
			if err != nil {
				t.Fatalf("SaveIdentity: %v", err)
			}
			if got := fileMode(t, filepath.Join(dir, NodeKeyFile)); got != 0o600 {
				t.Errorf("node.key mode = %o, want 600", got)
			}
			id, err := LoadIdentity(dir)
			if err != nil {
				t.Fatalf("LoadIdentity: %v", err)
			}
			if id.Name != "n1" || id.Role != RoleNode {
				t.Errorf("identity = %q/%q, want n1/node", id.Name, id.Role)
			}
			if r := id.Roots(); len(r) != 1 || !r[0].Equal(ca.Cert) {
				t.Error("trusted CAs differ")
			}
			if c := id.Certificate().Certificate; len(c) != 2 || !bytes.Equal(c[1], ca.Cert.Raw) {
				t.Error("tls.Certificate chain is not [leaf, CA]")
			}
		})
	}

	t.Run("absent", func(t *testing.T) {
		if _, err := LoadIdentity(t.TempDir()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("LoadIdentity(empty dir) = %v, want os.ErrNotExist", err)
		}
	})
	t.Run("expired on disk", func(t *testing.T) {
		keyPEM, csrPEM, err := NewKeyAndCSR("old")
		if err != nil {
			t.Fatal(err)
		}
		certPEM, err := ca.sign(csrPEM, "old", RoleNode, nil, nil, ca.Cert.NotBefore, time.Now().Add(-time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		for name, data := range map[string][]byte{NodeCertFile: certPEM, NodeKeyFile: keyPEM, CACertFile: ca.CertPEM} {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		_, err = LoadIdentity(dir)
		if err == nil || !strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), "dev join") {
			t.Errorf("LoadIdentity(expired) = %v, want an expiry error saying to join again", err)
		}
	})
}

func TestClientBundle(t *testing.T) {
	ca := newTestCA(t, "c1")
	bundle, err := ca.ClientBundle("alice", RoleAdmin, 0)
	if err != nil {
		t.Fatalf("ClientBundle: %v", err)
	}
	path := filepath.Join(t.TempDir(), "dev-client.pem")
	if err := os.WriteFile(path, bundle, 0o600); err != nil {
		t.Fatal(err)
	}
	id, err := LoadClientBundle(path)
	if err != nil {
		t.Fatalf("LoadClientBundle: %v", err)
	}
	if id.Name != "alice" || id.Role != RoleAdmin {
		t.Errorf("identity = %q/%q, want alice/admin", id.Name, id.Role)
	}
	if r := id.Roots(); len(r) != 1 || Fingerprint(r[0]) != ca.Fingerprint() {
		t.Error("bundle CA differs")
	}
	// A read bundle carries its role; no other role makes a bundle.
	rb, err := ca.ClientBundle("bob", RoleRead, 0)
	if err != nil {
		t.Fatal(err)
	}
	if rid, err := ParseBundle(rb); err != nil || rid.Name != "bob" || rid.Role != RoleRead {
		t.Errorf("read bundle: %+v, %v; want bob/read", rid, err)
	}
	if _, err := ca.ClientBundle("eve", RoleNode, 0); err == nil {
		t.Error("ClientBundle(role node) succeeded, want refused")
	}

	// Without the CA certificate the bundle is refused.
	noCA := bytes.Replace(bundle, ca.CertPEM, nil, 1)
	if _, err := ParseBundle(noCA); err == nil || !strings.Contains(err.Error(), "dev token --client") {
		t.Errorf("ParseBundle(no CA) = %v, want an error naming dev token --client", err)
	}
	if _, err := LoadClientBundle(filepath.Join(t.TempDir(), "nope.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadClientBundle(absent) = %v, want os.ErrNotExist", err)
	}
}

type handshakeResult struct {
	serverState, clientState tls.ConnectionState
	serverErr, clientErr     error
}

// handshake runs a real TLS handshake over loopback and one server-to-client
// write, so that a client certificate refused by the server (which TLS 1.3
// reports after the client's handshake returns) fails the client too.
func handshake(t *testing.T, server, client *tls.Config) handshakeResult {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type srvResult struct {
		cs  tls.ConnectionState
		err error
	}
	done := make(chan srvResult, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- srvResult{err: err}
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			done <- srvResult{err: err}
			return
		}
		_, err = tc.Write([]byte("ok"))
		done <- srvResult{cs: tc.ConnectionState(), err: err}
	}()

	var res handshakeResult
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), client)
	if err == nil {
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = io.ReadFull(conn, make([]byte, 2))
		res.clientState = conn.ConnectionState()
		conn.Close()
	}
	res.clientErr = err
	srv := <-done
	res.serverState, res.serverErr = srv.cs, srv.err
	return res
}

func TestTLS(t *testing.T) {
	caA, caB := newTestCA(t, "a"), newTestCA(t, "b")
	n1 := issue(t, caA, "n1", RoleNode, time.Time{}, time.Time{})
	n2 := issue(t, caA, "n2", RoleNode, time.Time{}, time.Time{})
	bundle, err := caA.ClientBundle("alice", RoleAdmin, 0)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := ParseBundle(bundle)
	if err != nil {
		t.Fatal(err)
	}
	evil := issue(t, caB, "evil", RoleNode, time.Time{}, time.Time{})
	// Expired a minute ago; it starts with the CA, which is only minutes old.
	expired := issue(t, caA, "old", RoleNode, caA.Cert.NotBefore, time.Now().Add(-time.Minute))

	// An impostor holding a leaf from CA b but sending CA a's (public)
	// certificate in its chain, hoping the pin matches on it.
	impostor := &tls.Config{
		MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{{
			Certificate: [][]byte{evil.Certificate().Leaf.Raw, caA.Cert.Raw},
			PrivateKey:  evil.Certificate().PrivateKey,
		}},
	}
	// n1 without the CA certificate in its chain.
	leafOnly := &tls.Config{
		MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{{
			Certificate: [][]byte{n1.Certificate().Leaf.Raw},
			PrivateKey:  n1.Certificate().PrivateKey,
		}},
	}
	noCert := n2.ClientTLS()
	noCert.GetClientCertificate = nil
	hexFP := strings.TrimPrefix(caA.Fingerprint(), "sha256:")

	tests := []struct {
		name     string
		serverID *Identity // identity checking the client with VerifyPeer
		server   *tls.Config
		clientID *Identity // identity checking the server with VerifyPeer; nil: none
		client   *tls.Config
		// wantServerPeer/wantClientPeer: the verified name each side sees;
		// a zero wantServerPeer with serverID set wants ErrNoCertificate.
		wantServerPeer Peer
		wantClientPeer Peer
		// wantServerErr/wantClientErr: the side that refuses, and why.
		wantServerErr string
		wantClientErr string
	}{
		{
			name:     "node to node",
			serverID: n1, server: n1.ServerTLS(), clientID: n2, client: n2.ClientTLS(),
			wantServerPeer: Peer{Name: "n2", Role: RoleNode},
			wantClientPeer: Peer{Name: "n1", Role: RoleNode},
		},
		{
			name:     "node to node-only server",
			serverID: n1, server: n1.NodeServerTLS(), clientID: n2, client: n2.ClientTLS(),
			wantServerPeer: Peer{Name: "n2", Role: RoleNode},
			wantClientPeer: Peer{Name: "n1", Role: RoleNode},
		},
		{
			name:     "client bundle to API server",
			serverID: n1, server: n1.ServerTLS(), clientID: alice, client: alice.ClientTLS(),
			wantServerPeer: Peer{Name: "alice", Role: RoleAdmin},
			wantClientPeer: Peer{Name: "n1", Role: RoleNode},
		},
		{
			name:   "client bundle to node-only server refused",
			server: n1.NodeServerTLS(), client: alice.ClientTLS(),
			wantServerErr: `has role "admin"`,
		},
		{
			name: "client cert from another CA refused",
			// evil's own ClientTLS would refuse n1 first: trust any server.
			server: n1.ServerTLS(), client: insecureWithCert(evil),
			wantServerErr: "not signed by this cluster's CA",
		},
		{
			name:   "client without certificate refused",
			server: n1.ServerTLS(), client: noCert,
			wantServerErr: "didn't provide a certificate",
		},
		{
			name:   "expired client certificate refused",
			server: n1.ServerTLS(), client: expired.ClientTLS(),
			wantServerErr: "expired",
		},
		{
			name:   "server from another CA refused",
			server: evil.ServerTLS(), client: n2.ClientTLS(),
			wantClientErr: "not signed by this cluster's CA",
		},
		{
			name:   "client certificate used as server refused",
			server: alice.ServerTLS(), client: n2.ClientTLS(),
			wantClientErr: "incompatible key usage",
		},
		{
			name:   "expired server certificate refused",
			server: expired.ServerTLS(), client: n2.ClientTLS(),
			wantClientErr: "expired",
		},
		{
			name:     "join server lets a node without certificate in",
			serverID: n1, server: n1.JoinServerTLS(), client: PinnedTLS(caA.Fingerprint()),
		},
		{
			name:     "join server still verifies a certificate",
			serverID: n1, server: n1.JoinServerTLS(), clientID: n2, client: n2.ClientTLS(),
			wantServerPeer: Peer{Name: "n2", Role: RoleNode},
			wantClientPeer: Peer{Name: "n1", Role: RoleNode},
		},
		{
			name:   "join server refuses a certificate from another CA",
			server: n1.JoinServerTLS(), client: insecureWithCert(evil),
			wantServerErr: "not signed by this cluster's CA",
		},
		{
			name:   "pinned: right fingerprint",
			server: n1.JoinServerTLS(), client: PinnedTLS(caA.Fingerprint()),
		},
		{
			name:   "pinned: bare hex fingerprint from a token",
			server: n1.JoinServerTLS(), client: PinnedTLS(hexFP),
		},
		{
			name:   "pinned: wrong fingerprint refused",
			server: evil.JoinServerTLS(), client: PinnedTLS(caA.Fingerprint()),
			wantClientErr: "not the one in the join token",
		},
		{
			name:   "pinned: real CA certificate next to a foreign leaf refused",
			server: impostor, client: PinnedTLS(caA.Fingerprint()),
			wantClientErr: "not signed by this cluster's CA",
		},
		{
			name:   "pinned: chain without the CA certificate refused",
			server: leafOnly, client: PinnedTLS(caA.Fingerprint()),
			wantClientErr: "not the one in the join token",
		},
		{
			name:   "pinned: expired server refused",
			server: expired.JoinServerTLS(), client: PinnedTLS(caA.Fingerprint()),
			wantClientErr: "expired",
		},
		{
			name:   "pinned: malformed fingerprint refused",
			server: n1.JoinServerTLS(), client: PinnedTLS("sha256:abc"),
			wantClientErr: "malformed fingerprint",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := handshake(t, tt.server, tt.client)
			switch {
			case tt.wantServerErr != "":
				if res.serverErr == nil || !strings.Contains(res.serverErr.Error(), tt.wantServerErr) {
					t.Errorf("server error = %v, want containing %q", res.serverErr, tt.wantServerErr)
				}
				if res.clientErr == nil {
					t.Error("client completed a connection the server refused")
				}
				return
			case tt.wantClientErr != "":
				if res.clientErr == nil || !strings.Contains(res.clientErr.Error(), tt.wantClientErr) {
					t.Errorf("client error = %v, want containing %q", res.clientErr, tt.wantClientErr)
				}
				if res.serverErr == nil {
					t.Error("server completed a connection the client refused")
				}
				return
			}
			if res.serverErr != nil || res.clientErr != nil {
				t.Fatalf("handshake failed: server: %v, client: %v", res.serverErr, res.clientErr)
			}
			if res.clientState.Version != tls.VersionTLS13 {
				t.Errorf("TLS version %x, want 1.3", res.clientState.Version)
			}
			if tt.serverID != nil {
				got, err := tt.serverID.VerifyPeer(&res.serverState)
				if tt.wantServerPeer == (Peer{}) {
					if !errors.Is(err, ErrNoCertificate) {
						t.Errorf("server VerifyPeer = %+v, %v, want ErrNoCertificate", got, err)
					}
				} else if err != nil || got != tt.wantServerPeer {
					t.Errorf("server sees %+v (%v), want %+v", got, err, tt.wantServerPeer)
				}
			}
			if tt.clientID != nil {
				got, err := tt.clientID.VerifyPeer(&res.clientState)
				if err != nil || got != tt.wantClientPeer {
					t.Errorf("client sees %+v (%v), want %+v", got, err, tt.wantClientPeer)
				}
			}
		})
	}
}

// insecureWithCert presents id's certificate and trusts any server, to test
// the server side alone. It sends the certificate even when the server's
// acceptable CAs do not list its issuer (a Go client would send none).
func insecureWithCert(id *Identity) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return id.Certificate(), nil
		},
		InsecureSkipVerify: true,
	}
}

func TestVerifyPeer(t *testing.T) {
	caA, caB := newTestCA(t, "a"), newTestCA(t, "b")
	n1 := issue(t, caA, "n1", RoleNode, time.Time{}, time.Time{})
	evil := issue(t, caB, "evil", RoleNode, time.Time{}, time.Time{})
	tests := []struct {
		name    string
		cs      *tls.ConnectionState
		want    Peer
		wantErr string
	}{
		{name: "nil state (plain HTTP)", cs: nil, wantErr: "no cluster certificate"},
		{name: "no certificate", cs: &tls.ConnectionState{}, wantErr: "no cluster certificate"},
		{name: "own CA", cs: &tls.ConnectionState{PeerCertificates: []*x509.Certificate{n1.Certificate().Leaf}}, want: Peer{Name: "n1", Role: RoleNode}},
		{name: "another CA", cs: &tls.ConnectionState{PeerCertificates: []*x509.Certificate{evil.Certificate().Leaf}}, wantErr: "not signed by this cluster's CA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := n1.VerifyPeer(tt.cs)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("VerifyPeer error = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("VerifyPeer = %+v, %v, want %+v", got, err, tt.want)
			}
		})
	}
}

// TestHTTPJoinServer shows the intended API listener: JoinServerTLS serves the
// join endpoint to anyone holding the token's fingerprint, and every other
// handler gates on VerifyPeer.
func TestHTTPJoinServer(t *testing.T) {
	ca := newTestCA(t, "a")
	n1 := issue(t, ca, "n1", RoleNode, time.Time{}, time.Time{})
	n2 := issue(t, ca, "n2", RoleNode, time.Time{}, time.Time{})
	mux := http.NewServeMux()
	mux.HandleFunc("/join", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "join") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		peer, err := n1.VerifyPeer(r.TLS)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		io.WriteString(w, peer.Role+":"+peer.Name)
	})
	// Not httptest's StartTLS: it would add a certificate of its own,
	// which a handshake without SNI would get instead of the node's.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(tls.NewListener(ln, n1.JoinServerTLS())) }()
	defer hs.Close()
	srv := struct{ URL string }{"https://" + ln.Addr().String()}

	get := func(cfg *tls.Config, path string) (int, string) {
		t.Helper()
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}, Timeout: 5 * time.Second}
		defer c.CloseIdleConnections()
		resp, err := c.Get(srv.URL + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(body))
	}
	tests := []struct {
		name     string
		cfg      *tls.Config
		path     string
		wantCode int
		wantBody string
	}{
		{name: "joiner reaches join", cfg: PinnedTLS(ca.Fingerprint()), path: "/join", wantCode: 200, wantBody: "join"},
		{name: "joiner refused elsewhere", cfg: PinnedTLS(ca.Fingerprint()), path: "/pods", wantCode: 401, wantBody: "no cluster certificate"},
		{name: "node reaches API", cfg: n2.ClientTLS(), path: "/pods", wantCode: 200, wantBody: "node:n2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := get(tt.cfg, tt.path)
			if code != tt.wantCode || !strings.Contains(body, tt.wantBody) {
				t.Errorf("GET %s = %d %q, want %d %q", tt.path, code, body, tt.wantCode, tt.wantBody)
			}
		})
	}
}

// TestReload: a renewed certificate takes the old one's place in the TLS
// configs made before (server and client side), without a restart; one
// of another name or CA is refused; RenewAt is at 2/3 of the life.
func TestReload(t *testing.T) {
	ca := newTestCA(t, "a")
	n1 := issue(t, ca, "n1", RoleNode, time.Time{}, time.Time{})
	n2 := issue(t, ca, "n2", RoleNode, time.Time{}, time.Time{})
	server, client := n1.NodeServerTLS(), n1.ClientTLS()
	first := n1.Certificate().Leaf.SerialNumber

	keyPEM, csrPEM, err := NewKeyAndCSR("n1")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.SignFor(csrPEM, "n1", RoleNode, nil, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := n1.Reload(certPEM, keyPEM, nil); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	renewed := n1.Certificate().Leaf
	if renewed.SerialNumber.Cmp(first) == 0 {
		t.Fatal("Reload kept the old certificate")
	}
	// The server made before presents the new one; the client made before
	// presents the new one too (its peer sees it).
	res := handshake(t, server, n2.ClientTLS())
	if res.clientErr != nil || res.clientState.PeerCertificates[0].SerialNumber.Cmp(renewed.SerialNumber) != 0 {
		t.Errorf("server after Reload: %v, presented %v; want the renewed certificate", res.clientErr, res.clientState.PeerCertificates)
	}
	res = handshake(t, n2.NodeServerTLS(), client)
	if res.serverErr != nil || res.serverState.PeerCertificates[0].SerialNumber.Cmp(renewed.SerialNumber) != 0 {
		t.Errorf("client after Reload: %v; want the renewed certificate presented", res.serverErr)
	}
	if want := IssuedAt(renewed).Add(40 * time.Minute); !n1.RenewAt().Equal(want) {
		t.Errorf("RenewAt = %v, want %v (2/3 of an hour after issue)", n1.RenewAt(), want)
	}

	other, otherCSR, _ := NewKeyAndCSR("n2")
	otherCert, _ := ca.SignFor(otherCSR, "n2", RoleNode, nil, nil, time.Hour)
	if err := n1.Reload(otherCert, other, nil); err == nil {
		t.Error("Reload took another node's certificate")
	}
	foreign := newTestCA(t, "b")
	fk, fcsr, _ := NewKeyAndCSR("n1")
	fcert, _ := foreign.SignFor(fcsr, "n1", RoleNode, nil, nil, time.Hour)
	if err := n1.Reload(fcert, fk, nil); err == nil {
		t.Error("Reload took a certificate of another CA")
	}
}

// TestSaveCutShort: a renewal's save that a crash interrupted leaves the
// old identity or the new one, never a key that does not match its
// certificate, whatever step the crash came at.
func TestSaveCutShort(t *testing.T) {
	ca := newTestCA(t, "c1")
	pair := func() (cert, key []byte) {
		key, csr, err := NewKeyAndCSR("n1")
		if err != nil {
			t.Fatal(err)
		}
		cert, err = ca.Sign(csr, "n1", RoleNode, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return cert, key
	}
	oldCert, oldKey := pair()
	newCert, newKey := pair()
	write := func(t *testing.T, dir, name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		name    string
		crash   func(t *testing.T, dir string) // from the old identity saved in dir
		wantNew bool
	}{
		{"while writing the new files", func(t *testing.T, dir string) {
			write(t, dir, NodeCertFile+nextSuffix, newCert) // the key's .next never written
		}, false},
		{"after writing them, before any rename", func(t *testing.T, dir string) {
			write(t, dir, NodeCertFile+nextSuffix, newCert)
			write(t, dir, NodeKeyFile+nextSuffix, newKey)
			write(t, dir, CACertFile+nextSuffix, ca.CertPEM)
		}, true},
		{"after the certificate's rename, before the key's", func(t *testing.T, dir string) {
			write(t, dir, NodeCertFile, newCert)
			write(t, dir, NodeKeyFile+nextSuffix, newKey)
			write(t, dir, CACertFile+nextSuffix, ca.CertPEM)
		}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "id")
			if err := SaveIdentity(dir, oldCert, oldKey, ca.CertPEM); err != nil {
				t.Fatal(err)
			}
			tt.crash(t, dir)
			id, err := LoadIdentity(dir)
			if err != nil {
				t.Fatalf("LoadIdentity after a crash %s: %v", tt.name, err)
			}
			want := oldCert
			if tt.wantNew {
				want = newCert
			}
			if got := EncodeCertPEM(id.Certificate().Leaf); !bytes.Equal(got, want) {
				t.Errorf("loaded the %s certificate", map[bool]string{true: "old", false: "new"}[tt.wantNew])
			}
			if left, _ := filepath.Glob(filepath.Join(dir, "*"+nextSuffix)); len(left) > 0 {
				t.Errorf("files of the cut-short save left: %v", left)
			}
		})
	}
}
