package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"time"

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

// Limits of `dev kill|pause|unpause|top` against an Engine that hangs:
// the node's own action, and a relay to that node (its action and the
// way there).
const (
	controlTimeout = 30 * time.Second
	relayTimeout   = controlTimeout + 5*time.Second
)

// engineAnswers refuses, before anything waits on it, an action on a pod
// whose node's record says its Docker Engine does not answer.
func (srv *Server) engineAnswers(what string, pod api.Pod) error {
	if n, ok := srv.r.State().Node(pod.Node); ok && n.EngineUnreachable {
		return unavailable("%s %s: node %s's Docker Engine does not answer (dev nodes); retry once it does", what, pod.Name, pod.Node)
	}
	return nil
}

// servePodRead answers a read of the pod named in the path from its node's
// engine: local when the pod runs here, else relayed to its node's API
// (the same route there); what names it in errors. Both are bounded in
// time, and refused at once when the node's engine does not answer.
func servePodRead[T any](srv *Server, w http.ResponseWriter, r *http.Request, what string,
	local func(Local, context.Context, string) (T, error),
	remote func(*api.HTTPClient, context.Context, string) (T, error)) {
	name := r.PathValue("name")
	pod, err := srv.placedPod(what, name)
	if err == nil {
		err = srv.engineAnswers(what, pod)
	}
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
		ctx, cancel := context.WithTimeout(r.Context(), relayTimeout)
		defer cancel()
		res, err := remote(c, ctx, name)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, res)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), controlTimeout)
	defer cancel()
	res, err := local(srv.local, ctx, name)
	if err != nil {
		writeError(w, localError(err))
		return
	}
	writeJSON(w, res)
}
