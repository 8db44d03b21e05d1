// Package peers is how one node calls another node's API over mutual TLS:
// forward a write or a heartbeat to the leader, relay a join, fetch an image,
// remove a project's volumes. The node-only routes it calls are served by
// cluster/apiserver; the agent and the manager use this package directly.
package peers

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// The node-only routes (cluster/api/requests.go lists them with the rest).
const (
	PathApply       = "/v1/internal/apply"
	PathRegister    = "/v1/internal/register"
	PathImage       = "/v1/internal/image"
	PathVolumes     = "/v1/internal/volumes/"
	PathRenew       = "/v1/internal/renew"
	PathFiles       = "/v1/internal/files"
	PathGossip      = "/v1/internal/gossip-key"
	PathIngressCert = "/v1/internal/ingress-cert"
	PathACMEKey     = "/v1/internal/acme-key"
)

// ApplyRequest is a command forwarded to the leader: the raft entry bytes
// (a type byte and the encoded command, state.Encode).
type ApplyRequest struct {
	Entry []byte `json:"entry"`
}

// Peers holds one client per peer address, over mutual TLS with this
// node's certificate.
type Peers struct {
	tls     *tls.Config
	mu      sync.Mutex
	clients map[string]*api.HTTPClient
}

// New returns the peers of a node whose client side of mutual TLS is tlsConf.
func New(tlsConf *tls.Config) *Peers {
	return &Peers{tls: tlsConf, clients: map[string]*api.HTTPClient{}}
}

// Client returns the client for a node's API address ("ip:port").
func (p *Peers) Client(addr string) (*api.HTTPClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clients[addr]; ok {
		return c, nil
	}
	c, err := api.NewClient("tcp://"+addr, p.tls)
	if err != nil {
		return nil, err
	}
	p.clients[addr] = c
	return c, nil
}

func (p *Peers) do(ctx context.Context, method, addr, path string, body, out any) error {
	c, err := p.Client(addr)
	if err != nil {
		return err
	}
	return c.Do(ctx, method, path, body, out)
}

// Apply forwards a command to the leader at addr and returns the index it
// was applied at.
func (p *Peers) Apply(ctx context.Context, addr string, cmd state.Command) (uint64, error) {
	entry, err := state.Encode(cmd)
	if err != nil {
		return 0, err
	}
	var res api.WriteResult
	if err := p.do(ctx, http.MethodPost, addr, PathApply, ApplyRequest{Entry: entry}, &res); err != nil {
		return 0, fmt.Errorf("forward write to leader %s: %w", addr, err)
	}
	return res.Index, nil
}

// Register sends a node's report (its heartbeat) to the leader at addr.
func (p *Peers) Register(ctx context.Context, addr string, n api.Node) (api.Node, error) {
	var out api.Node
	if err := p.do(ctx, http.MethodPost, addr, PathRegister, n, &out); err != nil {
		return api.Node{}, fmt.Errorf("register with leader %s: %w", addr, err)
	}
	return out, nil
}

// Renew asks the node at addr to sign a new certificate for the calling
// node (its name from the certificate it calls with) for the key of csr.
func (p *Peers) Renew(ctx context.Context, addr string, csr []byte) (api.RenewResponse, error) {
	var res api.RenewResponse
	if err := p.do(ctx, http.MethodPost, addr, PathRenew, api.RenewRequest{CSR: csr}, &res); err != nil {
		return res, fmt.Errorf("renew certificate at %s: %w", addr, err)
	}
	return res, nil
}

// OpenFiles asks the manager at addr for the opened secrets and configs of
// a pod this node runs: contents by digest.
func (p *Peers) OpenFiles(ctx context.Context, addr, pod string) (map[string][]byte, error) {
	var res api.FilesResponse
	if err := p.do(ctx, http.MethodGet, addr, PathFiles+"?pod="+url.QueryEscape(pod), nil, &res); err != nil {
		return nil, fmt.Errorf("get secrets and configs from %s: %w", addr, err)
	}
	return res.Files, nil
}

// GossipKey asks the node at addr for the cluster's gossip key as its
// state holds it, over mutual TLS (a revoked node gets none).
func (p *Peers) GossipKey(ctx context.Context, addr string) (api.GossipKeyResponse, error) {
	var res api.GossipKeyResponse
	if err := p.do(ctx, http.MethodGet, addr, PathGossip, nil, &res); err != nil {
		return res, fmt.Errorf("get the gossip key from %s: %w", addr, err)
	}
	return res, nil
}

// IngressCert asks the manager at addr for a local HTTPS certificate for
// host, for the key of csr.
func (p *Peers) IngressCert(ctx context.Context, addr, host string, csr []byte) (api.IngressCertResponse, error) {
	var res api.IngressCertResponse
	if err := p.do(ctx, http.MethodPost, addr, PathIngressCert, api.IngressCertRequest{Host: host, CSR: csr}, &res); err != nil {
		return res, fmt.Errorf("get a certificate for %s from %s: %w", host, addr, err)
	}
	return res, nil
}

// ACMEKey asks the manager at addr for the private key of a certificate
// of the ACME storage at key, opened.
func (p *Peers) ACMEKey(ctx context.Context, addr, key string) ([]byte, error) {
	var res api.ACMEKeyResponse
	if err := p.do(ctx, http.MethodPost, addr, PathACMEKey, api.ACMEKeyRequest{Key: key}, &res); err != nil {
		return nil, fmt.Errorf("get the key of %s from %s: %w", key, addr, err)
	}
	return res.KeyPEM, nil
}

// Join relays a join request to the leader at addr.
func (p *Peers) Join(ctx context.Context, addr string, req api.JoinRequest) (api.JoinResponse, error) {
	var res api.JoinResponse
	err := p.do(ctx, http.MethodPost, addr, "/v1/join", req, &res)
	return res, err
}

// RemoveVolumes removes a project's volumes on the node at addr.
func (p *Peers) RemoveVolumes(ctx context.Context, addr, project string) error {
	return p.do(ctx, http.MethodDelete, addr, PathVolumes+url.PathEscape(project), nil, nil)
}

// Image streams an image (docker save) from the node at addr.
func (p *Peers) Image(ctx context.Context, addr, ref string) (io.ReadCloser, error) {
	c, err := p.Client(addr)
	if err != nil {
		return nil, err
	}
	return c.Stream(ctx, http.MethodGet, PathImage+"?ref="+url.QueryEscape(ref))
}

// ImageLoader loads an image archive into this node's engine, refusing
// one that is not exactly the image want.
type ImageLoader interface {
	LoadImage(ctx context.Context, r io.Reader, want string) error
}

// Images fetches images this node lacks from the nodes that have them:
// the cluster has no registry, so an image built on one node travels to the
// others this way.
type Images struct {
	Peers *Peers
	Self  string
	// Nodes lists the cluster's nodes (the replicated state's).
	Nodes  func() []api.Node
	Loader ImageLoader
	Log    *slog.Logger
}

// FetchImage asks the other ready nodes for an image, one after another,
// and loads the first copy found into this node's engine.
func (im Images) FetchImage(ctx context.Context, ref string) error {
	if im.Peers == nil {
		return fmt.Errorf("fetch image %s: no peers", ref)
	}
	var errs []error
	for _, n := range im.Nodes() {
		if n.Name == im.Self || n.Status != api.NodeReady || n.APIAddr == "" {
			continue
		}
		body, err := im.Peers.Image(ctx, n.APIAddr, ref)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		err = im.Loader.LoadImage(ctx, body, ref)
		body.Close()
		if err == nil {
			if im.Log != nil {
				im.Log.Info("fetched image from peer", "image", ref, "from", n.Name)
			}
			return nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return fmt.Errorf("fetch image %s: no other ready node", ref)
	}
	return fmt.Errorf("fetch image %s from peers: %w", ref, errors.Join(errs...))
}
