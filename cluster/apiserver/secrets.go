package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/pki"
	"github.com/devhq/dev/cluster/state"
)

// fileAAD binds a sealed secret or config to its purpose.
const fileAAD = "dev/secret-or-config/v1"

// Compose secrets and configs arrive in the clear from the CLI (over the
// unix socket or mutual TLS) at a manager, which seals each content with
// the data key before the project enters the raft log (sealFiles): every
// node replicates the log, only managers can open it. A node gets the
// content of a pod's files from a manager when it creates the pod's
// containers (OpenPodFiles), and only for pods it runs; a one-off
// container (dev run) gets them from the manager that places it, in the
// run request (openFiles in handleRun).

// sealFiles seals the content of every secret and config of p (and
// records its keyed digest). In a Legacy cluster, which has no data key,
// p is left as it is. Content that comes sealed already is refused: only
// the cluster seals.
func (srv *Server) sealFiles(ctx context.Context, p *api.Project) error {
	files := false
	for _, s := range p.Services {
		for _, m := range s.Files() {
			if m.Sealed != nil || m.Digest != "" {
				return invalid("service %s: %s: sealed content and digests are the cluster's to write; send the content", s.Name, m.Name)
			}
			files = true
		}
	}
	if !files {
		return nil
	}
	ci, err := srv.clusterRecord(ctx)
	if err != nil {
		return err
	}
	if ci.Legacy() {
		return nil
	}
	if srv.opts.DataKey == nil {
		return srv.errNoDataKey("seal secrets")
	}
	for i := range p.Services {
		p.Services[i] = p.Services[i].MapFiles(func(m api.SecretMount) api.SecretMount {
			m.Digest = srv.opts.DataKey.Digest(m.Content)
			m.Sealed = srv.opts.DataKey.Seal(m.Content, []byte(fileAAD))
			m.Content = nil
			return m
		})
	}
	return nil
}

// clusterRecord is the cluster's record, once the state has it: a node
// that has just created the cluster records it a moment after it answers
// (and whether secrets are sealed must not depend on that moment).
func (srv *Server) clusterRecord(ctx context.Context) (state.ClusterInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, stateWait)
	defer cancel()
	st := srv.r.State()
	for {
		changed := st.Changed()
		if ci, ok := st.Cluster(); ok {
			return ci, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return state.ClusterInfo{}, &httpError{http.StatusServiceUnavailable, "unavailable",
				errors.New("the cluster is still starting (its record is not in the state yet); retry in a moment")}
		}
	}
}

// openFiles opens the sealed secrets and configs of spec: contents by
// digest.
func openFiles(key *pki.DataKey, spec api.ServiceSpec) (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, m := range spec.Files() {
		if !m.NeedsOpening() {
			continue
		}
		if key == nil {
			return nil, &httpError{http.StatusForbidden, "forbidden",
				errors.New("this node is a worker and holds no data key to open secrets with: ask a manager (the leader is one)")}
		}
		plain, err := key.Open(m.Sealed, []byte(fileAAD))
		if err == nil && key.Digest(plain) != m.Digest {
			err = errors.New("its content does not match its digest")
		}
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", m.Name, err)
		}
		files[m.Digest] = plain
	}
	return files, nil
}

// OpenPodFiles opens, with key, the secrets and configs of pod for node,
// which must be the node the pod is assigned to: contents by digest. The
// API serves it to other nodes (GET /v1/internal/files); a manager's
// agent calls it directly.
func OpenPodFiles(st *state.Store, key *pki.DataKey, node, pod string) (map[string][]byte, error) {
	p, ok := st.Pod(pod)
	if !ok {
		return nil, notFound("no pod %s", pod)
	}
	if p.Node != node {
		return nil, &httpError{http.StatusForbidden, "forbidden",
			fmt.Errorf("pod %s runs on node %s, not %s: a node gets the secrets of its own pods only", p.Name, p.Node, node)}
	}
	rc, ok := st.RC(api.RCKey(p.Project, p.Service))
	if !ok {
		return nil, notFound("no service %s of project %s", p.Service, p.Project)
	}
	for _, t := range []*api.ServiceSpec{&rc.Template, rc.Previous} {
		if t != nil && t.Hash() == p.SpecHash {
			return openFiles(key, *t)
		}
	}
	return nil, conflict("pod %s: its template was replaced (it is being updated)", p.Name)
}

// handleInternalFiles gives a node the opened secrets and configs of a
// pod it runs.
func (srv *Server) handleInternalFiles(w http.ResponseWriter, r *http.Request) {
	c, _ := callerFrom(r.Context())
	files, err := OpenPodFiles(srv.r.State(), srv.opts.DataKey, c.Name, r.URL.Query().Get("pod"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, api.FilesResponse{Files: files})
}
