package compose

import (
	"fmt"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/devhq/dev/cluster/api"
)

// A service declared with `network_mode: service:web` shares web's network:
// compose runs it as a container in web's network namespace. In dev it is
// a sidecar: one container in every pod of web (api.ServiceSpec.Sidecars),
// placed, scaled, updated and removed with it, with no pods of its own.

// sidecarOf returns the service whose network s shares, if any, or an error
// for the network modes dev cannot run.
func sidecarOf(name string, s types.ServiceConfig) (string, error) {
	mode := s.NetworkMode
	switch {
	case strings.HasPrefix(mode, types.ServicePrefix):
		return strings.TrimPrefix(mode, types.ServicePrefix), nil
	case strings.HasPrefix(mode, types.ContainerPrefix):
		return "", fmt.Errorf("service %q: network_mode: %s is not supported (dev manages every container); use network_mode: service:NAME to share a service's network", name, mode)
	}
	return "", nil
}

// groupSidecars moves the sidecar services of specs into the Sidecars of
// the service whose network they share, and returns the services that
// have pods. Dependencies on a sidecar become dependencies on its service.
func groupSidecars(p *types.Project, specs []api.ServiceSpec) ([]api.ServiceSpec, error) {
	of := map[string]string{} // sidecar -> its service
	for _, name := range p.ServiceNames() {
		main, err := sidecarOf(name, p.Services[name])
		if err != nil {
			return nil, err
		}
		if main != "" {
			of[name] = main
		}
	}
	if len(of) == 0 {
		return specs, nil
	}
	byName := map[string]*api.ServiceSpec{}
	for i := range specs {
		byName[specs[i].Name] = &specs[i]
	}
	names := make([]string, 0, len(of))
	for sc := range of {
		names = append(names, sc)
	}
	sort.Strings(names)
	for _, sc := range names {
		main := of[sc]
		spec, mainSpec := byName[sc], byName[main]
		switch {
		case mainSpec == nil:
			return nil, fmt.Errorf("service %q: network_mode: service:%s names no service of the project", sc, main)
		case of[main] != "":
			return nil, fmt.Errorf("service %q: network_mode: service:%s, which itself shares the network of %s; use network_mode: service:%s", sc, main, of[main], of[main])
		case sc == "infra":
			return nil, fmt.Errorf("service %q: a sidecar cannot be named infra (the name of its pod's infra container); rename the service", sc)
		case len(spec.Ports) > 0:
			return nil, fmt.Errorf("service %q: ports belong to the pod it shares with %s; move them to service %s", sc, main, main)
		case spec.ContainerName != "":
			return nil, fmt.Errorf("service %q: container_name cannot be set on a sidecar (its container is named after %s's pod); remove it", sc, main)
		}
		if explicitReplicas(p.Services[sc]) && spec.Replicas != mainSpec.Replicas {
			return nil, fmt.Errorf("service %q: %d replicas, but it runs in the pods of %s, which has %d; remove deploy.replicas from %s", sc, spec.Replicas, main, mainSpec.Replicas, sc)
		}
		c := *spec
		c.Replicas, c.Placement, c.Networks, c.Expose = 0, api.Placement{}, nil, nil
		if c.PID == api.PIDPod {
			// Compose puts the sidecar in its service's PID namespace. In
			// a pod that namespace is the pod's, which the service's
			// container joins too; its host's, if it runs in that.
			switch mainSpec.PID {
			case api.PIDHost:
				c.PID = api.PIDHost
			default:
				mainSpec.PID = api.PIDPod
			}
		}
		c.DependsOn = without(c.DependsOn, main)
		mainSpec.Sidecars = append(mainSpec.Sidecars, c)
		mainSpec.Expose = append(mainSpec.Expose, spec.Expose...) // the pod's ports
	}
	out := make([]api.ServiceSpec, 0, len(specs)-len(of))
	for _, s := range specs {
		if of[s.Name] != "" {
			continue
		}
		for i, d := range s.DependsOn {
			if m := of[d.Service]; m != "" {
				s.DependsOn[i].Service = m // a sidecar runs in its service's pods
			}
		}
		s.DependsOn = without(s.DependsOn, s.Name)
		out = append(out, s)
	}
	return out, nil
}

// explicitReplicas reports whether the file sets the service's replicas.
func explicitReplicas(s types.ServiceConfig) bool {
	return s.Scale != nil || s.Deploy != nil && s.Deploy.Replicas != nil
}

// without returns deps without those on service.
func without(deps []api.Dependency, service string) []api.Dependency {
	var out []api.Dependency
	for _, d := range deps {
		if d.Service != service {
			out = append(out, d)
		}
	}
	return out
}
