package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"sort"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

func (srv *Server) registerProjects(mux *http.ServeMux) {
	handle(mux, "GET /v1/projects", roleRead, srv.handleListProjects)
	handle(mux, "PUT /v1/projects/{name}", roleAdmin, srv.handleApplyProject)
	handle(mux, "DELETE /v1/projects/{name}", roleAdmin, srv.handleDeleteProject)
	handle(mux, "DELETE /v1/projects/{name}/volumes", roleAdmin, srv.handleDeleteVolumes)
	handle(mux, "POST /v1/projects/{name}/scale", roleAdmin, srv.handleScale)
	handle(mux, "POST /v1/projects/{name}/rollback", roleAdmin, srv.handleRollback)
	handle(mux, "POST /v1/projects/{name}/rm", roleAdmin, srv.handleRemove)
}

// validateProject checks a project sent to path name: the body's name
// must be the path's, and the project valid (api.ValidateProject).
func validateProject(name string, p *api.Project) error {
	if p.Name != name {
		return invalid("project name %q in body does not match %q in path", p.Name, name)
	}
	if err := api.ValidateProject(p); err != nil {
		return invalid("%v", err)
	}
	return nil
}

func (srv *Server) handleApplyProject(w http.ResponseWriter, r *http.Request) {
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
	// Sealed first: a sealed file's digest is part of the template hash
	// the state keeps, and the diff compares with that.
	if err := srv.sealFiles(r.Context(), &p); err != nil {
		writeError(w, err)
		return
	}
	for i := range p.Services { // as the state machine will (its answer's hashes)
		if rc, ok := srv.r.State().RC(api.RCKey(p.Name, p.Services[i].Name)); ok {
			p.Services[i].KeepRecreate(rc.Template)
		}
	}
	res := srv.r.State().DiffProject(p)
	if err := srv.checkPublishedPorts(&p); err != nil {
		writeError(w, err)
		return
	}
	idx, err := srv.mgr.Apply(r.Context(), &state.ApplyProject{Project: p, ServiceCIDR: srv.opts.ServiceCIDR})
	if err != nil {
		writeError(w, err)
		return
	}
	res.Index = idx
	res.Hashes = map[string]string{}
	for _, s := range p.Services {
		res.Hashes[s.Name] = s.Hash() // as the state computes it, of the template as stored
	}
	writeJSON(w, res)
}

func (srv *Server) handleListProjects(w http.ResponseWriter, r *http.Request) {
	st := srv.r.State()
	out := []api.ProjectSummary{}
	for _, p := range st.Projects() {
		rcs := st.RCs(p.Name)
		for i := range rcs { // secrets and configs leave as digests, never content
			rcs[i].Template = rcs[i].Template.Redacted()
			if rcs[i].Previous != nil {
				prev := rcs[i].Previous.Redacted()
				rcs[i].Previous = &prev
			}
		}
		out = append(out, api.ProjectSummary{Name: p.Name, Services: rcs})
	}
	writeJSON(w, out)
}

func (srv *Server) handleDeleteProject(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	st := srv.r.State()
	if _, ok := st.Project(name); !ok && len(st.Pods(state.PodFilter{Project: name})) == 0 {
		writeError(w, notFound("project %s is not deployed", name))
		return
	}
	idx, err := srv.mgr.Apply(r.Context(), &state.DeleteProject{Name: name})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, api.WriteResult{Index: idx})
}

func (srv *Server) handleDeleteVolumes(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if n := len(srv.r.State().Pods(state.PodFilter{Project: name})); n > 0 {
		writeError(w, conflict("project %s still has %d pods; remove them first (dev down)", name, n))
		return
	}
	if err := srv.removeVolumesEverywhere(r.Context(), name); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, api.WriteResult{Index: srv.r.State().Index()})
}

func (srv *Server) handleScale(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req api.ScaleRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, invalid("decode scale request: %v", err))
		return
	}
	st := srv.r.State()
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
	idx, err := srv.mgr.Apply(r.Context(), &state.Scale{Project: name, Replicas: req.Replicas})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, api.WriteResult{Index: idx})
}

// handleRemove is `dev rm`: the project's removable pods (state.Removable)
// of the services asked (all without), or of the pods asked, are removed
// with their controllers' replicas lowered, in one write (the state machine
// checks each pod again).
func (srv *Server) handleRemove(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req api.RemoveRequest
	if _, err := readBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	st := srv.r.State()
	if _, ok := st.Project(name); !ok {
		writeError(w, notFound("project %s is not deployed; nothing to remove", name))
		return
	}
	for _, svc := range req.Services {
		if _, ok := st.RC(api.RCKey(name, svc)); !ok {
			writeError(w, notFound("no service %s in project %s", svc, name))
			return
		}
	}
	res := api.RemoveResult{Removed: []string{}}
	for _, p := range st.Pods(state.PodFilter{Project: name}) {
		if (len(req.Services) > 0 && !slices.Contains(req.Services, p.Service)) ||
			(len(req.Pods) > 0 && !slices.Contains(req.Pods, p.Name)) {
			continue
		}
		if rc, ok := st.RC(api.RCKey(name, p.Service)); ok && state.Removable(p, rc) {
			res.Removed = append(res.Removed, p.Name)
		}
	}
	sort.Strings(res.Removed)
	if req.DryRun || len(res.Removed) == 0 {
		writeJSON(w, res)
		return
	}
	idx, err := srv.mgr.Apply(r.Context(), &state.RemoveStoppedPods{Names: res.Removed})
	if err != nil {
		writeError(w, err)
		return
	}
	res.Index = idx
	writeJSON(w, res)
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
		out = append(out, published{s.Project, s.Name, pt.HostIP, pt.Published, pt.Proto()})
	}
	return out
}

// checkPublishedPorts refuses a project whose published ports collide with
// each other, with another deployed service, or with a program that holds
// the port on this node. Nothing is deployed when it fails.
func (srv *Server) checkPublishedPorts(p *api.Project) error {
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
	for _, rc := range srv.r.State().RCs("") {
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
		if err := srv.local.CheckPort(netip.AddrPortFrom(addr, pp.port), pp.proto); err != nil {
			return conflict("port %s of service %s is already in use on node %s (%v); stop what holds it or choose another host port", pp, pp.service, srv.opts.Node, err)
		}
	}
	return nil
}

// RollbackRequest names the service to return to its previous version.
type rollbackRequest struct {
	Service string `json:"service"`
}

func (srv *Server) handleRollback(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req rollbackRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, invalid("decode rollback request: %v", err))
		return
	}
	rc, ok := srv.r.State().RC(api.RCKey(name, req.Service))
	if !ok {
		writeError(w, notFound("no service %s in project %s", req.Service, name))
		return
	}
	if rc.Previous == nil {
		writeError(w, invalid("service %s has no previous version to roll back to", req.Service))
		return
	}
	idx, err := srv.mgr.Apply(r.Context(), &state.RollbackRC{Key: rc.Key(), Reason: "dev rollback"})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, api.WriteResult{Index: idx})
}

// removeVolumesEverywhere removes a project's volumes on every ready node.
func (srv *Server) removeVolumesEverywhere(ctx context.Context, project string) error {
	var errs []error
	for _, n := range srv.r.State().Nodes() {
		if n.Name == srv.opts.Node {
			errs = append(errs, srv.local.RemoveVolumes(ctx, project))
			continue
		}
		if n.Status != api.NodeReady || n.APIAddr == "" || srv.opts.Peers == nil {
			continue
		}
		errs = append(errs, srv.opts.Peers.RemoveVolumes(ctx, n.APIAddr, project))
	}
	return errors.Join(errs...)
}
