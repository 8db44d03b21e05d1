package node

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/pki"
	"github.com/devhq/dev/proxy"
)

// localCerts gives the ingress router its certificates for tls: local
// routes: a key made on this node for each host, and a certificate for it
// from the local HTTPS CA, which only managers can open (the leader signs
// it, for a host a route names). Kept in memory, asked for again at 2/3 of
// its life.
type localCerts struct {
	issue func(ctx context.Context, host string, csr []byte) (api.IngressCertResponse, error)

	mu    sync.Mutex
	hosts map[string]*hostCert
}

// hostCert is one host's certificate; its mutex is held while it is asked
// for, so that many handshakes make one request.
type hostCert struct {
	mu      sync.Mutex
	cert    *tls.Certificate
	renewAt time.Time
	// failed and failedAt keep the last failure for failBackoff: the
	// handshakes meanwhile get it at once, not a request each.
	failed   error
	failedAt time.Time
}

// failBackoff is how long a failure to get a host's certificate is
// answered before it is asked for again.
const failBackoff = 5 * time.Second

var _ proxy.CertSource = (*localCerts)(nil)

func newLocalCerts(issue func(ctx context.Context, host string, csr []byte) (api.IngressCertResponse, error)) *localCerts {
	return &localCerts{issue: issue, hosts: map[string]*hostCert{}}
}

// Certificate implements proxy.CertSource.
func (c *localCerts) Certificate(ctx context.Context, host string) (*tls.Certificate, error) {
	c.mu.Lock()
	h := c.hosts[host]
	if h == nil {
		h = &hostCert{}
		c.hosts[host] = h
	}
	c.mu.Unlock()

	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cert != nil && time.Now().Before(h.renewAt) {
		return h.cert, nil
	}
	var err error
	if h.failed != nil && time.Since(h.failedAt) < failBackoff {
		err = h.failed
	} else {
		var cert *tls.Certificate
		var renewAt time.Time
		if cert, renewAt, err = c.fetch(ctx, host); err == nil {
			h.cert, h.renewAt, h.failed = cert, renewAt, nil
			return cert, nil
		}
		h.failed, h.failedAt = err, time.Now()
	}
	if h.cert != nil && time.Now().Before(h.cert.Leaf.NotAfter) {
		return h.cert, nil // still valid: asked for again after the backoff
	}
	return nil, err
}

func (c *localCerts) fetch(ctx context.Context, host string) (*tls.Certificate, time.Time, error) {
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(host)
	if err != nil {
		return nil, time.Time{}, err
	}
	res, err := c.issue(ctx, host, csrPEM)
	if err != nil {
		return nil, time.Time{}, err
	}
	cert, err := tls.X509KeyPair(append(res.Cert, res.CA...), keyPEM) // sets Leaf
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("certificate for %s: %w", host, err)
	}
	return &cert, pki.RenewAt(cert.Leaf), nil
}
