package manager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/raftstore"
	"github.com/devhq/dev/cluster/scheduler"
	"github.com/devhq/dev/cluster/state"
)

// maxWait bounds blocking queries.
const maxWait = 5 * time.Minute

// Handler returns the HTTP API (see cluster/api/requests.go for the routes)
// behind its authentication: on TLS connections, a client certificate of
// the cluster, whose role each route checks (auth.go).
func (m *Manager) Handler() http.Handler { return authenticate(m.Routes()) }

// Routes is the HTTP API without authentication, for a front that
// authenticates its callers itself and says who they are (AsCaller: the
// dashboard). A request without a caller is refused.
func (m *Manager) Routes() http.Handler {
	mux := http.NewServeMux()
	handle(mux, "GET /v1/status", roleRead, m.handleStatus)
	handle(mux, "GET /v1/projects", roleRead, m.handleListProjects)
	handle(mux, "PUT /v1/projects/{name}", roleAdmin, m.handleApplyProject)
	handle(mux, "DELETE /v1/projects/{name}", roleAdmin, m.handleDeleteProject)
	handle(mux, "DELETE /v1/projects/{name}/volumes", roleAdmin, m.handleDeleteVolumes)
	handle(mux, "POST /v1/projects/{name}/scale", roleAdmin, m.handleScale)
	handle(mux, "POST /v1/projects/{name}/rollback", roleAdmin, m.handleRollback)
	handle(mux, "GET /v1/pods", roleRead, m.handleListPods)
	handle(mux, "GET /v1/pods/{name}/logs", roleRead, m.handleLogs)
	handle(mux, "GET /v1/nodes", roleRead, m.handleNodes)
	handle(mux, "GET /v1/services", roleRead, m.handleServices)
	handle(mux, "GET /v1/events", roleRead, m.handleEvents)
	handle(mux, "GET /v1/dashboard", roleRead, m.handleDashboard) // a login link to a read-only dashboard
	handle(mux, "GET /v1/token", roleAdmin, m.handleToken)
	handle(mux, "POST /v1/leave", roleAdmin, m.handleLeave)
	handle(mux, "POST /v1/join", rolePublic, m.handleJoin)
	handle(mux, "POST /v1/internal/apply", roleNode, m.handleInternalApply)
	handle(mux, "POST /v1/internal/register", roleNode, m.handleInternalRegister)
	handle(mux, "DELETE /v1/internal/volumes/{project}", roleNode, m.handleInternalVolumes)
	handle(mux, "GET /v1/internal/image", roleNode, m.handleImage)
	m.registerInteractive(mux) // exec, run, stop/start/restart: interactive.go
	m.registerFiles(mux)       // copy files into / remove files from pods: files.go
	return m.awaitState(mux)
}

// passesStateWait reports the routes answered before the state caught up:
// node-to-node routes (a starting node's raft may need them; join waits in
// its handler, on the leader) and the status, which says what is missing.
func passesStateWait(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, "/v1/internal/") || r.URL.Path == "/v1/join" ||
		(r.Method == http.MethodGet && r.URL.Path == "/v1/status")
}

// stateWait bounds how long a request waits for a starting agent's state.
const stateWait = 30 * time.Second

// awaitState holds requests until the node's state has caught up with its
// raft log after a start: before that, the store is empty or partly
// replayed, and an answer from it would be wrong ("project not deployed"
// to a `dev down` right after an agent restart, which then did nothing).
// Node-to-node routes pass at once: a starting node's raft may need them.
func (m *Manager) awaitState(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !m.ready.Load() && !passesStateWait(r) {
			ctx, cancel := context.WithTimeout(r.Context(), stateWait)
			err := m.r.WaitReady(ctx)
			cancel()
			if err != nil {
				why := "the agent is still loading the cluster state"
				if m.r.Leader() == "" {
					why = "the cluster has no leader (not enough managers reachable)"
				}
				writeError(w, &httpError{http.StatusServiceUnavailable, "unavailable",
					fmt.Errorf("%s (%v); try again in a moment, `dev nodes` or GET /v1/status tell more", why, err)})
				return
			}
			m.ready.Store(true)
		}
		next.ServeHTTP(w, r)
	})
}

// httpError carries a status code and a stable code to the client.
type httpError struct {
	status int
	code   string
	err    error
}

func (e *httpError) Error() string { return e.err.Error() }
func (e *httpError) Unwrap() error { return e.err }

func invalid(format string, a ...any) error {
	return &httpError{http.StatusBadRequest, "invalid", fmt.Errorf(format, a...)}
}

func notFound(format string, a ...any) error {
	return &httpError{http.StatusNotFound, "not_found", fmt.Errorf(format, a...)}
}

func conflict(format string, a ...any) error {
	return &httpError{http.StatusConflict, "conflict", fmt.Errorf(format, a...)}
}

func writeError(w http.ResponseWriter, err error) {
	status, code := http.StatusInternalServerError, "internal"
	var he *httpError
	var ae *api.APIError
	switch {
	case errors.As(err, &he):
		status, code = he.status, he.code
	case errors.As(err, &ae):
		status, code = ae.Status, ae.Code // a peer's answer, passed on
	case errors.Is(err, raftstore.ErrNotLeader):
		status, code = http.StatusServiceUnavailable, "unavailable"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(api.Error{Message: err.Error(), Code: code})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (m *Manager) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, api.Status{
		Node: m.opts.Node, Leader: m.r.Leader(), Index: m.r.State().Index(), Version: m.opts.Version,
	})
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

func validateProject(name string, p *api.Project) error {
	if p.Name != name {
		return invalid("project name %q in body does not match %q in path", p.Name, name)
	}
	if !nameRE.MatchString(name) {
		return invalid("project name %q: use lowercase letters, digits, '-' and '_'", name)
	}
	if len(p.Services) == 0 {
		return invalid("project %s has no services", name)
	}
	seen := map[string]bool{}
	for _, s := range p.Services {
		switch {
		case s.Name == "":
			return invalid("project %s: a service has no name", name)
		case seen[s.Name]:
			return invalid("project %s: service %s appears twice", name, s.Name)
		case s.Project != name:
			return invalid("service %s: project %q, want %q", s.Name, s.Project, name)
		case s.Image == "":
			return invalid("service %s: no image", s.Name)
		}
		if err := api.CheckReplicas(s.Name, s.Replicas, s.ContainerName); err != nil {
			return invalid("%v", err)
		}
		if _, err := scheduler.ParsePlacement(s.Placement); err != nil {
			return invalid("service %s: %v", s.Name, err)
		}
		seen[s.Name] = true
	}
	for _, s := range p.Services {
		for _, d := range s.DependsOn {
			if d.Required && !seen[d.Service] {
				return invalid("service %s depends on undefined service %s", s.Name, d.Service)
			}
		}
	}
	return nil
}

func (m *Manager) handleApplyProject(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var p api.Project
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
		writeError(w, invalid("decode project: %v", err))
		return
	}
	if err := validateProject(name, &p); err != nil {
		writeError(w, err)
		return
	}
	st := m.r.State()
	var res api.ApplyResult
	want := map[string]bool{}
	for _, s := range p.Services {
		want[s.Name] = true
		rc, ok := st.RC(api.RCKey(name, s.Name))
		switch {
		case !ok:
			res.Created = append(res.Created, s.Name)
		case rc.SpecHash != s.Hash() || rc.Replicas != s.Replicas:
			res.Updated = append(res.Updated, s.Name)
		default:
			res.Unchanged = append(res.Unchanged, s.Name)
		}
	}
	for _, rc := range st.RCs(name) {
		if !want[rc.Service] {
			res.Removed = append(res.Removed, rc.Service)
		}
	}
	if err := m.checkPublishedPorts(&p); err != nil {
		writeError(w, err)
		return
	}
	idx, err := m.Apply(r.Context(), &state.ApplyProject{Project: p, ServiceCIDR: m.opts.ServiceCIDR})
	if err != nil {
		writeError(w, err)
		return
	}
	res.Index = idx
	writeJSON(w, res)
}

func (m *Manager) handleListProjects(w http.ResponseWriter, r *http.Request) {
	st := m.r.State()
	out := []api.ProjectSummary{}
	for _, p := range st.Projects() {
		out = append(out, api.ProjectSummary{Name: p.Name, Services: st.RCs(p.Name)})
	}
	writeJSON(w, out)
}

func (m *Manager) handleDeleteProject(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	st := m.r.State()
	if _, ok := st.Project(name); !ok && len(st.Pods(state.PodFilter{Project: name})) == 0 {
		writeError(w, notFound("project %s is not deployed", name))
		return
	}
	idx, err := m.Apply(r.Context(), &state.DeleteProject{Name: name})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, api.WriteResult{Index: idx})
}

func (m *Manager) handleDeleteVolumes(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if n := len(m.r.State().Pods(state.PodFilter{Project: name})); n > 0 {
		writeError(w, conflict("project %s still has %d pods; remove them first (dev down)", name, n))
		return
	}
	if err := m.removeVolumesEverywhere(r.Context(), name); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, api.WriteResult{Index: m.r.State().Index()})
}

func (m *Manager) handleScale(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req api.ScaleRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, invalid("decode scale request: %v", err))
		return
	}
	st := m.r.State()
	if _, ok := st.Project(name); !ok {
		writeError(w, notFound("project %s is not deployed; run dev up first", name))
		return
	}
	svcs := make([]string, 0, len(req.Replicas))
	for svc := range req.Replicas {
		svcs = append(svcs, svc)
	}
	sort.Strings(svcs)
	for _, svc := range svcs {
		n := req.Replicas[svc]
		rc, ok := st.RC(api.RCKey(name, svc))
		if !ok {
			writeError(w, notFound("no service %s in project %s", svc, name))
			return
		}
		if err := api.CheckReplicas(svc, n, rc.Template.ContainerName); err != nil {
			writeError(w, invalid("scale: %v", err))
			return
		}
	}
	idx, err := m.Apply(r.Context(), &state.Scale{Project: name, Replicas: req.Replicas})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, api.WriteResult{Index: idx})
}

func (m *Manager) handleListPods(w http.ResponseWriter, r *http.Request) {
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
	st := m.r.State()
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

func (m *Manager) handleLogs(w http.ResponseWriter, r *http.Request) {
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
	pod, ok := m.r.State().Pod(name)
	if !ok {
		writeError(w, notFound("no pod %s", name))
		return
	}
	if pod.Node != "" && pod.Node != m.opts.Node {
		m.forwardLogs(w, r, pod)
		return
	}
	rc, err := m.local.Logs(r.Context(), name, q.Get("follow") == "1", tail)
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

// published is one host port a service publishes.
type published struct {
	project, service string
	hostIP           string
	port             uint16
	proto            string
}

func (p published) String() string {
	return fmt.Sprintf("%d/%s", p.port, p.proto)
}

// clashes reports whether two published ports would share a socket.
func (p published) clashes(o published) bool {
	if p.port != o.port || p.proto != o.proto {
		return false
	}
	any := func(ip string) bool { return ip == "" || ip == "0.0.0.0" || ip == "::" }
	return p.hostIP == o.hostIP || any(p.hostIP) || any(o.hostIP)
}

func publishedPorts(s api.ServiceSpec) []published {
	var out []published
	for _, pt := range s.Ports {
		if pt.Published == 0 {
			continue
		}
		proto := pt.Protocol
		if proto == "" {
			proto = "tcp"
		}
		out = append(out, published{s.Project, s.Name, pt.HostIP, pt.Published, proto})
	}
	return out
}

// checkPublishedPorts refuses a project whose published ports collide with
// each other, with another deployed service, or with a program that holds
// the port on this node. Nothing is deployed when it fails.
func (m *Manager) checkPublishedPorts(p *api.Project) error {
	var mine []published
	for _, s := range p.Services {
		for _, pp := range publishedPorts(s) {
			for _, o := range mine {
				if pp.clashes(o) && o.service != pp.service {
					return invalid("services %s and %s both publish port %s; give one of them another host port", o.service, pp.service, pp)
				}
			}
			mine = append(mine, pp)
		}
	}
	var deployed []published
	for _, rc := range m.r.State().RCs("") {
		deployed = append(deployed, publishedPorts(rc.Template)...)
	}
	for _, pp := range mine {
		servedByUs := false
		for _, o := range deployed {
			if !pp.clashes(o) {
				continue
			}
			if o.project != pp.project {
				return conflict("port %s of service %s is already published by service %s of project %s; choose another host port or `dev down -p %s`", pp, pp.service, o.service, o.project, o.project)
			}
			servedByUs = true // this project's own port, served by dev already
		}
		if servedByUs {
			continue
		}
		addr := netip.IPv4Unspecified()
		if pp.hostIP != "" {
			a, err := netip.ParseAddr(pp.hostIP)
			if err != nil {
				return invalid("service %s: host_ip %q is not an IP address", pp.service, pp.hostIP)
			}
			addr = a
		}
		if err := m.local.CheckPort(netip.AddrPortFrom(addr, pp.port), pp.proto); err != nil {
			return conflict("port %s of service %s is already in use on node %s (%v); stop what holds it or choose another host port", pp, pp.service, m.opts.Node, err)
		}
	}
	return nil
}

func (m *Manager) handleServices(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, m.Services(r.URL.Query().Get("project")))
}

// Services describes the services of a project (every project when empty):
// virtual IP, ports, desired and ready replicas, endpoints.
func (m *Manager) Services(project string) []api.ServiceInfo {
	st := m.r.State()
	out := []api.ServiceInfo{}
	for _, rc := range st.RCs(project) {
		info := api.ServiceInfo{
			Project: rc.Project, Name: rc.Service, VIP: rc.VIP, Desired: rc.Replicas,
			Ports: rc.Template.ServicePorts(), Endpoints: []string{},
		}
		for _, pt := range rc.Template.Ports {
			if pt.Published != 0 {
				info.Published = append(info.Published, pt)
			}
		}
		for _, p := range st.Pods(state.PodFilter{Selector: rc.Selector()}) {
			if p.Ready() && p.SpecHash == rc.SpecHash {
				info.Ready++
				info.Endpoints = append(info.Endpoints, p.Status.IP)
			}
		}
		out = append(out, info)
	}
	return out
}

// handleEvents answers GET /v1/events?index=N&wait=D: the events after N,
// blocking up to D until there are some.
func (m *Manager) handleEvents(w http.ResponseWriter, r *http.Request) {
	if m.opts.Events == nil {
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
	list := m.opts.Events.List(after)
	if ws := q.Get("wait"); ws != "" && len(list.Events) == 0 {
		wait, err := time.ParseDuration(ws)
		if err != nil {
			writeError(w, invalid("wait %q: want a duration like 30s", ws))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), min(wait, maxWait))
		defer cancel()
		list = m.opts.Events.Wait(ctx, after)
	}
	if list.Events == nil {
		list.Events = []api.Event{}
	}
	writeJSON(w, list)
}

// handleDashboard answers GET /v1/dashboard with this node's dashboard
// address and a login link: whoever may use the API may use the dashboard.
func (m *Manager) handleDashboard(w http.ResponseWriter, r *http.Request) {
	if m.opts.Dashboard == nil {
		writeError(w, notFound("this node serves no dashboard"))
		return
	}
	info, err := m.opts.Dashboard()
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, info)
}

func (m *Manager) handleLeave(w http.ResponseWriter, r *http.Request) {
	if err := m.local.Leave(r.Context()); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, api.WriteResult{Index: m.r.State().Index()})
}

// RollbackRequest names the service to return to its previous version.
type rollbackRequest struct {
	Service string `json:"service"`
}

func (m *Manager) handleRollback(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req rollbackRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, invalid("decode rollback request: %v", err))
		return
	}
	rc, ok := m.r.State().RC(api.RCKey(name, req.Service))
	if !ok {
		writeError(w, notFound("no service %s in project %s", req.Service, name))
		return
	}
	if rc.Previous == nil {
		writeError(w, invalid("service %s has no previous version to roll back to", req.Service))
		return
	}
	idx, err := m.Apply(r.Context(), &state.RollbackRC{Key: rc.Key(), Reason: "dev rollback"})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, api.WriteResult{Index: idx})
}
