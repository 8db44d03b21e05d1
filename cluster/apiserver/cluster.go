package apiserver

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/pki"
	"github.com/devhq/dev/cluster/state"
)

func (srv *Server) registerCluster(mux *http.ServeMux) {
	handle(mux, "GET /v1/token", roleUser, srv.handleToken)
	handle(mux, "DELETE /v1/clients/{name}", roleAdmin, srv.handleRevokeClient)
	handle(mux, "POST /v1/token/rotate", roleUser, srv.handleRotateToken)
	handle(mux, "POST /v1/clients/renew", roleRead, srv.handleRenewClient)
	handle(mux, "GET /v1/revocations", roleRead, srv.handleRevocations)
	handle(mux, "POST /v1/join", rolePublic, srv.handleJoin)
	handle(mux, "GET /v1/dashboard", roleRead, srv.handleDashboard) // a login link to a read-only dashboard
}

func (srv *Server) handleJoin(w http.ResponseWriter, r *http.Request) {
	var req api.JoinRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, invalid("decode join request: %v", err))
		return
	}
	if !srv.r.IsLeader() {
		if srv.opts.Peers == nil {
			writeError(w, fmt.Errorf("join: this node cannot reach the leader"))
			return
		}
		addr, err := srv.mgr.LeaderAPI()
		if err != nil {
			writeError(w, err)
			return
		}
		res, err := srv.opts.Peers.Join(r.Context(), addr, req)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, res)
		return
	}
	// A leader just elected may still be replaying its log: admit against
	// the whole state (the name check must see every node).
	wctx, cancel := context.WithTimeout(r.Context(), stateWait)
	err := srv.r.WaitReady(wctx)
	cancel()
	if err != nil {
		writeError(w, &httpError{http.StatusServiceUnavailable, "unavailable", fmt.Errorf("join: the leader's state is not ready: %w", err)})
		return
	}
	res, err := srv.admit(r.Context(), req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, res)
}

// admit checks a join request against the join secrets and signs the
// node's certificate: a node that presents the manager token's secret is
// a manager, and gets the data key too.
func (srv *Server) admit(ctx context.Context, req api.JoinRequest) (api.JoinResponse, error) {
	cs, err := srv.clusterSecrets("join")
	if err != nil {
		return api.JoinResponse{}, err
	}
	ci, ca := cs.info, cs.ca
	worker := pki.ProofMatches(req.Proof, cs.secrets.WorkerSecret, req.Name, req.CSR)
	manager := pki.ProofMatches(req.Proof, cs.secrets.ManagerSecret, req.Name, req.CSR)
	if !worker && !manager {
		return api.JoinResponse{}, &httpError{http.StatusForbidden, "forbidden",
			errors.New("join refused: the token's secret is wrong; get the current one with `dev token` (or `dev token --manager`) on a manager")}
	}
	if !manager && !cs.info.Legacy() && srv.r.State().MayVote(req.Name) {
		return api.JoinResponse{}, conflict("join refused: %s is a manager of this cluster; join with the manager token, or remove it first (`dev node rm %s`) to join it as a worker", req.Name, req.Name)
	}
	if n, ok := srv.r.State().Node(req.Name); ok && n.Status == api.NodeReady {
		return api.JoinResponse{}, conflict("join refused: a ready node named %s is already in the cluster; pick another --node-name", req.Name)
	}
	var ips []net.IP
	for _, s := range req.IPs {
		if a, err := netip.ParseAddr(s); err == nil {
			ips = append(ips, net.IP(a.AsSlice()))
		}
	}
	if err := srv.waitPastRevocation(ctx, api.CertNode, req.Name); err != nil {
		return api.JoinResponse{}, fmt.Errorf("join: %w", err)
	}
	cert, err := ca.SignFor(req.CSR, req.Name, pki.RoleNode, ips, nil, srv.certLifetime())
	if err != nil {
		return api.JoinResponse{}, invalid("join: %v", err)
	}
	// Admitted: it may become a raft member (the leader's own write; this
	// runs on the leader).
	if _, err := srv.r.Apply(ctx, &state.Admit{Name: req.Name, At: time.Now().UTC(), Manager: manager}); err != nil {
		return api.JoinResponse{}, fmt.Errorf("join: record the admission: %w", err)
	}
	var gossip []string
	if srv.opts.Members != nil {
		for _, mb := range srv.opts.Members() {
			if mb.Status == "alive" && mb.Gossip != "" {
				gossip = append(gossip, mb.Gossip)
			}
		}
	}
	sort.Strings(gossip)
	res := api.JoinResponse{ClusterID: ci.ID, Cert: cert, CA: ci.TrustedCAs(), GossipKey: ci.GossipKey, Gossip: gossip, Label: ci.Label}
	if manager {
		// Sealed to the joiner's key: a node that relayed the join cannot
		// read it.
		if res.DataKey, err = pki.SealToCSR(req.CSR, srv.opts.DataKey.Bytes()); err != nil {
			return api.JoinResponse{}, invalid("join: %v", err)
		}
	}
	srv.log.Info("admitted node", "node", req.Name, "manager", manager)
	return res, nil
}

// unsealed is the cluster's record with its secrets opened: what only a
// manager can have.
type unsealed struct {
	info    state.ClusterInfo
	secrets pki.ClusterSecrets
	ca      *pki.CA // the signer: the new CA during a rotation
	// fingerprint is the cluster CA's, which join tokens pin: the old
	// one until a rotation is done (nodes present both meanwhile).
	fingerprint string
}

// clusterSecrets opens the cluster's secrets with this node's data key;
// what names the caller in the error. A worker has no data key: it is
// told where to go instead.
func (srv *Server) clusterSecrets(what string) (unsealed, error) {
	ci, ok := srv.r.State().Cluster()
	if !ok {
		return unsealed{}, &httpError{http.StatusServiceUnavailable, "unavailable", fmt.Errorf("%s: the cluster is still starting; retry in a moment", what)}
	}
	u := unsealed{info: ci}
	switch {
	case ci.Legacy():
		u.secrets = pki.ClusterSecrets{CAKeyPEM: ci.CAKeyPEM, WorkerSecret: ci.JoinSecret}
	case srv.opts.DataKey == nil:
		return unsealed{}, srv.errNoDataKey(what)
	default:
		var err error
		if u.secrets, err = srv.opts.DataKey.OpenClusterSecrets(ci.Sealed); err != nil {
			return unsealed{}, fmt.Errorf("%s: %w", what, err)
		}
	}
	ca, err := pki.ParseCA(ci.CACertPEM, u.secrets.CAKeyPEM)
	if err != nil {
		return unsealed{}, fmt.Errorf("%s: %w", what, err)
	}
	u.ca, u.fingerprint = ca, ca.Fingerprint()
	if ci.Rotation != nil {
		// Everything is signed by the new CA from the rotation's start.
		if u.ca, err = srv.nextCA(ci); err != nil {
			return unsealed{}, fmt.Errorf("%s: %w", what, err)
		}
	}
	return u, nil
}

// errNoDataKey answers what a worker cannot do: anything that needs the
// data key (signing, tokens, sealing and opening secrets).
func (srv *Server) errNoDataKey(what string) error {
	return &httpError{http.StatusForbidden, "forbidden", fmt.Errorf(
		"%s: node %s is a worker and holds none of the cluster's secrets; run it on a manager (the node that created the cluster, or one joined with `dev token --manager`; the leader is one)", what, srv.opts.Node)}
}

// token is the join token of the worker secret, or of the manager one.
func (u unsealed) token(manager bool) (string, error) {
	secret := u.secrets.WorkerSecret
	if manager {
		if u.info.Legacy() {
			return "", errNoManagerToken()
		}
		secret = u.secrets.ManagerSecret
	}
	return u.tokenOf(secret), nil
}

func (u unsealed) tokenOf(secret string) string {
	return pki.Token{Fingerprint: u.fingerprint, Secret: secret}.String()
}

// errNoManagerToken answers a manager token asked of a Legacy cluster.
func errNoManagerToken() error {
	return conflict("this cluster was created by a dev without manager tokens: any node that joins may become a voter; use `dev token`")
}

// waitPastRevocation holds an issuer until a certificate of kind for name
// signed now is past name's revocation, if any: certificates carry whole
// seconds (state.Store.RevokedUntil), so this is at most a second, unless
// the revoking node's clock is ahead of this one's.
func (srv *Server) waitPastRevocation(ctx context.Context, kind, name string) error {
	until, ok := srv.r.State().RevokedUntil(kind, name)
	if !ok {
		return nil
	}
	d := time.Until(until)
	switch {
	case d <= 0:
		return nil
	case d > 5*time.Second:
		return fmt.Errorf("%s %s was revoked at %s, %s ahead of this node's clock: check the nodes' clocks", kind, name, until.Format(time.RFC3339), d.Round(time.Second))
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// handleRevokeClient is `dev token --revoke NAME`: every client bundle
// issued to name so far is refused from now on, on every node.
func (srv *Server) handleRevokeClient(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	idx, err := srv.mgr.Apply(r.Context(), state.RevokeNow(api.CertClient, name))
	if err != nil {
		writeError(w, err)
		return
	}
	srv.log.Info("revoked client bundles", "client", name)
	writeJSON(w, api.WriteResult{Index: idx})
}

// handleRotateToken is `dev token --rotate [--manager]`: a new join secret
// for the worker (or manager) token, so that the token handed out before
// no longer admits anyone. Nodes that joined keep their certificates.
func (srv *Server) handleRotateToken(w http.ResponseWriter, r *http.Request) {
	var req api.RotateTokenRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil && !errors.Is(err, io.EOF) { // capped by handle (maxJSONBody)
		writeError(w, invalid("decode rotate request: %v", err))
		return
	}
	u, err := srv.clusterSecrets("rotate token")
	if err != nil {
		writeError(w, err)
		return
	}
	secret, err := pki.NewSecret()
	if err != nil {
		writeError(w, err)
		return
	}
	var cmd state.Command
	switch {
	case u.info.Legacy() && req.Manager:
		writeError(w, errNoManagerToken())
		return
	case u.info.Legacy():
		cmd = &state.RotateJoinSecret{Secret: secret}
	default:
		next := u.secrets
		if req.Manager {
			next.ManagerSecret = secret
		} else {
			next.WorkerSecret = secret
		}
		sealed, err := srv.opts.DataKey.SealClusterSecrets(next)
		if err != nil {
			writeError(w, err)
			return
		}
		cmd = &state.SealClusterSecrets{Sealed: sealed, Prev: u.info.Sealed}
	}
	if _, err := srv.mgr.Apply(r.Context(), cmd); err != nil {
		writeError(w, err)
		return
	}
	srv.log.Info("rotated a join secret", "manager", req.Manager)
	writeJSON(w, api.TokenResponse{Token: u.tokenOf(secret), Manager: req.Manager})
}

// handleRevocations lists the revocation list.
func (srv *Server) handleRevocations(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, srv.r.State().Revocations())
}

// handleToken prints the join token, and with ?client=NAME a client
// certificate bundle for a remote CLI.
func (srv *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	u, err := srv.clusterSecrets("token")
	if err != nil {
		writeError(w, err)
		return
	}
	ca := u.ca
	res := api.TokenResponse{Manager: r.URL.Query().Get("manager") == "1"}
	if res.Token, err = u.token(res.Manager); err != nil {
		writeError(w, err)
		return
	}
	if name := r.URL.Query().Get("client"); name != "" {
		role := pki.RoleAdmin
		if r.URL.Query().Get("role") == pki.RoleRead {
			role = pki.RoleRead
		}
		var lifetime time.Duration
		if v := r.URL.Query().Get("valid_for"); v != "" {
			if lifetime, err = time.ParseDuration(v); err != nil || lifetime < minClientLifetime || lifetime > maxClientLifetime {
				writeError(w, invalid("client bundle: valid for %q: want a duration from %s to %s (e.g. 720h)", v, minClientLifetime, maxClientLifetime))
				return
			}
		}
		if err := srv.waitPastRevocation(r.Context(), api.CertClient, name); err != nil {
			writeError(w, err)
			return
		}
		if res.Bundle, err = ca.ClientBundle(name, role, lifetime); err != nil {
			writeError(w, err)
			return
		}
	}
	writeJSON(w, res)
}

// The life a client bundle may be given (dev token --client --valid-for).
const (
	minClientLifetime = 30 * time.Second
	maxClientLifetime = 5 * 365 * 24 * time.Hour
)

// handleRenewClient signs a new certificate for the calling client bundle,
// for the key of the request's CSR: its name and role are the ones of the
// certificate it calls with (a read bundle gets a read one), which passed
// the revocation list at the handshake and does again now, and it lasts as
// long as that one did. The CLI asks at 2/3 of its bundle's life.
func (srv *Server) handleRenewClient(w http.ResponseWriter, r *http.Request) {
	srv.renew(w, r, "a client bundle", func(c Caller, leaf *x509.Certificate) (string, []net.IP, time.Duration, bool) {
		life := min(max(leaf.NotAfter.Sub(pki.IssuedAt(leaf)), minClientLifetime), maxClientLifetime)
		return c.Role, nil, life, c.Role == pki.RoleAdmin || c.Role == pki.RoleRead
	})
}

// handleDashboard answers GET /v1/dashboard with this node's dashboard
// address and a login link: whoever may use the API may use the dashboard.
func (srv *Server) handleDashboard(w http.ResponseWriter, r *http.Request) {
	if srv.opts.Dashboard == nil {
		writeError(w, notFound("this node serves no dashboard"))
		return
	}
	info, err := srv.opts.Dashboard()
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, info)
}
