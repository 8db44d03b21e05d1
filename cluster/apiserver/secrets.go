package apiserver

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// fileAAD binds a sealed secret or config to its purpose.
const fileAAD = "dev/secret-or-config/v1"

// Compose secrets and configs arrive in the clear from the CLI (over the
// unix socket or mutual TLS) at a manager, which seals each content with
// the data key before the project enters the raft log (sealFiles): every
// node replicates the log, only managers can open it. A node gets the
// content of a pod's files from a manager when it creates the pod's
// containers (handleInternalFiles), and only for pods it runs.

// sealFiles seals the content of every secret and config of p (and
// records its digest). In a Legacy cluster, which has no data key, p is
// left as it is. Content that comes sealed already is refused: only the
// cluster seals.
func (srv *Server) sealFiles(p *api.Project) error {
	for _, s := range p.Services {
		for _, m := range s.Files() {
			if m.Sealed != nil {
				return invalid("service %s: %s: sealed content is written by the cluster, not sent to it", s.Name, m.Name)
			}
		}
	}
	ci, ok := srv.r.State().Cluster()
	if !ok || ci.Legacy() {
		return nil
	}
	if srv.opts.DataKey == nil {
		return &httpError{http.StatusForbidden, "forbidden",
			fmt.Errorf("node %s is a worker: it cannot seal secrets; make users' changes on a manager", srv.opts.Node)}
	}
	for i := range p.Services {
		p.Services[i] = p.Services[i].MapFiles(func(m api.SecretMount) api.SecretMount {
			m.Digest = api.DigestOf(m.Content)
			m.Sealed = srv.opts.DataKey.Seal(m.Content, []byte(fileAAD))
			m.Content = nil
			return m
		})
	}
	return nil
}

// handleInternalFiles gives a node the opened secrets and configs of a
// pod it runs, or, for a one-off container (dev run), of a service's
// template when the node runs one of its pods or is a manager itself.
func (srv *Server) handleInternalFiles(w http.ResponseWriter, r *http.Request) {
	c, _ := callerFrom(r.Context())
	q := api.FilesQuery{Pod: r.URL.Query().Get("pod"), Project: r.URL.Query().Get("project"), Service: r.URL.Query().Get("service")}
	spec, err := srv.filesSpec(c.Name, q)
	if err != nil {
		writeError(w, err)
		return
	}
	if srv.opts.DataKey == nil {
		writeError(w, &httpError{http.StatusForbidden, "forbidden",
			fmt.Errorf("node %s is a worker and holds no data key: ask a manager (the leader is one)", srv.opts.Node)})
		return
	}
	files := map[string][]byte{}
	for _, m := range spec.Files() {
		if !m.NeedsOpening() {
			continue
		}
		plain, err := srv.opts.DataKey.Open(m.Sealed, []byte(fileAAD))
		if err == nil && api.DigestOf(plain) != m.Digest {
			err = errors.New("its content does not match its digest")
		}
		if err != nil {
			writeError(w, fmt.Errorf("open %s: %w", m.Name, err))
			return
		}
		files[m.Digest] = plain
	}
	writeJSON(w, api.FilesResponse{Files: files})
}

// filesSpec is the template whose files node may have for q.
func (srv *Server) filesSpec(node string, q api.FilesQuery) (api.ServiceSpec, error) {
	st := srv.r.State()
	if q.Pod != "" {
		p, ok := st.Pod(q.Pod)
		if !ok {
			return api.ServiceSpec{}, notFound("no pod %s", q.Pod)
		}
		if p.Node != node {
			return api.ServiceSpec{}, &httpError{http.StatusForbidden, "forbidden",
				fmt.Errorf("pod %s runs on node %s, not %s: a node gets the secrets of its own pods only", p.Name, p.Node, node)}
		}
		rc, ok := st.RC(api.RCKey(p.Project, p.Service))
		if !ok {
			return api.ServiceSpec{}, notFound("no service %s of project %s", p.Service, p.Project)
		}
		for _, t := range []*api.ServiceSpec{&rc.Template, rc.Previous} {
			if t != nil && t.Hash() == p.SpecHash {
				return *t, nil
			}
		}
		return api.ServiceSpec{}, conflict("pod %s: its template was replaced (it is being updated)", p.Name)
	}
	rc, ok := st.RC(api.RCKey(q.Project, q.Service))
	if !ok {
		return api.ServiceSpec{}, notFound("no service %s of project %s", q.Service, q.Project)
	}
	runsOne := false
	for _, p := range st.Pods(state.PodFilter{Project: q.Project, Node: node}) {
		runsOne = runsOne || p.Service == q.Service
	}
	if !st.MayVote(node) && !runsOne {
		return api.ServiceSpec{}, &httpError{http.StatusForbidden, "forbidden",
			fmt.Errorf("node %s runs no pod of %s/%s: a worker gets the secrets of the services it runs only", node, q.Project, q.Service)}
	}
	return rc.Template, nil
}
