package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
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
	"github.com/devhq/dev/cluster/state"
	"github.com/devhq/dev/proxy"
)

// DefaultACMECA is the ACME directory tls: auto routes get certificates
// from unless --acme-ca says otherwise: Let's Encrypt's.
const DefaultACMECA = certmagic.LetsEncryptProductionCA

// acmeCerts serves the hosts of tls: auto routes (proxy.ACMESource). Every
// node serves the certificates of the state's ACME storage (acmeStorage)
// and answers the CA's challenges from it, whichever node the CA reaches;
// the leader alone obtains and renews them, with certmagic.
type acmeCerts struct {
	st        *state.Store
	storage   *acmeStorage
	ca        string
	email     string
	roots     *x509.CertPool // trusted for the CA's own HTTPS; nil: the system's
	renewEach time.Duration  // how often the leader looks for certificates to renew
	log       *slog.Logger

	// answer holds a certmagic config that manages nothing: it answers
	// challenges from the storage, and names the storage keys.
	answer    *certmagic.Config
	answerIss *certmagic.ACMEIssuer
	answerC   *certmagic.Cache

	mu    sync.Mutex           // guards certs
	certs map[string]*acmeCert // by host
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

func newACMECerts(st *state.Store, storage *acmeStorage, ca, email, rootFile string, fast bool, log *slog.Logger) (*acmeCerts, error) {
	a := &acmeCerts{st: st, storage: storage, ca: ca, email: email, renewEach: 10 * time.Minute,
		log: log.With("component", "acme"), certs: map[string]*acmeCert{}}
	if a.ca == "" {
		a.ca = DefaultACMECA
	}
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
	a.answer, a.answerIss, a.answerC = a.config(24 * time.Hour)
	return a, nil
}

// config makes a certmagic config over the state's storage with the
// cluster's ACME issuer, and its cache, which checks for renewals every
// renewEach.
func (a *acmeCerts) config(renewEach time.Duration) (*certmagic.Config, *certmagic.ACMEIssuer, *certmagic.Cache) {
	var cfg *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return cfg, nil },
		RenewCheckInterval: renewEach,
		OCSPCheckInterval:  24 * time.Hour,
		Logger:             zap.NewNop(),
	})
	cfg = certmagic.New(cache, certmagic.Config{
		Storage: a.storage,
		Logger:  zap.NewNop(),
		OCSP:    certmagic.OCSPConfig{DisableStapling: true},
		OnEvent: a.event,
	})
	iss := certmagic.NewACMEIssuer(cfg, certmagic.ACMEIssuer{
		CA: a.ca, TestCA: a.ca, Email: a.email, Agreed: true, TrustedRoots: a.roots, Logger: zap.NewNop(),
	})
	cfg.Issuers = []certmagic.Issuer{iss}
	return cfg, iss, cache
}

// event logs what certmagic reports of the certificates it manages.
func (a *acmeCerts) event(_ context.Context, event string, data map[string]any) error {
	switch event {
	case "cert_obtaining":
		a.log.Info("asking the ACME CA for a certificate", "host", data["identifier"], "ca", a.ca)
	case "cert_obtained":
		a.log.Info("certificate obtained", "host", data["identifier"], "renewal", data["renewal"])
	case "cert_failed":
		a.log.Warn("no certificate from the ACME CA (retried)", "host", data["identifier"], "renewal", data["renewal"], "err", data["error"])
	}
	return nil
}

// GetCertificate implements proxy.ACMESource: the host's certificate, or
// the CA's TLS-ALPN-01 challenge.
func (a *acmeCerts) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if slices.Contains(hello.SupportedProtos, acmez.ACMETLS1Protocol) {
		return a.answer.GetCertificate(hello)
	}
	ctx, cancel := context.WithTimeout(hello.Context(), 10*time.Second)
	defer cancel()
	return a.certificate(ctx, hello.ServerName)
}

// HandleHTTPChallenge implements proxy.ACMESource: the CA's HTTP-01
// challenge.
func (a *acmeCerts) HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) bool {
	return a.answerIss.HandleHTTPChallenge(w, r)
}

// Has implements proxy.ACMESource.
func (a *acmeCerts) Has(host string) bool {
	_, ok := a.st.ACME(a.certKey(host))
	return ok
}

func (a *acmeCerts) certKey(host string) string {
	return certmagic.StorageKeys.SiteCert(a.answerIss.IssuerKey(), host)
}

// certificate loads host's certificate from the state, again when its
// entry changes (a renewal); its key is opened here on a manager, asked
// of a manager on a worker. A failure is answered for failBackoff before
// the key is asked for again; a certificate still valid meanwhile is
// served.
func (a *acmeCerts) certificate(ctx context.Context, host string) (*tls.Certificate, error) {
	certKey := a.certKey(host)
	e, ok := a.st.ACME(certKey)
	if !ok {
		return nil, fmt.Errorf("no certificate for %s yet: the leader asks the ACME CA (%s) for one", host, a.ca)
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
	keyPEM, err := a.storage.Load(ctx, certmagic.StorageKeys.SitePrivateKey(a.answerIss.IssuerKey(), host))
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

// State describes host's certificate for dev ingress: "pending" while
// there is none, else its issuer and end of validity.
func (a *acmeCerts) State(host string) string {
	e, ok := a.st.ACME(a.certKey(host))
	if !ok {
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
// while this node leads, with a certmagic config of its own (stopped when
// leadership moves).
func (a *acmeCerts) Run(ctx context.Context, isLeader func() bool, hosts func() []string, changed func() <-chan struct{}) error {
	defer a.answerC.Stop()
	var (
		cfg     *certmagic.Config
		cache   *certmagic.Cache
		managed []string
	)
	stop := func() {
		if cache != nil {
			cache.Stop()
			cfg, cache, managed = nil, nil, nil
		}
	}
	defer stop()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		ch := changed()
		switch {
		case !isLeader():
			stop()
		default:
			if cfg == nil {
				cfg, _, cache = a.config(a.renewEach)
				a.log.Info("managing the certificates of tls: auto routes", "ca", a.ca)
			}
			var add []string
			for _, h := range hosts() {
				if !slices.Contains(managed, h) {
					add = append(add, h)
				}
			}
			if len(add) > 0 {
				if err := cfg.ManageAsync(ctx, add); err != nil {
					a.log.Warn("manage certificates", "hosts", add, "err", err)
				} else {
					managed = append(managed, add...)
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
		case <-tick.C:
		}
	}
}

// autoHosts are the hosts of the tls: auto routes among routes.
func autoHosts(routes []proxy.Route) []string {
	var out []string
	for _, r := range routes {
		if r.TLS == api.IngressTLSAuto && !slices.Contains(out, r.Host) {
			out = append(out, r.Host)
		}
	}
	slices.Sort(out)
	return out
}
