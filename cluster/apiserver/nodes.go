package apiserver

import (
	"net/http"

	"github.com/devhq/dev/cluster/api"
)

func (srv *Server) registerNodes(mux *http.ServeMux) {
	handle(mux, "GET /v1/nodes", roleRead, srv.handleNodes)
	handle(mux, "POST /v1/leave", roleAdmin, srv.handleLeave)
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
