package apiserver

import (
	"fmt"
	"net/http"
)

// `dev top`: the processes of a pod's containers, read by the node that
// runs it (any other node asks that one, as for the pod actions of
// interactive.go).

func (srv *Server) registerControl(mux *http.ServeMux) {
	handle(mux, "GET /v1/pods/{name}/top", roleRead, srv.handleTop)
}

func (srv *Server) handleTop(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	pod, err := srv.placedPod("top", name)
	if err != nil {
		writeError(w, err)
		return
	}
	if pod.Node != srv.opts.Node {
		c, err := srv.nodeClient(pod.Node)
		if err != nil {
			writeError(w, fmt.Errorf("top %s: %w", name, err))
			return
		}
		res, err := c.PodTop(r.Context(), name)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, res)
		return
	}
	res, err := srv.local.TopPod(r.Context(), name)
	if err != nil {
		writeError(w, conflict("%v", err))
		return
	}
	writeJSON(w, res)
}
