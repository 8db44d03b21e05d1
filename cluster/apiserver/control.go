package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/devhq/dev/cluster/api"
)

// `dev top`: the processes of a pod's containers, read by the node that
// runs it (any other node asks that one, as for the pod actions of
// interactive.go).

func (srv *Server) registerControl(mux *http.ServeMux) {
	handle(mux, "GET /v1/pods/{name}/top", roleRead, srv.handleTop)
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

func (srv *Server) handleTop(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	pod, err := srv.placedPod("top", name)
	if err == nil {
		err = srv.engineAnswers("top", pod)
	}
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
		ctx, cancel := context.WithTimeout(r.Context(), relayTimeout)
		defer cancel()
		res, err := c.PodTop(ctx, name)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, res)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), controlTimeout)
	defer cancel()
	res, err := srv.local.TopPod(ctx, name)
	if err != nil {
		writeError(w, localError(err))
		return
	}
	writeJSON(w, res)
}
