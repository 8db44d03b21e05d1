package node

import (
	"strings"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/proxy"
)

// accessLogSize is how many requests a node's ingress access log keeps
// (`dev logs --ingress`): the oldest go first; paths are cut at
// api.MaxAccessPath, so the ring holds a few MiB at most.
const accessLogSize = 4096

// ingressObserver is the ingress router's Observe: every request for a
// route goes to the node's metrics and to its access log, the pod named
// from the state (its address when the state no longer knows it).
func ingressObserver(node string, met *metrics, log *proxy.AccessLog, pods func(a *proxy.Access) string) func(*proxy.Access) {
	return func(a *proxy.Access) {
		met.observeIngress(a)
		project, service, _ := strings.Cut(a.Route.Service, "/")
		log.Add(api.IngressAccess{
			Time: a.Start, Node: node, Client: a.Client, Host: a.Route.Host, Path: a.Path, Method: a.Method, Proto: a.Proto,
			Status: a.Status, Bytes: a.Bytes, Duration: a.Took,
			Project: project, Service: service, RoutePath: a.Route.Path, Pod: pods(a),
		})
	}
}

// podOf names the pod a request went to.
func (d *discovery) podOf(a *proxy.Access) string {
	if !a.Pod.IsValid() {
		return ""
	}
	if name := d.PodAt(a.Pod); name != "" {
		return name
	}
	return a.Pod.String()
}
