package apiserver

import (
	"net/http"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

func (srv *Server) registerServices(mux *http.ServeMux) {
	handle(mux, "GET /v1/services", roleRead, srv.handleServices)
}

func (srv *Server) handleServices(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, srv.Services(r.URL.Query().Get("project")))
}

// Services describes the services of a project (every project when empty):
// virtual IP, ports, desired and ready replicas, endpoints.
func (srv *Server) Services(project string) []api.ServiceInfo {
	st := srv.r.State()
	out := []api.ServiceInfo{}
	for _, rc := range st.RCs(project) {
		info := api.ServiceInfo{
			Project: rc.Project, Name: rc.Service, VIP: rc.VIP, Desired: rc.Replicas,
			Ports: rc.Template.ServicePorts(), Endpoints: []string{}, Ingress: rc.Template.Ingress,
		}
		for _, route := range rc.Template.Ingress {
			if route.TLS == api.IngressTLSAuto && srv.opts.CertState != nil {
				if info.Certs == nil {
					info.Certs = map[string]string{}
				}
				info.Certs[route.Host] = srv.opts.CertState(route.Host)
			}
		}
		for _, pt := range rc.Template.Ports {
			if pt.Published != 0 {
				info.Published = append(info.Published, pt)
			}
		}
		// Endpoints are what the data path serves (cluster/node's
		// discovery): every ready pod, old template or new during an
		// update. Ready counts the pods of the current template.
		for _, p := range st.Pods(state.PodFilter{Selector: rc.Selector()}) {
			if !p.Ready() {
				continue
			}
			info.Endpoints = append(info.Endpoints, p.Status.IP)
			if p.SpecHash == rc.SpecHash {
				info.Ready++
			}
		}
		out = append(out, info)
	}
	return out
}
