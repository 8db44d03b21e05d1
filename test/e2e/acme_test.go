package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// pebbleVersion is the ACME test CA the tls: auto test runs (Let's
// Encrypt's Pebble, from the Go module proxy).
const pebbleVersion = "github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.3"

var (
	pebbleOnce sync.Once
	pebbleBin  string
	pebbleErr  error
)

// buildPebble installs Pebble once per test binary.
func buildPebble(t *testing.T) string {
	t.Helper()
	pebbleOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dev-e2e-pebble")
		if err != nil {
			pebbleErr = err
			return
		}
		cmd := exec.Command("go", "install", pebbleVersion)
		cmd.Env = append(os.Environ(), "GOBIN="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			pebbleErr = fmt.Errorf("go install %s: %v\n%s", pebbleVersion, err, out)
			return
		}
		pebbleBin = filepath.Join(dir, "pebble")
	})
	if pebbleErr != nil {
		t.Fatal(pebbleErr)
	}
	return pebbleBin
}

// pebble is a running Pebble: its directory URL, the PEM file of the CA
// of its own HTTPS, and an HTTP client that trusts it.
type pebble struct {
	dir     string
	rootPEM string
	hc      *http.Client
	mgmt    string
}

// startPebble runs Pebble on the hosts' bridge: the ACME API on :14000,
// validating HTTP-01 on port 80 and TLS-ALPN-01 on 443 of the address
// resolve gives, certificates valid for validity.
func startPebble(t *testing.T, resolve map[string]string, validity time.Duration) *pebble {
	t.Helper()
	bin := buildPebble(t)
	dir := t.TempDir()
	certPEM, keyPEM := selfSignedServer(t, hostsGateway)
	rootPEM := filepath.Join(dir, "pebble-tls.pem")
	for name, b := range map[string][]byte{rootPEM: certPEM, filepath.Join(dir, "pebble-tls.key"): keyPEM} {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dnsAddr := serveDNS(t, resolve)
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":           hostsGateway + ":14000",
		"managementListenAddress": hostsGateway + ":15000",
		"certificate":             rootPEM,
		"privateKey":              filepath.Join(dir, "pebble-tls.key"),
		"httpPort":                80,
		"tlsPort":                 443,
		"ocspResponderURL":        "",
		"keyAlgorithm":            "ecdsa",
		"profiles": map[string]any{"default": map[string]any{
			"description": "short-lived, for the renewal test", "validityPeriod": int(validity.Seconds())}},
	}}
	b, _ := json.Marshal(conf)
	confPath := filepath.Join(dir, "pebble-config.json")
	if err := os.WriteFile(confPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", confPath, "-dnsserver", dnsAddr, "-strict=false")
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	logf, err := os.Create(filepath.Join(dir, "pebble.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil {
				t.Logf("pebble log:\n%s", lastLines(string(b), 40))
			}
		}
	})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	p := &pebble{dir: "https://" + hostsGateway + ":14000/dir", rootPEM: rootPEM, mgmt: "https://" + hostsGateway + ":15000",
		hc: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
	eventually(t, 30*time.Second, "pebble answers", func() error {
		resp, err := p.hc.Get(p.dir)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	return p
}

// roots is the pool of the CAs Pebble issues under (its management API).
func (p *pebble) roots(t *testing.T) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	for i := 0; ; i++ {
		resp, err := p.hc.Get(fmt.Sprintf("%s/roots/%d", p.mgmt, i))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			if i == 0 {
				t.Fatalf("pebble roots: %s", resp.Status)
			}
			return pool
		}
		pool.AppendCertsFromPEM(b)
		if i > 4 {
			return pool
		}
	}
}

// selfSignedServer makes a self-signed CA certificate that also serves
// ip: Pebble's HTTPS.
func selfSignedServer(t *testing.T, ip string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pebble e2e"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP(ip), net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// serveDNS answers A queries for the names of resolve (name -> IPv4) on
// the hosts' bridge, over UDP and TCP on one port, for Pebble's
// validation; it returns the address.
func serveDNS(t *testing.T, resolve map[string]string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", hostsGateway+":0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		for _, qq := range q.Question {
			ip, ok := resolve[strings.TrimSuffix(qq.Name, ".")]
			if ok && qq.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: net.ParseIP(ip)})
			}
		}
		_ = w.WriteMsg(m)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		go func() { _ = srv.ActivateAndServe() }()
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return pc.LocalAddr().String()
}

// servedCert is the certificate a host's ingress router presents for
// name, verified against roots.
func servedCert(ip, name string, roots *x509.CertPool) (*x509.Certificate, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", net.JoinHostPort(ip, "443"),
		&tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// TestIngressACME: a tls: auto route on three hosts (a manager, two
// workers) gets one certificate from an ACME CA (Pebble), the challenge
// answered by a worker (the name resolves to it, not to the leader), and
// every node serves that same certificate; plain HTTP redirects to HTTPS;
// the certificate is renewed before it expires (Pebble issues them for
// 60 s) and every node serves the new one.
func TestIngressACME(t *testing.T) {
	const host = "app.e2eacme.test"
	hosts := newHosts(t, 3)
	peb := startPebble(t, map[string]string{host: hosts[1].IP}, 60*time.Second)
	ms := newMultiClusterWith(t, hosts, nil, func(h *testHost) []string {
		return append(agentArgs(h, h.Name), "--acme-ca", peb.dir, "--acme-ca-root", peb.rootPEM)
	}, "h2", "h3")
	compose := writeTemp(t, `name: e2eacme
services:
  web:
    image: `+testImage+`
    command: ["serve"]
    deploy:
      replicas: 2
    x-ingress:
      - {host: `+host+`, port: 8080, tls: auto}
`)
	ms[0].mustDev(t, "up", "-d", "-f", compose)
	roots := peb.roots(t)

	var first *x509.Certificate
	eventually(t, 90*time.Second, "a certificate from the ACME CA, served by every node", func() error {
		var certs []*x509.Certificate
		for _, h := range hosts {
			c, err := servedCert(h.IP, host, roots)
			if err != nil {
				return fmt.Errorf("%s: %v", h.Name, err)
			}
			certs = append(certs, c)
		}
		for i, c := range certs[1:] {
			if !c.Equal(certs[0]) {
				return fmt.Errorf("%s serves serial %s, h1 %s", hosts[i+1].Name, c.SerialNumber, certs[0].SerialNumber)
			}
		}
		first = certs[0]
		return nil
	})
	if out := ms[0].mustDev(t, "ingress"); !strings.Contains(out, "valid until") {
		t.Errorf("dev ingress does not show the certificate:\n%s", out)
	}
	// Every node routes over HTTPS, and redirects plain HTTP there.
	for _, h := range hosts {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort(h.IP, "443"))
			},
		}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Get("https://" + host + "/health")
		if err != nil {
			t.Errorf("%s over HTTPS: %v", h.Name, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s over HTTPS: %s", h.Name, resp.Status)
		}
		req, _ := http.NewRequest(http.MethodGet, "http://"+h.IP+"/health", nil)
		req.Host = host
		plain := &http.Client{Timeout: 5 * time.Second, CheckRedirect: c.CheckRedirect}
		resp, err = plain.Do(req)
		if err != nil {
			t.Errorf("%s over HTTP: %v", h.Name, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != "https://"+host+"/health" {
			t.Errorf("%s over HTTP: %s to %q, want 308 to https://%s/health", h.Name, resp.Status, resp.Header.Get("Location"), host)
		}
	}

	eventually(t, 90*time.Second, "the certificate renewed, and the new one served by every node", func() error {
		for _, h := range hosts {
			c, err := servedCert(h.IP, host, roots)
			if err != nil {
				return fmt.Errorf("%s: %v", h.Name, err)
			}
			if c.Equal(first) {
				return fmt.Errorf("%s still serves serial %s (until %s)", h.Name, first.SerialNumber, first.NotAfter.Format(time.TimeOnly))
			}
		}
		return nil
	})
}
