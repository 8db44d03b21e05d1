package manager

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sort"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/pki"
	"github.com/devhq/dev/cluster/state"
)

// authenticate puts the caller in the request's context: on TLS, the
// name and role of its verified cluster certificate (none: only the join
// route will take it); on the local unix socket (no TLS), admin, which the
// socket's file mode guards. Each route checks the role (auth.go).
func authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := Caller{Name: "local", Role: roleAdmin}
		if r.TLS != nil {
			c = Caller{}
			if len(r.TLS.VerifiedChains) > 0 {
				peer, err := pki.PeerOf(r.TLS.VerifiedChains[0][0])
				if err != nil {
					writeError(w, &httpError{http.StatusForbidden, "forbidden", err})
					return
				}
				c = Caller{Name: peer.Name, Role: peer.Role}
			} else if r.URL.Path != "/v1/join" {
				writeError(w, &httpError{http.StatusUnauthorized, "unauthorized",
					errors.New("a client certificate of this cluster is required (dev token --client makes one)")})
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(withCaller(r.Context(), c)))
	})
}

func (m *Manager) handleJoin(w http.ResponseWriter, r *http.Request) {
	var req api.JoinRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, invalid("decode join request: %v", err))
		return
	}
	if !m.r.IsLeader() {
		if m.peers == nil {
			writeError(w, fmt.Errorf("join: this node cannot reach the leader"))
			return
		}
		addr, err := m.leaderAPI()
		if err != nil {
			writeError(w, err)
			return
		}
		var res api.JoinResponse
		if err := m.peers.do(r.Context(), http.MethodPost, addr, "/v1/join", req, &res); err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, res)
		return
	}
	// A leader just elected may still be replaying its log: admit against
	// the whole state (the name check must see every node).
	wctx, cancel := context.WithTimeout(r.Context(), stateWait)
	err := m.r.WaitReady(wctx)
	cancel()
	if err != nil {
		writeError(w, &httpError{http.StatusServiceUnavailable, "unavailable", fmt.Errorf("join: the leader's state is not ready: %w", err)})
		return
	}
	res, err := m.admit(r.Context(), req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, res)
}

// admit checks a join request against the cluster secret and signs the
// node's certificate.
func (m *Manager) admit(_ context.Context, req api.JoinRequest) (api.JoinResponse, error) {
	ci, ok := m.r.State().Cluster()
	if !ok {
		return api.JoinResponse{}, errors.New("join: the cluster is still starting; retry in a moment")
	}
	if subtle.ConstantTimeCompare([]byte(req.Secret), []byte(ci.JoinSecret)) != 1 {
		return api.JoinResponse{}, &httpError{http.StatusForbidden, "forbidden",
			errors.New("join refused: the token's secret is wrong; get the current one with `dev token` on a cluster node")}
	}
	if n, ok := m.r.State().Node(req.Name); ok && n.Status == api.NodeReady {
		return api.JoinResponse{}, conflict("join refused: a ready node named %s is already in the cluster; pick another --node-name", req.Name)
	}
	ca, err := pki.ParseCA(ci.CACertPEM, ci.CAKeyPEM)
	if err != nil {
		return api.JoinResponse{}, err
	}
	var ips []net.IP
	for _, s := range req.IPs {
		if a, err := netip.ParseAddr(s); err == nil {
			ips = append(ips, net.IP(a.AsSlice()))
		}
	}
	cert, err := ca.Sign(req.CSR, req.Name, "node", ips, nil)
	if err != nil {
		return api.JoinResponse{}, invalid("join: %v", err)
	}
	var gossip []string
	if m.opts.Membership != nil {
		for _, mb := range m.opts.Membership.Members() {
			if mb.Status == "alive" && mb.Tags[TagGossip] != "" {
				gossip = append(gossip, mb.Tags[TagGossip])
			}
		}
	}
	sort.Strings(gossip)
	m.log.Info("admitted node", "node", req.Name)
	return api.JoinResponse{ClusterID: ci.ID, Cert: cert, CA: ci.CACertPEM, GossipKey: ci.GossipKey, Gossip: gossip}, nil
}

// handleToken prints the join token, and with ?client=NAME a client
// certificate bundle for a remote CLI.
func (m *Manager) handleToken(w http.ResponseWriter, r *http.Request) {
	ci, ok := m.r.State().Cluster()
	if !ok {
		writeError(w, errors.New("token: the cluster is still starting; retry in a moment"))
		return
	}
	ca, err := pki.ParseCA(ci.CACertPEM, ci.CAKeyPEM)
	if err != nil {
		writeError(w, err)
		return
	}
	res := api.TokenResponse{Token: pki.Token{Fingerprint: ca.Fingerprint(), Secret: ci.JoinSecret}.String()}
	if name := r.URL.Query().Get("client"); name != "" {
		role := pki.RoleAdmin
		if r.URL.Query().Get("role") == pki.RoleRead {
			role = pki.RoleRead
		}
		if res.Bundle, err = ca.ClientBundle(name, role); err != nil {
			writeError(w, err)
			return
		}
	}
	writeJSON(w, res)
}

// nodeAPI returns the API address of a node.
func (m *Manager) nodeAPI(name string) (string, error) {
	n, ok := m.r.State().Node(name)
	if !ok || n.APIAddr == "" {
		return "", notFound("node %s is unknown or has no API address", name)
	}
	return n.APIAddr, nil
}

// forwardLogs streams a pod's logs from the node that runs it.
func (m *Manager) forwardLogs(w http.ResponseWriter, r *http.Request, pod api.Pod) {
	c, err := m.nodeClient(pod.Node)
	if err != nil {
		writeError(w, fmt.Errorf("logs of %s: %w", pod.Name, err))
		return
	}
	body, err := c.Stream(r.Context(), http.MethodGet, r.URL.RequestURI())
	if err != nil {
		writeError(w, err)
		return
	}
	streamText(w, body)
}

// removeVolumesEverywhere removes a project's volumes on every ready node.
func (m *Manager) removeVolumesEverywhere(ctx context.Context, project string) error {
	var errs []error
	for _, n := range m.r.State().Nodes() {
		if n.Name == m.opts.Node {
			errs = append(errs, m.local.RemoveVolumes(ctx, project))
			continue
		}
		if n.Status != api.NodeReady || n.APIAddr == "" || m.peers == nil {
			continue
		}
		errs = append(errs, m.peers.do(ctx, http.MethodDelete, n.APIAddr, "/v1/internal/volumes/"+project, nil, nil))
	}
	return errors.Join(errs...)
}

func (m *Manager) handleInternalVolumes(w http.ResponseWriter, r *http.Request) {
	if err := m.local.RemoveVolumes(r.Context(), r.PathValue("project")); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, api.WriteResult{Index: m.r.State().Index()})
}

// handleImage streams an image from this node's engine (docker save), for a
// node that needs it and has no registry to pull from.
func (m *Manager) handleImage(w http.ResponseWriter, r *http.Request) {
	ref := r.URL.Query().Get("ref")
	rc, err := m.local.SaveImage(r.Context(), ref)
	if err != nil {
		writeError(w, notFound("image %s: %v", ref, err))
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/x-tar")
	_, _ = io.Copy(w, rc)
}

// FetchImage asks the other ready nodes for an image and loads the first
// copy found into this node's engine.
func (m *Manager) FetchImage(ctx context.Context, ref string) error {
	if m.peers == nil {
		return fmt.Errorf("fetch image %s: no peers", ref)
	}
	var errs []error
	for _, n := range m.r.State().Nodes() {
		if n.Name == m.opts.Node || n.Status != api.NodeReady || n.APIAddr == "" {
			continue
		}
		body, err := m.peers.stream(ctx, n.APIAddr, "/v1/internal/image?ref="+url.QueryEscape(ref))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		err = m.local.LoadImage(ctx, body)
		body.Close()
		if err == nil {
			m.log.Info("fetched image from peer", "image", ref, "from", n.Name)
			return nil
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("fetch image %s from peers: %w", ref, errors.Join(errs...))
}

// handleNodes lists nodes with their raft role, pod count and reservations.
func (m *Manager) handleNodes(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, m.Nodes())
}

// Nodes lists the cluster's nodes with their raft role, pod count and
// reservations filled in.
func (m *Manager) Nodes() []api.Node {
	st := m.r.State()
	nodes := st.Nodes()
	roles := map[string]string{}
	if servers, err := m.r.Servers(); err == nil {
		_, leader := m.r.LeaderAddr()
		for _, s := range servers {
			switch {
			case s.ID == leader:
				roles[s.ID] = "leader"
			case s.Voter:
				roles[s.ID] = "voter"
			default:
				roles[s.ID] = "nonvoter"
			}
		}
	}
	// One pass over the pods (not one per node): the dashboard asks at
	// every change of the cluster.
	byName := make(map[string]*api.Node, len(nodes))
	for i := range nodes {
		nodes[i].Role = roles[nodes[i].Name]
		byName[nodes[i].Name] = &nodes[i]
	}
	reserved := map[string]api.ResourceAmounts{} // per service, looked up once
	for _, p := range st.Pods(state.PodFilter{}) {
		n := byName[p.Node]
		if n == nil || p.Deleting {
			continue
		}
		n.Pods++
		key := api.RCKey(p.Project, p.Service)
		res, seen := reserved[key]
		if !seen {
			if rc, ok := st.RC(key); ok {
				res = rc.Template.Resources.Reservations
			}
			reserved[key] = res
		}
		n.Reserved.NanoCPUs += res.NanoCPUs
		n.Reserved.MemoryBytes += res.MemoryBytes
	}
	return nodes
}
