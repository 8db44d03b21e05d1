package apiserver

import (
	"net/http"

	"github.com/devhq/dev/cluster/api"
)

func (srv *Server) registerStatus(mux *http.ServeMux) {
	handle(mux, "GET /v1/status", roleRead, srv.handleStatus)
}

func (srv *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, api.Status{
		Node: srv.opts.Node, Leader: srv.r.Leader(), Index: srv.r.State().Index(), Version: srv.opts.Version,
	})
}
