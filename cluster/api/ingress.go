package api

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// IngressRoute is one HTTP route to a service (compose x-ingress): requests
// for Host whose path starts with Path (by whole segments) go to the
// service's ready pods on Port.
type IngressRoute struct {
	Host string `json:"host"`
	// Path is a prefix, "/" by default: "/api" takes /api and /api/x, not
	// /apix.
	Path string `json:"path"`
	Port int    `json:"port"`
	// TLS is how the route is served over HTTPS: IngressTLSAuto (a
	// certificate from an ACME CA), IngressTLSLocal (the cluster's own CA,
	// the default under .localhost) or IngressTLSOff.
	TLS string `json:"tls"`
	// Protocol is what the router speaks to the pods: IngressProtoHTTP
	// (HTTP/1.1, the default), IngressProtoH2C (HTTP/2 without TLS) or
	// IngressProtoGRPC (h2c too: gRPC needs HTTP/2's trailers). A route
	// stored before the field existed has none: HTTP/1.1.
	Protocol string `json:"protocol,omitempty"`
}

// The backend protocols of an IngressRoute.
const (
	IngressProtoHTTP = "http"
	IngressProtoH2C  = "h2c"
	IngressProtoGRPC = "grpc"
)

// IngressH2C reports whether a route's pods are spoken to in HTTP/2
// without TLS (h2c, grpc).
func IngressH2C(protocol string) bool {
	return protocol == IngressProtoH2C || protocol == IngressProtoGRPC
}

// The TLS modes of an IngressRoute.
const (
	IngressTLSAuto  = "auto"
	IngressTLSLocal = "local"
	IngressTLSOff   = "off"
)

// hostRE is a DNS name of lowercase letters, digits and '-', labels of
// 1-63, at least one dot or a single label ("localhost" excepted: a
// route needs a name to route by).
var hostRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)

// NormalizeIngress returns r with its defaults filled in (path "/", TLS
// local under .localhost and auto elsewhere), the host lowercased and a
// trailing slash dropped from the path, or an error that says what is
// wrong with it.
func NormalizeIngress(r IngressRoute) (IngressRoute, error) {
	r.Host = strings.ToLower(strings.TrimSuffix(r.Host, "."))
	switch {
	case r.Host == "":
		return r, fmt.Errorf("a route needs a host (e.g. app.example.com)")
	case len(r.Host) > 253 || !hostRE.MatchString(r.Host):
		return r, fmt.Errorf("host %q: want a DNS name of letters, digits, '-' and '.' (e.g. app.example.com)", r.Host)
	}
	if r.Path == "" {
		r.Path = "/"
	}
	switch {
	case !strings.HasPrefix(r.Path, "/"):
		return r, fmt.Errorf("host %s: path %q: want an absolute path prefix (e.g. /api)", r.Host, r.Path)
	case strings.ContainsAny(r.Path, "?#*% \t\r\n") || strings.Contains(r.Path, "//") || slices.ContainsFunc(strings.Split(r.Path, "/"), dotSegment):
		return r, fmt.Errorf("host %s: path %q: want a plain path prefix (no ?, #, *, %%, spaces, //, . or ..)", r.Host, r.Path)
	}
	if len(r.Path) > 1 {
		r.Path = strings.TrimSuffix(r.Path, "/")
	}
	if r.Port < 1 || r.Port > 65535 {
		return r, fmt.Errorf("host %s: port %d: want the container port the service serves HTTP on (1-65535)", r.Host, r.Port)
	}
	switch r.TLS {
	case "":
		r.TLS = IngressTLSAuto
		if LocalHost(r.Host) {
			r.TLS = IngressTLSLocal
		}
	case IngressTLSLocal:
		if !LocalHost(r.Host) {
			return r, fmt.Errorf("host %s: tls: local is for hosts under .localhost, which resolve to the machine itself (the local CA signs no other name); use tls: auto or off", r.Host)
		}
	case IngressTLSAuto, IngressTLSOff:
	default:
		return r, fmt.Errorf("host %s: tls %q: want auto, local or off", r.Host, r.TLS)
	}
	switch r.Protocol {
	case "":
		r.Protocol = IngressProtoHTTP
	case IngressProtoHTTP, IngressProtoH2C, IngressProtoGRPC:
	default:
		return r, fmt.Errorf("host %s: protocol %q: want http (HTTP/1.1 to the pods), h2c (HTTP/2 without TLS) or grpc (a gRPC server: h2c)", r.Host, r.Protocol)
	}
	return r, nil
}

// LocalHost reports whether host is localhost or under .localhost: the
// names the local HTTPS CA signs for (browsers resolve them to the machine
// itself).
func LocalHost(host string) bool { return host == "localhost" || strings.HasSuffix(host, ".localhost") }

// dotSegment reports whether a path segment is "." or "..".
func dotSegment(seg string) bool { return seg == "." || seg == ".." }

// CleanRequestPath reports whether a request's (decoded) path may be
// routed by prefix: absolute, without "." or ".." segments or empty ones
// ("//"), which a pod could resolve outside the prefix that routed it.
func CleanRequestPath(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false
	}
	segs := strings.Split(p[1:], "/")
	for i, s := range segs {
		if dotSegment(s) || (s == "" && i < len(segs)-1) {
			return false
		}
	}
	return true
}

// CheckIngress checks every route of p and that no two services claim
// the same host and path (ValidateProject calls it; so does the compose
// conversion, so that dev config refuses what dev up would).
func CheckIngress(p *Project) error {
	owner := map[string]string{}
	for _, s := range p.Services {
		for _, r := range s.Ingress {
			n, err := NormalizeIngress(r)
			if err != nil {
				return fmt.Errorf("service %s: x-ingress: %w", s.Name, err)
			}
			if r.Protocol == "" && n.Protocol == IngressProtoHTTP {
				n.Protocol = "" // stored before routes had a protocol: HTTP/1.1
			}
			if n != r {
				return fmt.Errorf("service %s: x-ingress: route %+v is not normalized (want %+v)", s.Name, r, n)
			}
			key := r.Host + r.Path
			if o, ok := owner[key]; ok {
				return fmt.Errorf("services %s and %s both route %s%s: give each host and path to one service", o, s.Name, r.Host, r.Path)
			}
			owner[key] = s.Name
		}
		for _, c := range s.Sidecars {
			if len(c.Ingress) > 0 {
				return fmt.Errorf("service %s: x-ingress: declare it on service %s, whose pod network %s shares (network_mode: service:%s)", c.Name, s.Name, c.Name, s.Name)
			}
		}
	}
	return nil
}

// IngressConflict returns an error when a route of p takes a host and path
// that a service of another project in others already routes.
func IngressConflict(p Project, others []ReplicationController) error {
	for _, s := range p.Services {
		for _, r := range s.Ingress {
			for _, rc := range others {
				if rc.Project == p.Name {
					continue
				}
				for _, o := range rc.Template.Ingress {
					if o.Host == r.Host && o.Path == r.Path {
						return fmt.Errorf("service %s: x-ingress %s%s is routed to service %s of project %s already: remove it there first (dev down -p %s), or pick another host or path",
							s.Name, r.Host, r.Path, rc.Service, rc.Project, rc.Project)
					}
				}
			}
		}
	}
	return nil
}

// MatchIngress reports whether a request path falls under the route's
// path prefix, by whole segments: "/api" matches "/api" and "/api/x", not
// "/apix".
func MatchIngress(prefix, path string) bool {
	if prefix == "/" {
		return true
	}
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}
