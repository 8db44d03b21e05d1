package apiserver

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

func (srv *Server) registerPods(mux *http.ServeMux) {
	handle(mux, "GET /v1/pods", roleRead, srv.handleListPods)
	handle(mux, "GET /v1/pods/{name}/logs", roleRead, srv.handleLogs)
}

func (srv *Server) handleListPods(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := state.PodFilter{Project: q.Get("project"), Node: q.Get("node")}
	if s := q.Get("selector"); s != "" {
		sel, err := api.ParseSelector(s)
		if err != nil {
			writeError(w, invalid("%v", err))
			return
		}
		f.Selector = sel
	}
	st := srv.r.State()
	if err := blockingWait(r, st); err != nil {
		writeError(w, err)
		return
	}
	idx := st.Index()
	writeJSON(w, api.PodList{Index: idx, Pods: st.Pods(f)})
}

// blockingWait implements ?index=N&wait=D: it returns once the store index
// passes N, or after D (default 30s, at most maxWait).
func blockingWait(r *http.Request, st *state.Store) error {
	q := r.URL.Query()
	s := q.Get("index")
	if s == "" {
		return nil
	}
	after, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return invalid("index %q: want a number", s)
	}
	wait := 30 * time.Second
	if ws := q.Get("wait"); ws != "" {
		if wait, err = time.ParseDuration(ws); err != nil {
			return invalid("wait %q: want a duration like 30s", ws)
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), min(wait, maxWait))
	defer cancel()
	st.WaitIndex(ctx, after)
	return nil
}

func (srv *Server) handleLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tail := -1
	if s := q.Get("tail"); s != "" && s != "all" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			writeError(w, invalid("tail %q: want a number >= 0 or all", s))
			return
		}
		tail = n
	}
	name := r.PathValue("name")
	pod, ok := srv.r.State().Pod(name)
	if !ok {
		writeError(w, notFound("no pod %s", name))
		return
	}
	if pod.Node != "" && pod.Node != srv.opts.Node {
		srv.forwardLogs(w, r, pod)
		return
	}
	rc, err := srv.local.Logs(r.Context(), name, q.Get("container"), q.Get("follow") == "1", tail)
	if err != nil {
		writeError(w, err)
		return
	}
	streamText(w, rc)
}

// streamText copies a text stream (logs) to the answer, flushing every
// write so that followers see lines as they come, and closes it.
func streamText(w http.ResponseWriter, rc io.ReadCloser) {
	defer rc.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	fw := flushWriter{w: w}
	if f, ok := w.(http.Flusher); ok {
		fw.f = f
	}
	_, _ = io.Copy(fw, rc)
}

type flushWriter struct {
	w io.Writer
	f http.Flusher
}

func (fw flushWriter) Write(b []byte) (int, error) {
	n, err := fw.w.Write(b)
	if fw.f != nil {
		fw.f.Flush()
	}
	return n, err
}

// forwardLogs streams a pod's logs from the node that runs it.
func (srv *Server) forwardLogs(w http.ResponseWriter, r *http.Request, pod api.Pod) {
	c, err := srv.nodeClient(pod.Node)
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
