package apiserver

import (
	"context"
	"fmt"
	"net/http"

	"github.com/devhq/dev/cluster/api"
)

// `dev top` and `dev images`: the processes and the images of a pod's
// containers, read by the node that runs it (any other node asks that one,
// as for the pod actions of interactive.go).

func (srv *Server) registerControl(mux *http.ServeMux) {
	handle(mux, "GET /v1/pods/{name}/top", roleRead, func(w http.ResponseWriter, r *http.Request) {
		servePodRead(srv, w, r, "top", Local.TopPod, (*api.HTTPClient).PodTop)
	})
	handle(mux, "GET /v1/pods/{name}/images", roleRead, func(w http.ResponseWriter, r *http.Request) {
		servePodRead(srv, w, r, "images", Local.PodImages, (*api.HTTPClient).PodImages)
	})
}

// servePodRead answers a read of the pod named in the path from its node's
// engine: local when the pod runs here, else relayed to its node's API
// (the same route there); what names it in errors.
func servePodRead[T any](srv *Server, w http.ResponseWriter, r *http.Request, what string,
	local func(Local, context.Context, string) (T, error),
	remote func(*api.HTTPClient, context.Context, string) (T, error)) {
	name := r.PathValue("name")
	pod, err := srv.placedPod(what, name)
	if err != nil {
		writeError(w, err)
		return
	}
	if pod.Node != srv.opts.Node {
		c, err := srv.nodeClient(pod.Node)
		if err != nil {
			writeError(w, fmt.Errorf("%s %s: %w", what, name, err))
			return
		}
		res, err := remote(c, r.Context(), name)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, res)
		return
	}
	res, err := local(srv.local, r.Context(), name)
	if err != nil {
		writeError(w, conflict("%v", err))
		return
	}
	writeJSON(w, res)
}
