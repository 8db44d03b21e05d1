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
	"github.com/devhq/dev/cluster/overlay"
	"github.com/devhq/dev/cluster/state"
	"github.com/devhq/dev/dns"
	"github.com/devhq/dev/proxy"
)

// discovery turns the replicated state into what the node proxy and the
// cluster DNS server serve: a catalog rebuilt at every state change and
// swapped atomically, so lookups never take the state lock.
type discovery struct {
	st   *state.Store
	vips overlay.VIPs
	log  *slog.Logger

	cur     atomic.Pointer[catalog]
	mu      sync.Mutex
	changed chan struct{}
}

var (
	_ dns.Resolver = (*discovery)(nil)
	_ proxy.Source = (*discovery)(nil)
)

func newDiscovery(st *state.Store, vips overlay.VIPs, log *slog.Logger) *discovery {
	d := &discovery{st: st, vips: vips, log: log.With("component", "discovery"), changed: make(chan struct{})}
	d.cur.Store(buildCatalog(st))
	return d
}

// Run rebuilds the catalog at every state change, binds the virtual IPs and
// then wakes the proxy, until ctx ends; it unbinds the virtual IPs on return.
func (d *discovery) Run(ctx context.Context) error {
	defer func() {
		if err := d.vips.Set(nil); err != nil {
			d.log.Warn("unbind virtual ips", "err", err)
		}
	}()
	var lastVIPs string
	retry := time.NewTicker(10 * time.Second)
	defer retry.Stop()
	for {
		changed := d.st.Changed()
		c := buildCatalog(d.st)
		d.cur.Store(c)
		if key := addrsKey(c.vips); key != lastVIPs {
			if err := d.vips.Set(c.vips); err != nil {
				d.log.Warn("bind virtual ips", "err", err)
			} else {
				lastVIPs = key
			}
		}
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

// Services implements proxy.Source.
func (d *discovery) Services() []proxy.Service { return d.cur.Load().frontends }

// Changed implements proxy.Source.
func (d *discovery) Changed() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.changed
}

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
	byIP      map[netip.Addr]client
	pods      map[string]netip.Addr // "project/pod" -> IP
	names     map[string][]*svcEntry
	frontends []proxy.Service
	vips      []netip.Addr
}

type client struct {
	project  string
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

func buildCatalog(st *state.Store) *catalog {
	c := &catalog{byIP: map[netip.Addr]client{}, pods: map[string]netip.Addr{}, names: map[string][]*svcEntry{}}
	rcs := st.RCs("")
	specs := map[string]api.ServiceSpec{}
	for _, rc := range rcs {
		specs[rc.Key()] = rc.Template
	}
	ready := map[string][]netip.Addr{}
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
		c.byIP[ip] = client{project: p.Project, networks: nets}
		if p.Ready() {
			ready[api.RCKey(p.Project, p.Service)] = append(ready[api.RCKey(p.Project, p.Service)], ip)
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
		if !vip.IsValid() {
			continue
		}
		c.vips = append(c.vips, vip)
		for _, pt := range rc.Template.ServicePorts() {
			c.frontends = append(c.frontends, frontend(rc, netip.AddrPortFrom(vip, pt.Target), pt.Protocol, pt.Target, eps))
		}
		for _, pt := range rc.Template.Ports {
			if pt.Published == 0 {
				continue
			}
			host := netip.IPv4Unspecified()
			if a, err := netip.ParseAddr(pt.HostIP); err == nil {
				host = a
			}
			proto := pt.Protocol
			if proto == "" {
				proto = "tcp"
			}
			c.frontends = append(c.frontends, frontend(rc, netip.AddrPortFrom(host, pt.Published), proto, pt.Target, eps))
		}
	}
	return c
}

func frontend(rc api.ReplicationController, listen netip.AddrPort, proto string, target uint16, eps []netip.Addr) proxy.Service {
	s := proxy.Service{
		Name:     rc.Project + "/" + rc.Service + " " + listen.String() + "/" + proto,
		Listen:   listen,
		Protocol: proto,
	}
	for _, ip := range eps {
		s.Endpoints = append(s.Endpoints, netip.AddrPortFrom(ip, target))
	}
	return s
}

func addrsKey(as []netip.Addr) string {
	b := make([]byte, 0, len(as)*16)
	for _, a := range as {
		b = append(b, a.String()...)
		b = append(b, ',')
	}
	return string(b)
}
