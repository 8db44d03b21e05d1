package node

import (
	"context"
	"log/slog"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
	"github.com/devhq/dev/dns"
	"github.com/devhq/dev/proxy"
)

// discovery turns the replicated state into what the node proxy and the
// cluster DNS server serve: a catalog rebuilt at every state change and
// swapped atomically, so lookups never take the state lock.
type discovery struct {
	st   *state.Store
	node string // this node: its pods are the local endpoints
	log  *slog.Logger

	cur     atomic.Pointer[catalog]
	mu      sync.Mutex
	changed chan struct{}
}

var (
	_ dns.Resolver      = (*discovery)(nil)
	_ proxy.Source      = (*discovery)(nil)
	_ proxy.RouteSource = (*discovery)(nil)
)

func newDiscovery(st *state.Store, node string, log *slog.Logger) *discovery {
	d := &discovery{st: st, node: node, log: log.With("component", "discovery"), changed: make(chan struct{})}
	d.cur.Store(buildCatalog(st, node))
	return d
}

// Run rebuilds the catalog at every state change (and every 10 s) and then
// wakes the data path, until ctx ends.
func (d *discovery) Run(ctx context.Context) error {
	retry := time.NewTicker(10 * time.Second)
	defer retry.Stop()
	for {
		changed := d.st.Changed()
		d.refresh()
		d.mu.Lock()
		close(d.changed)
		d.changed = make(chan struct{})
		d.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-retry.C:
		}
	}
}

// refresh rebuilds the catalog from the state now.
func (d *discovery) refresh() { d.cur.Store(buildCatalog(d.st, d.node)) }

// Services implements proxy.Source.
func (d *discovery) Services() []proxy.Service { return d.cur.Load().services }

// Routes implements proxy.RouteSource.
func (d *discovery) Routes() []proxy.Route { return d.cur.Load().routes }

// Changed implements proxy.Source and proxy.RouteSource.
func (d *discovery) Changed() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.changed
}

// PodAt names the pod with address ip ("" for none).
func (d *discovery) PodAt(ip netip.Addr) string { return d.cur.Load().byIP[ip].pod }

// ClientProject implements dns.Resolver.
func (d *discovery) ClientProject(client netip.Addr) (string, bool) {
	p, ok := d.cur.Load().byIP[client]
	return p.project, ok
}

// Service implements dns.Resolver.
func (d *discovery) Service(client netip.Addr, project, name string) (netip.Addr, []dns.Port, bool) {
	s := d.cur.Load().lookup(client, project, name)
	if s == nil || !s.vip.IsValid() {
		return netip.Addr{}, nil, false
	}
	return s.vip, s.ports, true
}

// Tasks implements dns.Resolver.
func (d *discovery) Tasks(client netip.Addr, project, name string) ([]netip.Addr, bool) {
	s := d.cur.Load().lookup(client, project, name)
	if s == nil {
		return nil, false
	}
	return s.ready, true
}

// Pod implements dns.Resolver.
func (d *discovery) Pod(project, pod string) (netip.Addr, bool) {
	a, ok := d.cur.Load().pods[project+"/"+pod]
	return a, ok
}

// catalog is an immutable view of services, endpoints and pods.
type catalog struct {
	byIP     map[netip.Addr]client
	pods     map[string]netip.Addr // "project/pod" -> IP
	names    map[string][]*svcEntry
	services []proxy.Service
	vips     []netip.Addr
	routes   []proxy.Route // the ingress router's
}

type client struct {
	project  string
	pod      string
	networks map[string]bool
}

type svcEntry struct {
	vip      netip.Addr
	ports    []dns.Port
	ready    []netip.Addr
	networks map[string]bool // networks on which the name is visible
}

// lookup finds the service (or alias) name of project visible to client.
// The host (not a pod) sees every service.
func (c *catalog) lookup(from netip.Addr, project, name string) *svcEntry {
	entries := c.names[project+"/"+name]
	cl, isPod := c.byIP[from]
	for _, e := range entries {
		if !isPod {
			return e
		}
		if cl.project != project {
			continue
		}
		for n := range cl.networks {
			if e.networks[n] {
				return e
			}
		}
	}
	return nil
}

func buildCatalog(st *state.Store, node string) *catalog {
	c := &catalog{byIP: map[netip.Addr]client{}, pods: map[string]netip.Addr{}, names: map[string][]*svcEntry{}}
	rcs := st.RCs("")
	specs := map[string]api.ServiceSpec{}
	for _, rc := range rcs {
		specs[rc.Key()] = rc.Template
	}
	ready := map[string][]netip.Addr{}
	local := map[netip.Addr]bool{}
	for _, p := range st.Pods(state.PodFilter{}) {
		ip, err := netip.ParseAddr(p.Status.IP)
		if err != nil || p.Deleting {
			continue
		}
		c.pods[p.Project+"/"+p.Name] = ip
		nets := map[string]bool{}
		for _, n := range specs[api.RCKey(p.Project, p.Service)].NetworkNames() {
			nets[n] = true
		}
		c.byIP[ip] = client{project: p.Project, pod: p.Name, networks: nets}
		if p.Ready() {
			ready[api.RCKey(p.Project, p.Service)] = append(ready[api.RCKey(p.Project, p.Service)], ip)
			local[ip] = p.Node == node
		}
	}
	for _, rc := range rcs {
		vip, _ := netip.ParseAddr(rc.VIP)
		eps := ready[rc.Key()]
		sort.Slice(eps, func(i, j int) bool { return eps[i].Less(eps[j]) })
		e := &svcEntry{vip: vip, ready: eps, networks: map[string]bool{}}
		for _, n := range rc.Template.NetworkNames() {
			e.networks[n] = true
		}
		for _, pt := range rc.Template.ServicePorts() {
			e.ports = append(e.ports, dns.Port{Name: pt.Name, Number: pt.Target, Protocol: pt.Protocol})
		}
		key := rc.Project + "/" + rc.Service
		c.names[key] = append(c.names[key], e)
		for _, na := range rc.Template.Networks {
			for _, alias := range na.Aliases {
				ae := *e
				ae.networks = map[string]bool{na.Name: true}
				k := rc.Project + "/" + alias
				c.names[k] = append(c.names[k], &ae)
			}
		}
		c.services = append(c.services, dataPath(rc, vip, eps, local))
		for _, r := range rc.Template.Ingress {
			c.routes = append(c.routes, proxy.Route{Host: r.Host, Path: r.Path, Service: key, Port: uint16(r.Port), TLS: r.TLS, H2C: api.IngressH2C(r.Protocol), Backends: eps})
		}
	}
	return c
}

// dataPath is what the kernel data path serves for a service: every port of
// its VIP and its published ports, over its ready pods.
func dataPath(rc api.ReplicationController, vip netip.Addr, eps []netip.Addr, local map[netip.Addr]bool) proxy.Service {
	s := proxy.Service{Name: rc.Key(), VIP: vip}
	for _, ip := range eps {
		s.Endpoints = append(s.Endpoints, proxy.Endpoint{Addr: ip, Local: local[ip]})
	}
	for _, pt := range rc.Template.Ports {
		if pt.Published == 0 {
			continue
		}
		host, _ := netip.ParseAddr(pt.HostIP) // invalid or unspecified: every address
		s.Published = append(s.Published, proxy.Published{
			HostIP: host, Port: pt.Published, Target: pt.Target, Protocol: pt.Protocol,
			HostMode: pt.Mode == api.PortModeHost,
		})
	}
	return s
}
