package compose

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/devhq/dev/cluster/api"
)

// ingressKey is the service extension that declares HTTP routes.
const ingressKey = "x-ingress"

// convertIngress reads a service's x-ingress: a list whose items are
// "HOST:PORT" or {host, path, port, tls, protocol}, normalized (api.NormalizeIngress).
func convertIngress(service string, s types.ServiceConfig) ([]api.IngressRoute, error) {
	raw, ok := s.Extensions[ingressKey]
	if !ok || raw == nil {
		return nil, nil
	}
	items, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf("service %q: %s: want a list of routes, each HOST:PORT or {host, path, port, tls, protocol}", service, ingressKey)
	}
	var out []api.IngressRoute
	for i, item := range items {
		r, err := ingressItem(item)
		if err == nil {
			r, err = api.NormalizeIngress(r)
		}
		if err != nil {
			return nil, fmt.Errorf("service %q: %s[%d]: %w", service, ingressKey, i, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// ingressFields are the keys of a route's long form.
var ingressFields = []string{"host", "path", "port", "tls", "protocol"}

func ingressItem(item any) (api.IngressRoute, error) {
	switch v := item.(type) {
	case string:
		host, port, ok := strings.Cut(v, ":")
		if !ok {
			return api.IngressRoute{}, fmt.Errorf("%q: want HOST:PORT (e.g. app.example.com:8000)", v)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return api.IngressRoute{}, fmt.Errorf("%q: port %q is not a number", v, port)
		}
		return api.IngressRoute{Host: host, Port: p}, nil
	case map[string]any:
		var r api.IngressRoute
		for k := range v {
			if !slices.Contains(ingressFields, k) {
				return r, fmt.Errorf("unknown key %q (want %s)", k, strings.Join(ingressFields, ", "))
			}
		}
		var err error
		if r.Host, err = ingressString(v, "host"); err != nil {
			return r, err
		}
		if r.Path, err = ingressString(v, "path"); err != nil {
			return r, err
		}
		if r.TLS, err = ingressString(v, "tls"); err != nil {
			return r, err
		}
		if r.Protocol, err = ingressString(v, "protocol"); err != nil {
			return r, err
		}
		switch p := v["port"].(type) {
		case nil:
			return r, fmt.Errorf("host %s: no port: give the container port the service serves HTTP on", r.Host)
		case int:
			r.Port = p
		case uint64:
			r.Port = int(min(p, math.MaxInt32))
		case float64:
			if p != math.Trunc(p) {
				return r, fmt.Errorf("host %s: port %v is not a whole number", r.Host, p)
			}
			r.Port = int(max(min(p, math.MaxInt32), math.MinInt32))
		case string:
			if r.Port, err = strconv.Atoi(p); err != nil {
				return r, fmt.Errorf("host %s: port %q is not a number", r.Host, p)
			}
		default:
			return r, fmt.Errorf("host %s: port %v: want a number", r.Host, p)
		}
		return r, nil
	}
	return api.IngressRoute{}, fmt.Errorf("%v: want HOST:PORT or {host, path, port, tls, protocol}", item)
}

func ingressString(m map[string]any, key string) (string, error) {
	switch v := m[key].(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	case bool:
		if key == "tls" && !v {
			return api.IngressTLSOff, nil // YAML reads a bare off as false
		}
	}
	return "", fmt.Errorf("%s %v: want a string", key, m[key])
}

// normalizeIngress writes the services' routes back into the model in
// their long form with defaults filled in, so that dev config shows what
// dev runs.
func normalizeIngress(model *types.Project, p *api.Project) {
	for _, s := range p.Services {
		svc, ok := model.Services[s.Name]
		if !ok || len(s.Ingress) == 0 {
			continue
		}
		routes := make([]any, len(s.Ingress))
		for i, r := range s.Ingress {
			routes[i] = map[string]any{"host": r.Host, "path": r.Path, "port": r.Port, "tls": r.TLS, "protocol": r.Protocol}
		}
		svc.Extensions = maps.Clone(svc.Extensions)
		if svc.Extensions == nil {
			svc.Extensions = types.Extensions{}
		}
		svc.Extensions[ingressKey] = routes
		model.Services[s.Name] = svc
	}
}

// localhostRoutes gives, when the project's top-level x-ingress asks for
// it ({localhost: true}), every service that serves a TCP port (ports: or
// expose:) a route <service>.<project>.localhost to the first of them,
// unless it routes that host already: https://web.hello.localhost on a
// laptop with one line of compose.
func localhostRoutes(model *types.Project, p *api.Project) error {
	raw, ok := model.Extensions[ingressKey]
	if !ok || raw == nil {
		return nil
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return fmt.Errorf("top-level %s: want {localhost: true}", ingressKey)
	}
	for k := range m {
		if k != "localhost" {
			return fmt.Errorf("top-level %s: unknown key %q (want localhost)", ingressKey, k)
		}
	}
	on, ok := m["localhost"].(bool)
	if !ok {
		return fmt.Errorf("top-level %s: localhost %v: want true or false", ingressKey, m["localhost"])
	}
	if !on {
		return nil
	}
	project := strings.ReplaceAll(strings.ToLower(p.Name), "_", "-")
	for i, s := range p.Services {
		port := 0
		for _, pt := range s.ServicePorts() {
			if pt.Protocol == "tcp" {
				port = int(pt.Target)
				break
			}
		}
		if port == 0 {
			continue
		}
		host := strings.ReplaceAll(strings.ToLower(s.Name), "_", "-") + "." + project + ".localhost"
		if slices.ContainsFunc(s.Ingress, func(r api.IngressRoute) bool { return r.Host == host }) {
			continue
		}
		r, err := api.NormalizeIngress(api.IngressRoute{Host: host, Port: port})
		if err != nil {
			return fmt.Errorf("service %q: the route top-level %s gives it: %w", s.Name, ingressKey, err)
		}
		p.Services[i].Ingress = append(p.Services[i].Ingress, r)
	}
	return nil
}
