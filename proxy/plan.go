package proxy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// The table's fixed objects. Service and published-port chains are named
// by chainName.
const (
	DefaultTable = "dev"

	setVIPs       = "vips"        // every VIP: what is not DNATed is rejected
	setHairpin    = "hairpin"     // EP . EP for every endpoint: a pod reaching itself is masqueraded
	mapServiceIPs = "service-ips" // VIP : goto svc-… (every TCP and UDP port)
	mapNodePorts  = "node-ports"  // proto . port : goto pub-… (every local address)
	mapHostPorts  = "host-ports"  // addr . proto . port : goto pub-… (one host_ip)
	chainServices = "services"    // dispatch: VIPs, then published ports
	chainReject   = "reject-unserved"
)

// Protocol numbers (IANA) of what the data path forwards.
const (
	protoTCP = 6
	protoUDP = 17
)

// portKey is a node-ports key; hostPortKey a host-ports key.
type portKey struct {
	proto uint8
	port  uint16
}

type hostPortKey struct {
	addr  netip.Addr
	proto uint8
	port  uint16
}

// ruleset is the content of the table beyond its fixed skeleton: set and
// map elements and the generated chains. Two rulesets are compared to
// compute the incremental change that turns one into the other.
type ruleset struct {
	vips       map[netip.Addr]bool
	endpoints  map[netip.Addr]bool // the hairpin set; UDP flows to one that goes are flushed
	serviceIPs map[netip.Addr]string
	nodePorts  map[portKey]string
	hostPorts  map[hostPortKey]string
	portOwners map[string]string // published port label -> service (duplicates are errors)
	// chains holds the DNAT targets of each generated chain, whose one rule is
	// "dnat to numgen random mod N map { i : targets[i] }" (port 0 keeps the
	// destination port).
	chains map[string][]netip.AddrPort
}

func newRuleset() *ruleset { return newRulesetSized(0, 0) }

// newRulesetSized sizes the maps for a number of services and endpoints, so
// that planning a large table does not grow them step by step.
func newRulesetSized(services, endpoints int) *ruleset {
	return &ruleset{
		vips: make(map[netip.Addr]bool, services), endpoints: make(map[netip.Addr]bool, endpoints),
		serviceIPs: make(map[netip.Addr]string, services), nodePorts: map[portKey]string{},
		hostPorts: map[hostPortKey]string{}, chains: make(map[string][]netip.AddrPort, 2*services),
		portOwners: map[string]string{},
	}
}

// size is what the ruleset programs beyond the table's skeleton: the
// elements of its sets and maps (VIPs, endpoints, service IPs, published
// ports) and its generated chains (one rule each).
func (rs *ruleset) size() int {
	if rs == nil {
		return 0
	}
	return len(rs.vips) + len(rs.endpoints) + len(rs.serviceIPs) + len(rs.nodePorts) + len(rs.hostPorts) + len(rs.chains)
}

// dnatRule renders a generated chain's rule in nft syntax (tests, logs).
func dnatRule(targets []netip.AddrPort) string {
	var b strings.Builder
	fmt.Fprintf(&b, "dnat to numgen random mod %d map { ", len(targets))
	for i, t := range targets {
		if i > 0 {
			b.WriteString(", ")
		}
		if t.Port() == 0 {
			fmt.Fprintf(&b, "%d : %s", i, t.Addr())
		} else {
			fmt.Fprintf(&b, "%d : %s . %d", i, t.Addr(), t.Port())
		}
	}
	b.WriteString(" }")
	return b.String()
}

// planRules computes the ruleset that serves services. Invalid entries are
// reported in the error and left out; the rest is planned.
//
// A service with a VIP and ready endpoints:
//
//	service-ips: VIP : goto svc-NAME
//	chain svc-NAME { dnat to numgen random mod N map { i : EP } }   (every port, kept)
//
// A published port with endpoints to use (every endpoint; in host mode the
// local ones):
//
//	node-ports / host-ports: [addr .] proto . port : goto pub-NAME
//	chain pub-NAME { dnat to numgen random mod N map { i : EP . TARGET } }
//
// Masquerading is decided once, in the table's postrouting chain, by where
// a translated packet goes (see the skeleton), not per endpoint.
func planRules(services []Service) (*ruleset, error) {
	eps := 0
	for _, s := range services {
		eps += len(s.Endpoints)
	}
	rs := newRulesetSized(len(services), eps)
	var errs []error
	seenVIP := map[netip.Addr]string{}
	seenName := map[string]bool{}
	for _, s := range services {
		if seenName[s.Name] {
			errs = append(errs, fmt.Errorf("service %s: listed twice", s.Name))
			continue
		}
		seenName[s.Name] = true
		eps := sortedEndpoints(s.Endpoints)
		for _, ep := range eps {
			rs.endpoints[ep.Addr] = true
		}
		if s.VIP.IsValid() {
			vip := s.VIP.Unmap()
			switch {
			case !vip.Is4():
				errs = append(errs, fmt.Errorf("service %s: virtual ip %s is not IPv4", s.Name, vip))
			case seenVIP[vip] != "":
				errs = append(errs, fmt.Errorf("service %s: virtual ip %s is already used by %s", s.Name, vip, seenVIP[vip]))
			default:
				seenVIP[vip] = s.Name
				rs.vips[vip] = true
				if len(eps) > 0 {
					svc := chainName("svc", s.Name)
					targets := make([]netip.AddrPort, len(eps))
					for i, ep := range eps {
						targets[i] = netip.AddrPortFrom(ep.Addr, 0)
					}
					rs.chains[svc] = targets
					rs.serviceIPs[vip] = svc
				}
			}
		}
		for _, p := range s.Published {
			if err := rs.planPublished(s.Name, p, eps); err != nil {
				errs = append(errs, fmt.Errorf("service %s: %w", s.Name, err))
			}
		}
	}
	return rs, errors.Join(errs...)
}

// planPublished adds one published port. The port is claimed for svc even
// when it has no endpoint to go to yet, so that which service owns a port
// never depends on readiness.
func (rs *ruleset) planPublished(svc string, p Published, eps []Endpoint) error {
	proto, err := protoNumber(p.Protocol)
	if err != nil {
		return err
	}
	protoName := "tcp"
	if proto == protoUDP {
		protoName = "udp"
	}
	if p.Port == 0 || p.Target == 0 {
		return fmt.Errorf("published port %d -> %d: ports must be 1-65535", p.Port, p.Target)
	}
	host := p.HostIP.Unmap()
	if host.IsValid() && host.IsUnspecified() {
		host = netip.Addr{} // every address, IPv4 or IPv6 spelling
	}
	if host.IsValid() && !host.Is4() {
		return fmt.Errorf("published port %s: host_ip is not IPv4", netip.AddrPortFrom(host, p.Port))
	}
	label := fmt.Sprintf("%d/%s", p.Port, protoName)
	if host.IsValid() {
		label = fmt.Sprintf("%s:%d/%s", host, p.Port, protoName)
	}
	if other, dup := rs.portOwners[label]; dup {
		return fmt.Errorf("published port %s is already published by %s", label, other)
	}
	rs.portOwners[label] = svc
	var targets []netip.AddrPort
	for _, ep := range eps {
		if ep.Local || !p.HostMode {
			targets = append(targets, netip.AddrPortFrom(ep.Addr, p.Target))
		}
	}
	if len(targets) == 0 {
		return nil // nothing to serve here: the kernel refuses the port
	}
	pub := chainName("pub", svc, label)
	rs.chains[pub] = targets
	if host.IsValid() {
		rs.hostPorts[hostPortKey{host, proto, p.Port}] = pub
	} else {
		rs.nodePorts[portKey{proto, p.Port}] = pub
	}
	return nil
}

func protoNumber(p string) (uint8, error) {
	switch strings.ToLower(p) {
	case "tcp", "":
		return protoTCP, nil
	case "udp":
		return protoUDP, nil
	}
	return 0, fmt.Errorf("protocol %q is not supported (want tcp or udp)", p)
}

// sortedEndpoints returns the valid IPv4 endpoints, sorted and deduplicated.
func sortedEndpoints(eps []Endpoint) []Endpoint {
	out := make([]Endpoint, 0, len(eps))
	for _, ep := range eps {
		if a := ep.Addr.Unmap(); a.Is4() {
			out = append(out, Endpoint{Addr: a, Local: ep.Local})
		}
	}
	slices.SortFunc(out, func(a, b Endpoint) int { return a.Addr.Compare(b.Addr) })
	// One entry per address; local if any of its duplicates is.
	merged := out[:0]
	for _, ep := range out {
		if n := len(merged); n > 0 && merged[n-1].Addr == ep.Addr {
			merged[n-1].Local = merged[n-1].Local || ep.Local
			continue
		}
		merged = append(merged, ep)
	}
	return merged
}

// chainName names a generated chain: the kind, a readable part of the
// service name and a hash of everything that identifies it, so that names
// are stable across restarts and never collide.
func chainName(kind, svc string, parts ...string) string {
	h := sha256.New()
	h.Write([]byte(svc))
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	readable := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '-'
	}, svc)
	if len(readable) > 32 {
		readable = readable[:32]
	}
	return kind + "-" + readable + "-" + hex.EncodeToString(h.Sum(nil)[:4])
}

// change is what turns one ruleset into another: the objects to remove and
// to add. A changed chain is flushed and refilled; a changed map element
// is removed and added again.
type change struct {
	full bool // start from an empty table

	delVIPs, addVIPs             []netip.Addr
	delHairpin, addHairpin       []netip.Addr
	delServiceIPs, addServiceIPs map[netip.Addr]string
	delNodePorts, addNodePorts   map[portKey]string
	delHostPorts, addHostPorts   map[hostPortKey]string
	newChains                    []string // created, then filled
	refill                       []string // flushed, then filled
	delChains                    []string // flushed, then deleted (after the elements that point at them)
	goneEndpoints                []netip.Addr
}

// empty reports whether the change does nothing.
func (c *change) empty() bool {
	return !c.full && len(c.delVIPs)+len(c.addVIPs)+len(c.delHairpin)+len(c.addHairpin)+len(c.delServiceIPs)+len(c.addServiceIPs)+
		len(c.delNodePorts)+len(c.addNodePorts)+len(c.delHostPorts)+len(c.addHostPorts)+
		len(c.newChains)+len(c.refill)+len(c.delChains) == 0
}

// diff computes the change from cur (nil: nothing known, start over) to want.
func diff(cur, want *ruleset) *change {
	c := &change{}
	if cur == nil {
		c.full = true
		cur = newRuleset()
	}
	c.delVIPs, c.addVIPs = diffSet(cur.vips, want.vips)
	c.delHairpin, c.addHairpin = diffSet(cur.endpoints, want.endpoints)
	c.delServiceIPs, c.addServiceIPs = diffMap(cur.serviceIPs, want.serviceIPs)
	c.delNodePorts, c.addNodePorts = diffMap(cur.nodePorts, want.nodePorts)
	c.delHostPorts, c.addHostPorts = diffMap(cur.hostPorts, want.hostPorts)
	for name, targets := range want.chains {
		old, ok := cur.chains[name]
		switch {
		case !ok:
			c.newChains = append(c.newChains, name)
		case !slices.Equal(old, targets):
			c.refill = append(c.refill, name)
		}
	}
	for name := range cur.chains {
		if _, ok := want.chains[name]; !ok {
			c.delChains = append(c.delChains, name)
		}
	}
	c.goneEndpoints = slices.Clone(c.delHairpin)
	slices.Sort(c.newChains)
	slices.Sort(c.refill)
	slices.Sort(c.delChains)
	slices.SortFunc(c.goneEndpoints, netip.Addr.Compare)
	return c
}

func diffSet[K comparable](cur, want map[K]bool) (del, add []K) {
	for k := range cur {
		if !want[k] {
			del = append(del, k)
		}
	}
	for k := range want {
		if !cur[k] {
			add = append(add, k)
		}
	}
	return del, add
}

// diffMap returns the elements to delete (gone or pointing elsewhere now)
// and to add (new or pointing elsewhere now).
func diffMap[K comparable](cur, want map[K]string) (del, add map[K]string) {
	del, add = map[K]string{}, map[K]string{}
	for k, v := range cur {
		if w, ok := want[k]; !ok || w != v {
			del[k] = v
		}
	}
	for k, v := range want {
		if o, ok := cur[k]; !ok || o != v {
			add[k] = v
		}
	}
	return del, add
}
