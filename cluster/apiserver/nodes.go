package apiserver

import (
	"encoding/json"
	"net/http"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/controller"
	"github.com/devhq/dev/cluster/state"
)

func (srv *Server) registerNodes(mux *http.ServeMux) {
	handle(mux, "GET /v1/nodes", roleRead, srv.handleNodes)
	handle(mux, "POST /v1/leave", roleAdmin, srv.handleLeave)
	handle(mux, "DELETE /v1/nodes/{name}", roleAdmin, srv.handleNodeRemove)
	handle(mux, "POST /v1/nodes/{name}/cordon", roleAdmin, srv.handleCordon(true))
	handle(mux, "POST /v1/nodes/{name}/uncordon", roleAdmin, srv.handleCordon(false))
	handle(mux, "POST /v1/nodes/{name}/drain", roleAdmin, srv.handleDrain)
	handle(mux, "POST /v1/nodes/{name}/labels", roleAdmin, srv.handleLabel)
}

// handleLabel is `dev node label`: labels set (k: v) or removed (k: "")
// over the node's own, kept across its reports.
func (srv *Server) handleLabel(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var labels map[string]string
	if err := json.NewDecoder(r.Body).Decode(&labels); err != nil { // capped by handle
		writeError(w, invalid("decode labels: %v", err))
		return
	}
	if len(labels) == 0 {
		writeError(w, invalid("no labels given: KEY=VALUE sets one, KEY- removes it"))
		return
	}
	for k, v := range labels {
		if err := api.CheckNodeLabel(k, v); err != nil {
			writeError(w, invalid("%v", err))
			return
		}
	}
	srv.applyToNode(w, r, name, &state.LabelNode{Name: name, Labels: labels}, "labels", labels)
}

// handleCordon is `dev node cordon` (no new pods on the node; what runs
// there stays) and `dev node uncordon`.
func (srv *Server) handleCordon(cordoned bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		srv.applyToNode(w, r, name, &state.CordonNode{Name: name, Cordoned: cordoned}, "cordoned", cordoned)
	}
}

// handleDrain is `dev node drain`: the node is cordoned and the leader's
// controller moves its pods to other nodes (controller.drain), then ends
// the drain. Refused when no other node could take them.
func (srv *Server) handleDrain(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	st := srv.r.State()
	movable := 0
	for _, p := range st.Pods(state.PodFilter{Node: name}) {
		if rc, ok := st.RC(api.RCKey(p.Project, p.Service)); ok && !p.Deleting && controller.Movable(rc) {
			movable++
		}
	}
	if _, ok := st.Node(name); ok && movable > 0 && len(controller.DrainTargets(st.Nodes(), name)) == 0 {
		writeError(w, conflict("no other node can take the pods of %s: every other node is cordoned, draining, not ready or without its Docker Engine (dev nodes); join a node or uncordon one first", name))
		return
	}
	srv.applyToNode(w, r, name, &state.CordonNode{Name: name, Cordoned: true, Drain: true}, "draining", true)
}

// applyToNode applies a user's write about node name, which must exist.
func (srv *Server) applyToNode(w http.ResponseWriter, r *http.Request, name string, cmd state.Command, logArgs ...any) {
	if _, ok := srv.r.State().Node(name); !ok {
		writeError(w, notFound("no node %s in the cluster (see dev nodes)", name))
		return
	}
	idx, err := srv.mgr.Apply(r.Context(), cmd)
	if err != nil {
		writeError(w, err)
		return
	}
	srv.log.Info("node changed", append([]any{"node", name}, logArgs...)...)
	writeJSON(w, api.WriteResult{Index: idx})
}

// handleNodeRemove is `dev node rm`: a node gone for good has its
// certificate revoked and is then forgotten by the leader (its pods are
// made again elsewhere, it leaves raft), so that it is refused on every port if it comes
// back. A node that still answers is removed only with force: `dev leave`
// on it moves its pods first.
func (srv *Server) handleNodeRemove(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	force := r.URL.Query().Get("force") == "1"
	n, ok := srv.r.State().Node(name)
	switch {
	case !ok:
		writeError(w, notFound("no node %s in the cluster (see dev nodes)", name))
		return
	case name == srv.opts.Node:
		writeError(w, conflict("node %s is the one answering this request: run dev leave on it, or dev node rm from another node", name))
		return
	case n.Status == api.NodeReady && !force:
		writeError(w, conflict("node %s is ready: run dev leave on it to move its pods away first, or stop it; --force removes it as it is", name))
		return
	}
	// The revocation is the user's write; forgetting the node is the
	// leader's, which follows it (manager.forgetRevoked).
	idx, err := srv.mgr.Apply(r.Context(), state.RevokeNow(api.CertNode, name))
	if err != nil {
		writeError(w, err)
		return
	}
	srv.log.Info("removed node", "node", name, "was", n.Status)
	writeJSON(w, api.WriteResult{Index: idx})
}

func (srv *Server) handleLeave(w http.ResponseWriter, r *http.Request) {
	if err := srv.local.Leave(r.Context()); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, api.WriteResult{Index: srv.r.State().Index()})
}

// handleNodes lists nodes with their raft role, pod count and reservations.
func (srv *Server) handleNodes(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, srv.mgr.Nodes())
}
