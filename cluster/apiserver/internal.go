package apiserver

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/peers"
	"github.com/devhq/dev/cluster/pki"
	"github.com/devhq/dev/cluster/raftstore"
	"github.com/devhq/dev/cluster/state"
)

// The node-only routes, which other nodes call through cluster/peers: a
// forwarded write, a heartbeat, an image, a project's volumes. Routes mounts
// them behind nodeOnly.
func (srv *Server) registerInternal(mux *http.ServeMux) {
	handle(mux, "POST "+peers.PathApply, roleNode, srv.handleInternalApply)
	handle(mux, "POST "+peers.PathRegister, roleNode, srv.handleInternalRegister)
	handle(mux, "DELETE "+peers.PathVolumes+"{project}", roleNode, srv.handleInternalVolumes)
	handle(mux, "GET "+peers.PathImage, roleNode, srv.handleImage)
	handle(mux, "POST "+peers.PathRenew, roleNode, srv.handleRenew)
	handle(mux, "GET "+peers.PathFiles, roleNode, srv.handleInternalFiles)
	handle(mux, "GET "+peers.PathGossip, roleNode, srv.handleGossipKey)
	srv.registerIngressInternal(mux)
}

// handleGossipKey gives a node the cluster's gossip key as this node's
// state holds it: a node that was down through a rotation, or that joined
// with the key it replaced, gets in again with it. Every node holds the
// key; the handshake kept revoked nodes out.
func (srv *Server) handleGossipKey(w http.ResponseWriter, r *http.Request) {
	ci, ok := srv.r.State().Cluster()
	if !ok {
		writeError(w, &httpError{http.StatusServiceUnavailable, "unavailable", fmt.Errorf("the cluster's record has not reached node %s yet", srv.opts.Node)})
		return
	}
	writeJSON(w, api.GossipKeyResponse{Key: ci.GossipKey, Gen: ci.GossipKeyGen})
}

// handleRenew signs a new certificate for the calling node: its name and
// addresses are the certificate's it calls with, whose handshake passed the
// revocation list (a removed node gets none), and its life the cluster's.
func (srv *Server) handleRenew(w http.ResponseWriter, r *http.Request) {
	srv.renew(w, r, "a node", func(c Caller, leaf *x509.Certificate) (role string, ips []net.IP, life time.Duration, ok bool) {
		return pki.RoleNode, leaf.IPAddresses, srv.certLifetime(), true
	})
}

// renew signs a new certificate for the caller's own certificate, for the
// key of the request's CSR, with what grant says of it (nothing when !ok:
// the caller may not renew here). The certificate must have come over
// TLS, and is checked against the revocation list again now: it may have
// been revoked while its request came in.
func (srv *Server) renew(w http.ResponseWriter, r *http.Request, who string,
	grant func(c Caller, leaf *x509.Certificate) (role string, ips []net.IP, life time.Duration, ok bool)) {
	var req api.RenewRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, invalid("decode renew request: %v", err))
		return
	}
	c, _ := callerFrom(r.Context())
	leaf := pki.VerifiedLeaf(r.TLS)
	if leaf == nil {
		writeError(w, invalid("renew: %s renews over TLS with the certificate it renews", who))
		return
	}
	role, ips, life, ok := grant(c, leaf)
	if !ok {
		writeError(w, invalid("renew: only %s renews itself here, with the certificate it renews", who))
		return
	}
	if pki.RevokedFunc(srv.r.State().Revoked).Of(pki.Peer{Name: c.Name, Role: role}, leaf) {
		writeError(w, &httpError{http.StatusForbidden, "forbidden", fmt.Errorf("renew: the certificate of %s is revoked", c.Name)})
		return
	}
	u, err := srv.clusterSecrets("renew")
	if err != nil {
		writeError(w, err)
		return
	}
	cert, err := u.ca.SignFor(req.CSR, c.Name, role, ips, nil, life)
	if err != nil {
		writeError(w, invalid("renew: %v", err))
		return
	}
	srv.log.Info("renewed a certificate", "name", c.Name, "role", role)
	writeJSON(w, api.RenewResponse{Cert: cert, CA: u.info.TrustedCAs()})
}

// nodeOnly refuses every caller but a node before a route is matched: no
// client role may learn which node-only routes exist.
func nodeOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, _ := callerFrom(r.Context()); !isNode(c.Role) {
			writeError(w, &httpError{http.StatusForbidden, "forbidden",
				fmt.Errorf("%s %s is a node-to-node route; %s", r.Method, r.URL.Path, c)})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// handleInternalApply applies a write a follower forwarded, if the calling
// node may make it (mayForward).
func (srv *Server) handleInternalApply(w http.ResponseWriter, r *http.Request) {
	var req peers.ApplyRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil { // capped by handle (maxJSONBody)
		writeError(w, invalid("decode forwarded command: %v", err))
		return
	}
	cmd, err := state.Decode(req.Entry)
	if err != nil {
		writeError(w, invalid("%v", err))
		return
	}
	c, _ := callerFrom(r.Context())
	if err := mayForward(srv.r.State(), c, cmd); err != nil {
		writeError(w, err)
		return
	}
	if rv, ok := cmd.(*state.Revoke); ok {
		// A revocation's time is the leader's, the clock that issues
		// certificates (and waits past revocations): a follower's clock
		// ahead or behind would refuse new certificates or spare old ones.
		rv.Revocation.At = time.Now().UTC()
	}
	idx, err := srv.r.Apply(r.Context(), cmd)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, api.WriteResult{Index: idx})
}

// mayForward says whether node may forward cmd to the leader. A node
// forwards two kinds of writes: its users' (a project applied, deleted,
// scaled or rolled back through its API, validated there and again here),
// and its agent's records of itself (its own pods' status and `dev stop`,
// its pods that are gone, its own node record). What the leader's own loops write
// (placements, new pods, deletions, membership) no node may send: a node
// certificate must not rewrite the cluster.
func mayForward(st *state.Store, caller Caller, cmd state.Command) error {
	node := caller.Name
	forbidden := func(format string, a ...any) error {
		return &httpError{http.StatusForbidden, "forbidden", fmt.Errorf("forwarded write from node %s: "+format, append([]any{node}, a...)...)}
	}
	ci, _ := st.Cluster()
	// usersWrite checks a write a node relays for its users: a worker
	// relays none (it makes only its own, below, and its own revocation
	// as it leaves).
	usersWrite := func() error {
		if caller.Role == roleWorker {
			return forbidden("%s is a worker: make users' changes on a manager (`dev nodes` shows the voters; the leader is one)", node)
		}
		return nil
	}
	switch c := cmd.(type) {
	case *state.ApplyProject:
		if err := usersWrite(); err != nil {
			return err
		}
		if err := validateProject(c.Project.Name, &c.Project); err != nil {
			return err
		}
		if !ci.Legacy() {
			for _, s := range c.Project.Services {
				for _, m := range s.Files() {
					if m.Sealed == nil {
						return forbidden("service %s: %s is not sealed, and this cluster keeps secrets sealed (upgrade dev on node %s)", s.Name, m.Name, node)
					}
				}
			}
		}
	case *state.Revoke:
		if c.Revocation.Kind == api.CertNode && c.Revocation.Name == node {
			return nil // its own, as it leaves
		}
		return usersWrite()
	case *state.DeleteProject, *state.Scale, *state.RollbackRC, *state.CordonNode, *state.LabelNode:
		// the state machine checks them as it applies them
		return usersWrite()
	case *state.RotateJoinSecret:
		if err := usersWrite(); err != nil {
			return err
		}
		if !ci.Legacy() {
			return forbidden("the join secrets of this cluster are sealed: a rotation writes them sealed")
		}
	case *state.SealClusterSecrets:
		// a rotation made on a manager that does not lead: only a manager
		// can seal, and the state machine refuses a stale one (Prev)
		if !st.MayVote(node) {
			return forbidden("only a manager rotates the join secrets")
		}

	case *state.StartCARotation:
		// a manager makes the new CA (dev ca rotate on it)
		if err := usersWrite(); err != nil {
			return err
		}
		if !st.MayVote(node) {
			return forbidden("only a manager rotates the CA")
		}
	case *state.MoveToCA:
		// a node records its own move, once its certificate of the new CA
		// is in place (node.followCA)
		if c.Node != node {
			return forbidden("the move of node %s to the new CA", c.Node)
		}
	case *state.SetPodStopped:
		if p, ok := st.Pod(c.Name); ok && p.Node != node {
			return forbidden("pod %s runs on node %s (dev stop is applied by the node that runs the pod)", c.Name, p.Node)
		}
	case *state.PodStatus:
		if c.Node != node {
			return forbidden("status of pod %s reported for node %s", c.Name, c.Node)
		}
	case *state.DeletePods:
		for _, name := range c.Names {
			if p, ok := st.Pod(name); ok && p.Node != node {
				return forbidden("pod %s runs on node %s", name, p.Node)
			}
		}
	case *state.PutNode:
		if c.Node.Name != node {
			return forbidden("record of node %s", c.Node.Name)
		}
	default:
		return forbidden("%T is written by the leader itself", cmd)
	}
	return nil
}

// handleInternalRegister takes a node's report (its heartbeat) on the
// leader.
func (srv *Server) handleInternalRegister(w http.ResponseWriter, r *http.Request) {
	var n api.Node
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&n); err != nil {
		writeError(w, invalid("decode node: %v", err))
		return
	}
	// A node registers itself (its agent, through its own manager) and no
	// other: a node certificate must not overwrite another node's record.
	if c, _ := callerFrom(r.Context()); c.Name != n.Name {
		writeError(w, &httpError{http.StatusForbidden, "forbidden",
			fmt.Errorf("register node %s: the certificate of %q may register only itself", n.Name, c.Name)})
		return
	}
	if !srv.r.IsLeader() {
		writeError(w, raftstore.ErrNotLeader)
		return
	}
	got, err := srv.mgr.RegisterNode(r.Context(), n)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, got)
}

func (srv *Server) handleInternalVolumes(w http.ResponseWriter, r *http.Request) {
	if err := srv.local.RemoveVolumes(r.Context(), r.PathValue("project")); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, api.WriteResult{Index: srv.r.State().Index()})
}

// handleImage streams an image from this node's engine (docker save), for a
// node that needs it and has no registry to pull from.
func (srv *Server) handleImage(w http.ResponseWriter, r *http.Request) {
	ref := r.URL.Query().Get("ref")
	rc, err := srv.local.SaveImage(r.Context(), ref)
	if err != nil {
		writeError(w, notFound("image %s: %v", ref, err))
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/x-tar")
	_, _ = io.Copy(w, rc)
}

// nodeClient returns a client for another node's API, to relay a request
// to the node that runs a pod.
func (srv *Server) nodeClient(node string) (*api.HTTPClient, error) {
	if srv.opts.Peers == nil {
		return nil, fmt.Errorf("the pod runs on node %s, which this node cannot reach", node)
	}
	n, ok := srv.r.State().Node(node)
	if !ok || n.APIAddr == "" {
		return nil, notFound("node %s is unknown or has no API address", node)
	}
	return srv.opts.Peers.Client(n.APIAddr)
}

// placedPod returns a pod that exists, is not being removed and is bound to
// a node; what names the operation in errors ("exec in", "stop").
func (srv *Server) placedPod(what, name string) (api.Pod, error) {
	pod, ok := srv.r.State().Pod(name)
	switch {
	case !ok:
		return pod, notFound("no pod %s", name)
	case pod.Deleting:
		return pod, conflict("%s %s: the pod is being removed", what, name)
	case pod.Node == "":
		return pod, conflict("%s %s: the pod is not scheduled yet (%s)", what, name, pod.Status.Message)
	}
	return pod, nil
}
