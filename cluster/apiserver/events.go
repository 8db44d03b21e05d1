package apiserver

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/devhq/dev/cluster/api"
)

func (srv *Server) registerEvents(mux *http.ServeMux) {
	handle(mux, "GET /v1/events", roleRead, srv.handleEvents)
}

// handleEvents answers GET /v1/events?index=N&wait=D: the events after N,
// blocking up to D until there are some.
func (srv *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	if srv.opts.Events == nil {
		writeError(w, notFound("this node records no events"))
		return
	}
	q := r.URL.Query()
	var after uint64
	if s := q.Get("index"); s != "" {
		var err error
		if after, err = strconv.ParseUint(s, 10, 64); err != nil {
			writeError(w, invalid("index %q: want a number", s))
			return
		}
	}
	list := srv.opts.Events.List(after)
	if ws := q.Get("wait"); ws != "" && len(list.Events) == 0 {
		wait, err := time.ParseDuration(ws)
		if err != nil {
			writeError(w, invalid("wait %q: want a duration like 30s", ws))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), min(wait, maxWait))
		defer cancel()
		list = srv.opts.Events.Wait(ctx, after)
	}
	if list.Events == nil {
		list.Events = []api.Event{}
	}
	writeJSON(w, list)
}
