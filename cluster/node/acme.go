package node

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
	"go.uber.org/zap"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/proxy"
)

// DefaultACMECA is the ACME directory of tls: auto certificates when the
// agents are given a contact address (--acme-email) and no --acme-ca:
// Let's Encrypt's.
const DefaultACMECA = certmagic.LetsEncryptProductionCA

// The ACME storage's own entries (beside certmagic's): the cluster's ACME
// settings, which every node reads, and each host's last failure, which
// dev ingress shows.
const (
	acmeConfigKey = "dev/config.json"
	acmeStatusDir = "dev/status"
)

// acmeConfig is the cluster's ACME settings, in the state: the leader
// writes those of its flags, so that every node looks up certificates and
// challenges under the same CA, whatever its own flags.
type acmeConfig struct {
	CA    string `json:"ca"`
	Email string `json:"email,omitempty"`
}

// acmeCerts serves the hosts of tls: auto routes (proxy.ACMESource). Every
// node serves the certificates of the state's ACME storage (acmeStorage)
// and answers the CA's challenges from it, whichever node the CA reaches;
// the leader alone obtains and renews them, with certmagic.
//
// Nothing is asked of an ACME CA until the agents are told which (--acme-ca)
// or given a contact address for Let's Encrypt (--acme-email): agreeing to
// a CA's terms is the user's choice.
type acmeCerts struct {
	storage   *acmeStorage
	flags     acmeConfig     // this node's --acme-ca and --acme-email
	roots     *x509.CertPool // trusted for the CA's own HTTPS; nil: the system's
	renewEach time.Duration  // how often the leader looks for certificates to renew
	httpPort  int            // the router's ports, where challenges are answered
	tlsPort   int            // 0: no HTTPS, no TLS-ALPN-01
	log       *slog.Logger

	mu     sync.Mutex           // guards answer and certs
	answer *acmeAnswer          // the config that answers challenges, of the state's CA
	certs  map[string]*acmeCert // by host
}

// acmeAnswer is a certmagic config that manages nothing: it answers
// challenges from the storage and names the storage keys, for one CA.
type acmeAnswer struct {
	ca    string
	cfg   *certmagic.Config
	iss   *certmagic.ACMEIssuer
	cache *certmagic.Cache
}

// acmeCert is a host's certificate as last loaded, and when its entry was
// written: a renewal writes a new one. Its mutex is held while the key is
// loaded, so that many handshakes make one request, and one host's wait
// holds up no other.
type acmeCert struct {
	mu       sync.Mutex
	cert     *tls.Certificate
	modified time.Time
	failed   error
	failedAt time.Time
}

var _ proxy.ACMESource = (*acmeCerts)(nil)

func newACMECerts(storage *acmeStorage, ca, email, rootFile string, httpPort, tlsPort int, fast bool, log *slog.Logger) (*acmeCerts, error) {
	if ca == "" && email != "" {
		ca = DefaultACMECA
	}
	a := &acmeCerts{storage: storage, flags: acmeConfig{CA: ca, Email: email}, renewEach: 10 * time.Minute,
		httpPort: httpPort, tlsPort: tlsPort, log: log.With("component", "acme"), certs: map[string]*acmeCert{}}
	if fast {
		a.renewEach = 5 * time.Second
	}
	if rootFile != "" {
		b, err := os.ReadFile(rootFile)
		if err != nil {
			return nil, fmt.Errorf("read --acme-ca-root: %w", err)
		}
		a.roots = x509.NewCertPool()
		if !a.roots.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--acme-ca-root %s: no PEM certificate in it", rootFile)
		}
	}
	return a, nil
}

// config is the cluster's ACME settings: the state's, once a leader wrote
// them; else this node's flags.
func (a *acmeCerts) config() acmeConfig {
	if e, ok := a.storage.st.ACME(acmeConfigKey); ok {
		var c acmeConfig
		if json.Unmarshal(e.Value, &c) == nil && c.CA != "" {
			return c
		}
	}
	return a.flags
}

// newConfig makes a certmagic config over the state's storage (st: the
// term's, for the leader's) with an ACME issuer of c, and its cache,
// which checks for renewals every renewEach.
func (a *acmeCerts) newConfig(st *acmeStorage, c acmeConfig, renewEach time.Duration) (*certmagic.Config, *certmagic.ACMEIssuer, *certmagic.Cache) {
	var cfg *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return cfg, nil },
		RenewCheckInterval: renewEach,
		OCSPCheckInterval:  24 * time.Hour,
		Logger:             zap.NewNop(),
	})
	cfg = certmagic.New(cache, certmagic.Config{
		Storage: st,
		Logger:  zap.NewNop(),
		OCSP:    certmagic.OCSPConfig{DisableStapling: true},
		OnEvent: a.event,
	})
	iss := certmagic.NewACMEIssuer(cfg, certmagic.ACMEIssuer{
		CA: c.CA, TestCA: c.CA, Email: c.Email, Agreed: true, TrustedRoots: a.roots, Logger: zap.NewNop(),
		// The router answers the challenges on its ports: certmagic finds
		// them taken and opens no listener of its own.
		AltHTTPPort: a.httpPort, AltTLSALPNPort: a.tlsPort, DisableTLSALPNChallenge: a.tlsPort == 0,
	})
	cfg.Issuers = []certmagic.Issuer{iss}
	return cfg, iss, cache
}

// answering is the config that answers challenges and names the storage
// keys, for the cluster's CA; nil while none is configured.
func (a *acmeCerts) answering() *acmeAnswer {
	c := a.config()
	a.mu.Lock()
	defer a.mu.Unlock()
	if c.CA == "" {
		return nil
	}
	if a.answer == nil || a.answer.ca != c.CA {
		if a.answer != nil {
			a.answer.cache.Stop()
		}
		cfg, iss, cache := a.newConfig(a.storage, c, 24*time.Hour)
		a.answer = &acmeAnswer{ca: c.CA, cfg: cfg, iss: iss, cache: cache}
	}
	return a.answer
}

// stop stops the answering config's cache.
func (a *acmeCerts) stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.answer != nil {
		a.answer.cache.Stop()
		a.answer = nil
	}
}

// event logs what certmagic reports of the certificates it manages, and
// keeps each host's last failure in the state for dev ingress.
func (a *acmeCerts) event(ctx context.Context, event string, data map[string]any) error {
	host, _ := data["identifier"].(string)
	switch event {
	case "cert_obtaining":
		a.log.Info("asking the ACME CA for a certificate", "host", host)
	case "cert_obtained":
		a.log.Info("certificate obtained", "host", host, "renewal", data["renewal"])
		if _, ok := a.storage.st.ACME(acmeStatusDir + "/" + host); ok {
			_ = a.storage.Delete(ctx, acmeStatusDir+"/"+host)
		}
	case "cert_failed":
		err, _ := data["error"].(error)
		a.log.Warn("no certificate from the ACME CA (retried)", "host", host, "renewal", data["renewal"], "err", err)
		if err != nil && host != "" {
			_ = a.storage.Store(ctx, acmeStatusDir+"/"+host, []byte(err.Error()))
		}
	}
	return nil
}

// GetCertificate implements proxy.ACMESource: the host's certificate, or
// the CA's TLS-ALPN-01 challenge.
func (a *acmeCerts) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	ans := a.answering()
	if ans == nil {
		return nil, errNoACMECA
	}
	if slices.Contains(hello.SupportedProtos, acmez.ACMETLS1Protocol) {
		return ans.cfg.GetCertificate(hello)
	}
	ctx, cancel := context.WithTimeout(hello.Context(), 10*time.Second)
	defer cancel()
	return a.certificate(ctx, ans, hello.ServerName)
}

var errNoACMECA = errors.New("no ACME CA configured: start the agents with --acme-email ADDR (Let's Encrypt) or --acme-ca URL")

// HandleHTTPChallenge implements proxy.ACMESource: the CA's HTTP-01
// challenge.
func (a *acmeCerts) HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) bool {
	ans := a.answering()
	return ans != nil && ans.iss.HandleHTTPChallenge(w, r)
}

// Has implements proxy.ACMESource.
func (a *acmeCerts) Has(host string) bool {
	ans := a.answering()
	if ans == nil {
		return false
	}
	_, ok := a.storage.st.ACME(certmagic.StorageKeys.SiteCert(ans.iss.IssuerKey(), host))
	return ok
}

// certificate loads host's certificate from the state, again when its
// entry changes (a renewal); its key is opened here on a manager, asked
// of a manager on a worker. A failure is answered for failBackoff before
// the key is asked for again; a certificate still valid meanwhile is
// served.
func (a *acmeCerts) certificate(ctx context.Context, ans *acmeAnswer, host string) (*tls.Certificate, error) {
	iss := ans.iss.IssuerKey()
	e, ok := a.storage.st.ACME(certmagic.StorageKeys.SiteCert(iss, host))
	if !ok {
		return nil, fmt.Errorf("no certificate for %s yet: the leader asks the ACME CA (%s) for one", host, ans.ca)
	}
	a.mu.Lock()
	c := a.certs[host]
	if c == nil {
		c = &acmeCert{}
		a.certs[host] = c
	}
	a.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert != nil && c.modified.Equal(e.Modified) {
		return c.cert, nil
	}
	if c.failed != nil && time.Since(c.failedAt) < failBackoff {
		return a.stale(c)
	}
	keyPEM, err := a.storage.Load(ctx, certmagic.StorageKeys.SitePrivateKey(iss, host))
	if err == nil {
		var cert tls.Certificate
		if cert, err = tls.X509KeyPair(e.Value, keyPEM); err == nil {
			c.cert, c.modified, c.failed = &cert, e.Modified, nil
			return c.cert, nil
		}
	}
	c.failed, c.failedAt = fmt.Errorf("certificate for %s: %w", host, err), time.Now()
	return a.stale(c)
}

// stale is c's certificate while it is still valid, else its failure.
func (a *acmeCerts) stale(c *acmeCert) (*tls.Certificate, error) {
	if c.cert != nil && c.cert.Leaf != nil && time.Now().Before(c.cert.Leaf.NotAfter) {
		return c.cert, nil
	}
	return nil, c.failed
}

// State describes host's certificate for dev ingress: its end of validity
// and issuer; else "pending", with the last failure or what to configure.
func (a *acmeCerts) State(host string) string {
	ans := a.answering()
	if ans == nil {
		return "pending: " + errNoACMECA.Error()
	}
	e, ok := a.storage.st.ACME(certmagic.StorageKeys.SiteCert(ans.iss.IssuerKey(), host))
	if !ok {
		if f, ok := a.storage.st.ACME(acmeStatusDir + "/" + host); ok {
			return "pending, last attempt failed: " + string(f.Value)
		}
		return "pending"
	}
	block, _ := pem.Decode(e.Value)
	if block == nil {
		return "unreadable"
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "unreadable"
	}
	if time.Now().After(cert.NotAfter) {
		return "expired " + cert.NotAfter.UTC().Format(time.RFC3339)
	}
	return "valid until " + cert.NotAfter.UTC().Format(time.RFC3339) + " (" + cert.Issuer.CommonName + ")"
}

// Run obtains and renews the certificates of the hosts of tls: auto routes
// while this node leads (each term with a certmagic config, a context and
// a lock owner of its own, all stopped when leadership moves), once an
// ACME CA is configured. It writes the leader's flags as the cluster's
// ACME settings.
func (a *acmeCerts) Run(ctx context.Context, isLeader func() bool, hosts func() []string, changed func() <-chan struct{}) error {
	defer a.stop()
	var t *acmeTerm // while leading and configured
	defer func() { t.stop() }()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		ch := changed()
		c := a.config()
		switch {
		case !isLeader():
			t.stop()
			t = nil
		case a.flags.CA != "" && a.flags != c:
			// This leader's settings become the cluster's; the next pass
			// manages with them.
			if b, err := json.Marshal(a.flags); err == nil {
				if err := a.storage.Store(ctx, acmeConfigKey, b); err != nil && ctx.Err() == nil {
					a.log.Warn("record the cluster's ACME settings", "err", err)
				}
			}
		case c.CA == "":
			// Not configured: the routes stay pending (dev ingress says why).
		default:
			if t == nil {
				t = a.newTerm(ctx, c)
				a.log.Info("managing the certificates of tls: auto routes", "ca", c.CA)
			}
			t.manage(hosts(), a.log)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
		case <-tick.C:
		}
	}
}

// acmeTerm is one leadership term's management of the certificates: its
// certmagic config and cache, its context, and the hosts it manages.
type acmeTerm struct {
	ctx     context.Context
	cancel  context.CancelFunc
	cfg     *certmagic.Config
	cache   *certmagic.Cache
	managed []string
}

func (a *acmeCerts) newTerm(ctx context.Context, c acmeConfig) *acmeTerm {
	t := &acmeTerm{}
	t.ctx, t.cancel = context.WithCancel(ctx)
	t.cfg, _, t.cache = a.newConfig(a.storage.term(), c, a.renewEach)
	return t
}

// manage makes the term manage want: the hosts new to it, and no longer
// those that left.
func (t *acmeTerm) manage(want []string, log *slog.Logger) {
	var add []string
	for _, h := range want {
		if !slices.Contains(t.managed, h) {
			add = append(add, h)
		}
	}
	var gone []certmagic.SubjectIssuer
	t.managed = slices.DeleteFunc(t.managed, func(h string) bool {
		if slices.Contains(want, h) {
			return false
		}
		gone = append(gone, certmagic.SubjectIssuer{Subject: h})
		return true
	})
	if len(gone) > 0 {
		t.cache.RemoveManaged(gone)
	}
	if len(add) > 0 {
		if err := t.cfg.ManageAsync(t.ctx, add); err != nil {
			log.Warn("manage certificates", "hosts", add, "err", err)
		} else {
			t.managed = append(t.managed, add...)
		}
	}
}

// stop ends the term: its queued and retried work, and its cache's.
func (t *acmeTerm) stop() {
	if t == nil {
		return
	}
	t.cancel()
	t.cache.Stop()
}

// autoHosts are the hosts the router serves with tls: auto (proxy.HostTLS:
// one rule for the router and for what the leader manages).
func autoHosts(routes []proxy.Route) []string {
	var out []string
	for h, mode := range proxy.HostTLS(routes) {
		if mode == api.IngressTLSAuto {
			out = append(out, h)
		}
	}
	slices.Sort(out)
	return out
}

// newLockOwner names a lock holder: the node, and a random token per
// leadership term, so that two terms of one node never share a lock.
func newLockOwner(node string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return node + "/" + hex.EncodeToString(b)
}
