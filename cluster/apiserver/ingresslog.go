package apiserver

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/devhq/dev/cluster/api"
)

// IngressLogReader is this node's ingress access log (proxy.AccessLog):
// the entries after a cursor that match, the last tail of them, and the
// newest entry's Seq; with wait > 0 it waits (at most that long) for one.
type IngressLogReader interface {
	Read(ctx context.Context, after uint64, tail int, wait time.Duration, match func(*api.IngressAccess) bool) ([]api.IngressAccess, uint64)
}

// ingressLogGrace is how long past a blocking query's wait a node waits
// for its peers' answers.
const ingressLogGrace = 10 * time.Second

func (srv *Server) registerIngressLog(mux *http.ServeMux) {
	handle(mux, "GET /v1/ingress/log", roleRead, srv.handleIngressLog)
}

// handleIngressLog is `dev logs --ingress`: the access log entries of the
// routes the query selects, from every node's router (this node's own,
// the others' through their GET /v1/ingress/log?local=1, at the same time,
// as `dev stats` gathers them). A blocking query (wait) answers as soon as
// one node has entries after the cursor; the others' calls are then cut
// short, and their entries come with the next query (the cursor does not
// pass them). A node that cannot answer says so in Errors.
func (srv *Server) handleIngressLog(w http.ResponseWriter, r *http.Request) {
	q, err := api.IngressLogQueryOf(r.URL.Query())
	if err != nil {
		writeError(w, invalid("%v", err))
		return
	}
	q.Wait = min(q.Wait, maxWait)
	nodes := []string{srv.opts.Node}
	if !q.Local {
		nodes = nodes[:0]
		for _, n := range srv.r.State().Nodes() {
			if n.Status != api.NodeLeft {
				nodes = append(nodes, n.Name)
			}
		}
	}
	bounded, cancel := context.WithTimeout(r.Context(), q.Wait+ingressLogGrace)
	defer cancel()
	found, stop := context.WithCancel(bounded) // ended by the first entries of a blocking query
	defer stop()
	var (
		mu  sync.Mutex
		out = api.IngressLog{Entries: []api.IngressAccess{}, Cursor: map[string]uint64{}}
	)
	for _, n := range nodes {
		if seq, ok := q.After[n]; ok {
			out.Cursor[n] = seq
		}
	}
	errs := srv.eachNode(found, nodes, func(ctx context.Context, node string) error {
		var got api.IngressLog
		var err error
		if node == srv.opts.Node {
			got = srv.localIngressLog(ctx, q)
		} else {
			got, err = srv.peerIngressLog(ctx, node, q)
		}
		if err != nil && found.Err() != nil && bounded.Err() == nil {
			return nil // cut short: another node answered first
		}
		mu.Lock()
		defer mu.Unlock()
		out.Entries = append(out.Entries, got.Entries...)
		out.Errors = append(out.Errors, got.Errors...)
		if seq, ok := got.Cursor[node]; ok && err == nil {
			out.Cursor[node] = seq
		}
		if len(got.Entries) > 0 && q.Wait > 0 {
			stop()
		}
		return err
	})
	out.Errors = append(out.Errors, errs...)
	out.Sort()
	if q.Tail >= 0 && len(out.Entries) > q.Tail {
		out.Entries = out.Entries[len(out.Entries)-q.Tail:]
	}
	writeJSON(w, out)
}

// localIngressLog reads this node's own access log.
func (srv *Server) localIngressLog(ctx context.Context, q api.IngressLogQuery) api.IngressLog {
	if srv.opts.IngressLog == nil {
		return api.IngressLog{}
	}
	entries, last := srv.opts.IngressLog.Read(ctx, q.After[srv.opts.Node], q.Tail, q.Wait, q.Matches)
	return api.IngressLog{Entries: entries, Cursor: map[string]uint64{srv.opts.Node: last}}
}

// peerIngressLog asks another node for its own access log.
func (srv *Server) peerIngressLog(ctx context.Context, node string, q api.IngressLogQuery) (api.IngressLog, error) {
	c, err := srv.peerClient(node)
	if err != nil {
		return api.IngressLog{}, err
	}
	q.Local = true
	seq, ok := q.After[node]
	q.After = nil
	if ok {
		q.After = map[string]uint64{node: seq}
	}
	return c.IngressLog(ctx, q)
}
