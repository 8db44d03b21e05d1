package compose

import (
	"fmt"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/devhq/dev/cluster/api"
)

// Namespaces other than the network's sidecars (sidecars.go): compose's
// `network_mode: host` and `pid:`.

// convertNamespaces sets spec's HostNetwork and PID from s. `pid:
// service:X` is the pod's PID namespace, which only a sidecar of X can
// share (groupSidecars makes X's container join it too).
func convertNamespaces(name string, s types.ServiceConfig, spec *api.ServiceSpec, w *warner) error {
	switch pid := s.Pid; {
	case pid == "":
	case pid == "host":
		spec.PID = api.PIDHost
	case strings.HasPrefix(pid, types.ServicePrefix):
		main := strings.TrimPrefix(pid, types.ServicePrefix)
		if s.NetworkMode != types.ServicePrefix+main {
			return fmt.Errorf("service %q: pid: %s needs network_mode: service:%s as well: dev shares a PID namespace only between the containers of one pod", name, pid, main)
		}
		spec.PID = api.PIDPod
	default:
		return fmt.Errorf("service %q: pid: %s is not supported; use pid: host, or pid: service:NAME together with network_mode: service:NAME", name, pid)
	}
	if s.NetworkMode != "host" {
		return nil
	}
	spec.HostNetwork = true
	// As Docker does, publishing is dropped: the pod listens on the node's
	// own ports, which the ports' targets are.
	for i, p := range spec.Ports {
		if p.Published != 0 && p.Published != p.Target {
			w.add("ports", fmt.Sprintf("published port %d is discarded with network_mode: host; the pod serves port %d on its node directly", p.Published, p.Target))
		}
		spec.Ports[i] = api.PortSpec{Name: p.Name, Target: p.Target, Protocol: p.Protocol}
	}
	return nil
}
