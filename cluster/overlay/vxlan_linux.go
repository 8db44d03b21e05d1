package overlay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// VXLAN is the Linux Overlay: a flannel-style VXLAN device programmed with
// netlink (static FDB and neighbour entries, onlink routes; no learning, no
// multicast) plus two iptables rules and an nftables table that lets only
// the peers' VXLAN packets in (filter_linux.go), all in the network
// namespace of the calling thread.
//
// The iptables rules, tagged with RuleComment:
//
//	filter DOCKER-USER: -s <cluster cidr> -d <cluster cidr> -j ACCEPT
//	nat POSTROUTING (first): -s <cluster cidr> -d <cluster cidr> -j RETURN
//
// Docker's FORWARD rules drop traffic entering its bridges from other
// interfaces and its POSTROUTING rules masquerade traffic leaving them; the
// first rule lets pod traffic from other nodes in, the second keeps pod
// source addresses intact across nodes.
type VXLAN struct {
	cfg VXLANConfig
	err error // from config validation, returned by every method

	mu sync.Mutex // serialises Setup, Apply and Teardown
}

var _ Overlay = (*VXLAN)(nil)

// NewVXLAN returns the overlay for cfg; it touches nothing until Setup. An
// invalid cfg is reported by every method.
func NewVXLAN(cfg VXLANConfig) *VXLAN {
	c, err := cfg.withDefaults()
	return &VXLAN{cfg: c, err: err}
}

// Config returns the configuration with defaults filled in.
func (v *VXLAN) Config() VXLANConfig { return v.cfg }

// MTU returns the device MTU Setup uses: VXLANConfig.MTU, or the MTU of the
// interface carrying HostIP minus VXLANOverhead. Pod interfaces (the Docker
// bridge network's com.docker.network.driver.mtu) should not exceed it.
func (v *VXLAN) MTU() (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	_, mtu, err := v.underlay()
	return mtu, err
}

// underlay finds the interface carrying HostIP and the device MTU.
func (v *VXLAN) underlay() (netlink.Link, int, error) {
	addrs, err := dump("addresses", func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return nil, 0, err
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && ip == v.cfg.HostIP {
			link, err := netlink.LinkByIndex(a.LinkIndex)
			if err != nil {
				return nil, 0, fmt.Errorf("find the interface of host ip %v: %w", v.cfg.HostIP, err)
			}
			mtu := v.cfg.MTU
			if mtu == 0 {
				mtu = link.Attrs().MTU - VXLANOverhead
			}
			return link, mtu, nil
		}
	}
	return nil, 0, fmt.Errorf("find the interface of host ip %v: no interface has it; configure the node's own underlay address", v.cfg.HostIP)
}

// Setup implements Overlay.
func (v *VXLAN) Setup() (net.HardwareAddr, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.err != nil {
		return nil, v.err
	}
	link, err := v.ensureDevice()
	if err != nil {
		return nil, fmt.Errorf("set up vxlan device %s: %w", v.cfg.Device, err)
	}
	if err := v.ensureRules(); err != nil {
		return nil, fmt.Errorf("set up overlay iptables rules: %w", err)
	}
	return slices.Clone(link.Attrs().HardwareAddr), nil
}

// ensureDevice creates or adopts the device, then sets its MTU, address and
// state. An existing vxlan device with other parameters is recreated.
func (v *VXLAN) ensureDevice() (netlink.Link, error) {
	under, mtu, err := v.underlay()
	if err != nil {
		return nil, err
	}
	want := &netlink.Vxlan{
		LinkAttrs:    netlink.LinkAttrs{Name: v.cfg.Device, MTU: mtu, HardwareAddr: vtepMAC(v.cfg.HostIP)},
		VxlanId:      v.cfg.VNI,
		VtepDevIndex: under.Attrs().Index,
		SrcAddr:      net.IP(v.cfg.HostIP.AsSlice()),
		Port:         v.cfg.Port,
		Learning:     false,
	}
	link, err := netlink.LinkByName(v.cfg.Device)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		link = nil
	case err != nil:
		return nil, fmt.Errorf("find link: %w", err)
	default:
		have, ok := link.(*netlink.Vxlan)
		if !ok {
			return nil, fmt.Errorf("a %s link of that name exists; remove it or configure another device name", link.Type())
		}
		if !compatibleVxlan(have, want) {
			slog.Info("recreating incompatible vxlan device", "component", "overlay", "device", v.cfg.Device,
				"vni", have.VxlanId, "port", have.Port, "local", have.SrcAddr, "learning", have.Learning)
			if err := netlink.LinkDel(link); err != nil {
				return nil, fmt.Errorf("remove incompatible device: %w", err)
			}
			link = nil
		}
	}
	if link == nil {
		if err := netlink.LinkAdd(want); err != nil {
			return nil, fmt.Errorf("create: %w", err)
		}
		if link, err = netlink.LinkByName(v.cfg.Device); err != nil {
			return nil, fmt.Errorf("find created link: %w", err)
		}
	}
	if link.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(link, mtu); err != nil {
			return nil, fmt.Errorf("set mtu %d: %w", mtu, err)
		}
	}
	if err := v.ensureAddr(link); err != nil {
		return nil, err
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("set up: %w", err)
	}
	return link, nil
}

// compatibleVxlan reports whether an existing device can be adopted.
func compatibleVxlan(have, want *netlink.Vxlan) bool {
	return have.VxlanId == want.VxlanId &&
		have.Port == want.Port &&
		have.VtepDevIndex == want.VtepDevIndex &&
		have.SrcAddr.Equal(want.SrcAddr) &&
		have.Group == nil &&
		!have.Learning && !have.FlowBased
}

// ensureAddr makes <pod subnet>.0/32 the only IPv4 address of the device.
func (v *VXLAN) ensureAddr(link netlink.Link) error {
	gw := v.cfg.PodSubnet.Addr()
	addrs, err := dump("addresses", func() ([]netlink.Addr, error) { return netlink.AddrList(link, netlink.FAMILY_V4) })
	if err != nil {
		return err
	}
	found := false
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP.To4())
		if ones, _ := a.Mask.Size(); ip == gw && ones == 32 {
			found = true
			continue
		}
		if err := netlink.AddrDel(link, &a); err != nil {
			return fmt.Errorf("remove address %s: %w", a.IPNet, err)
		}
	}
	if found {
		return nil
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(gw.AsSlice()), Mask: net.CIDRMask(32, 32)}}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("add address %s: %w", addr.IPNet, err)
	}
	return nil
}

// Apply implements Overlay. It also re-asserts the iptables rules, so a
// periodic Apply repairs them after Docker re-creates its own (Docker
// inserts its MASQUERADE rules at the top of nat POSTROUTING). Invalid
// peers are reported in the error; the valid ones are programmed anyway.
func (v *VXLAN) Apply(peers []Peer) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.err != nil {
		return v.err
	}
	plan, planErr := planPeers(v.cfg, peers)
	link, err := netlink.LinkByName(v.cfg.Device)
	if err != nil {
		return fmt.Errorf("apply overlay peers: find device %s (call Setup first): %w", v.cfg.Device, err)
	}
	errs := []error{planErr}
	errs = append(errs, v.applyPeers(link, plan)...)
	if err := v.ensureRules(); err != nil {
		errs = append(errs, fmt.Errorf("ensure iptables rules: %w", err))
	}
	if err := v.ensureFilter(plan); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("apply overlay peers: %w", err)
	}
	return nil
}

// applyPeers removes stale routes, neighbour and FDB entries of the device,
// then adds the missing ones (FDB, neighbour, route: the order in which a
// packet needs them).
func (v *VXLAN) applyPeers(link netlink.Link, plan peerPlan) []error {
	idx := link.Attrs().Index
	var errs []error
	okRoute := map[netip.Prefix]bool{}
	okNeigh := map[netip.Addr]bool{}
	okFDB := map[string]bool{}

	routes, err := dump("routes", func() ([]netlink.Route, error) { return netlink.RouteList(link, netlink.FAMILY_V4) })
	if err != nil {
		return []error{err}
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		dst, ok := prefixOf(r.Dst)
		if !ok || !subnetOf(dst, v.cfg.ClusterCIDR) {
			continue // not ours to manage
		}
		gw, want := plan.routes[dst]
		gwHave, _ := netip.AddrFromSlice(r.Gw.To4())
		if want && gwHave == gw && r.Flags&int(netlink.FLAG_ONLINK) != 0 {
			okRoute[dst] = true
			continue
		}
		if !want {
			if err := netlink.RouteDel(&r); err != nil {
				errs = append(errs, fmt.Errorf("remove route %s: %w", dst, err))
			}
		} // else RouteReplace below
	}

	neighs, err := dump("neighbours", func() ([]netlink.Neigh, error) { return netlink.NeighList(idx, netlink.FAMILY_V4) })
	if err != nil {
		return append(errs, err)
	}
	for _, n := range neighs {
		ip, ok := netip.AddrFromSlice(n.IP.To4())
		if !ok {
			continue
		}
		mac, want := plan.neighs[ip]
		if want && n.HardwareAddr.String() == mac && n.State&netlink.NUD_PERMANENT != 0 {
			okNeigh[ip] = true
			continue
		}
		if !want {
			if err := netlink.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, IP: n.IP}); err != nil {
				errs = append(errs, fmt.Errorf("remove neighbour %s: %w", ip, err))
			}
		}
	}

	fdb, err := dump("fdb entries", func() ([]netlink.Neigh, error) { return netlink.NeighList(idx, unix.AF_BRIDGE) })
	if err != nil {
		return append(errs, err)
	}
	for _, n := range fdb {
		if len(n.HardwareAddr) != 6 || n.HardwareAddr[0]&1 == 1 || isZeroMAC(n.HardwareAddr) {
			continue // multicast or default-destination entries: not ours
		}
		mac := n.HardwareAddr.String()
		dst, _ := netip.AddrFromSlice(n.IP.To4())
		if want, ok := plan.fdb[mac]; ok && want == dst {
			okFDB[mac] = true
			continue
		}
		del := &netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, IP: n.IP, HardwareAddr: n.HardwareAddr}
		if err := netlink.NeighDel(del); err != nil {
			errs = append(errs, fmt.Errorf("remove fdb entry %s dst %v: %w", mac, n.IP, err))
		}
	}

	for mac, dst := range plan.fdb {
		if okFDB[mac] {
			continue
		}
		e := &netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT,
			IP: net.IP(dst.AsSlice()), HardwareAddr: plan.macs[mac]}
		if err := netlink.NeighSet(e); err != nil {
			errs = append(errs, fmt.Errorf("add fdb entry %s dst %v: %w", mac, dst, err))
		}
	}
	for ip, mac := range plan.neighs {
		if okNeigh[ip] {
			continue
		}
		n := &netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, Type: unix.RTN_UNICAST,
			IP: net.IP(ip.AsSlice()), HardwareAddr: plan.macs[mac]}
		if err := netlink.NeighSet(n); err != nil {
			errs = append(errs, fmt.Errorf("add neighbour %s lladdr %s: %w", ip, mac, err))
		}
	}
	for dst, gw := range plan.routes {
		if okRoute[dst] {
			continue
		}
		r := &netlink.Route{LinkIndex: idx, Scope: netlink.SCOPE_UNIVERSE, Flags: int(netlink.FLAG_ONLINK),
			Dst: &net.IPNet{IP: net.IP(dst.Addr().AsSlice()), Mask: net.CIDRMask(dst.Bits(), 32)}, Gw: net.IP(gw.AsSlice())}
		if err := netlink.RouteReplace(r); err != nil {
			errs = append(errs, fmt.Errorf("add route %s via %s: %w", dst, gw, err))
		}
	}
	return errs
}

// Teardown implements Overlay. Deleting the device drops its routes,
// neighbour and FDB entries with it. The DOCKER-USER chain itself stays:
// Docker owns it. Missing pieces are not an error.
func (v *VXLAN) Teardown() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.err != nil {
		return v.err
	}
	var errs []error
	link, err := netlink.LinkByName(v.cfg.Device)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
	case err != nil:
		errs = append(errs, fmt.Errorf("find device %s: %w", v.cfg.Device, err))
	case link.Type() != "vxlan":
		errs = append(errs, fmt.Errorf("remove device %s: it is a %s link, not ours", v.cfg.Device, link.Type()))
	default:
		if err := netlink.LinkDel(link); err != nil {
			errs = append(errs, fmt.Errorf("remove device %s: %w", v.cfg.Device, err))
		}
	}
	for _, r := range v.rules() {
		if err := removeRules(r); err != nil {
			errs = append(errs, err)
		}
	}
	if err := v.removeFilter(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tear down overlay: %w", err)
	}
	return nil
}

// iptRule is one rule this package keeps in a chain.
type iptRule struct {
	table, chain string
	comment      string // tags the rule (RuleComment when empty): one rule per comment and chain
	spec         []string
	first        bool // must be the chain's first rule
	createChain  bool // the chain may not exist yet (Docker creates DOCKER-USER when it starts)
}

func (v *VXLAN) rules() []iptRule {
	c := v.cfg.ClusterCIDR.String()
	match := func(target string) []string {
		return []string{"-s", c, "-d", c, "-m", "comment", "--comment", RuleComment, "-j", target}
	}
	return []iptRule{
		{table: "filter", chain: "DOCKER-USER", spec: match("ACCEPT"), createChain: true},
		{table: "nat", chain: "POSTROUTING", spec: match("RETURN"), first: true},
	}
}

func (v *VXLAN) ensureRules() error {
	for _, r := range v.rules() {
		if err := ensureRule(r); err != nil {
			return err
		}
	}
	return nil
}

// tag is the comment that marks r as ours.
func (r iptRule) tag() string {
	if r.comment == "" {
		return RuleComment
	}
	return r.comment
}

// ensureRule makes r the only rule of its chain carrying its comment, at the
// top when r.first. A stale rule (another cluster CIDR) is replaced.
func ensureRule(r iptRule) error {
	rules, err := listRules(r.table, r.chain)
	if err != nil && r.createChain {
		if _, errNew := iptables("-t", r.table, "-N", r.chain); errNew != nil {
			return errNew
		}
		rules, err = listRules(r.table, r.chain)
	}
	if err != nil {
		return err
	}
	var ours []int
	for i, args := range rules {
		if isOurs(args, r.tag()) {
			ours = append(ours, i)
		}
	}
	if len(ours) == 1 && (!r.first || ours[0] == 0) {
		if _, err := iptables(append([]string{"-t", r.table, "-C", r.chain}, r.spec...)...); err == nil {
			return nil
		}
	}
	for _, i := range ours {
		if _, err := iptables(append([]string{"-t", r.table, "-D", r.chain}, rules[i]...)...); err != nil {
			return err
		}
	}
	_, err = iptables(append([]string{"-t", r.table, "-I", r.chain, "1"}, r.spec...)...)
	return err
}

// removeRules deletes the rules carrying r's comment from r's chain.
func removeRules(r iptRule) error {
	rules, err := listRules(r.table, r.chain)
	if err != nil {
		if r.createChain {
			return nil // no chain, no rules (iptables-nft has no clean "no such chain" error)
		}
		return err
	}
	for _, args := range rules {
		if isOurs(args, r.tag()) {
			if _, err := iptables(append([]string{"-t", r.table, "-D", r.chain}, args...)...); err != nil {
				return err
			}
		}
	}
	return nil
}

// listRules returns the arguments of the chain's rules, in order, as printed
// by iptables -S (without the leading "-A <chain>").
func listRules(table, chain string) ([][]string, error) {
	out, err := iptables("-t", table, "-S", chain)
	if err != nil {
		return nil, err
	}
	var rules [][]string
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "-A" && f[1] == chain {
			args := f[2:]
			for i := range args {
				args[i] = strings.Trim(args[i], `"`) // -S quotes comments with ':' or '/'; -D wants them bare
			}
			rules = append(rules, args)
		}
	}
	return rules, nil
}

// isOurs reports whether rule arguments carry the comment tag.
func isOurs(args []string, tag string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--comment" && strings.Trim(args[i+1], `"`) == tag {
			return true
		}
	}
	return false
}

// iptables runs iptables with the xtables lock wait, bounded in time. The
// child inherits the calling thread's network namespace.
func iptables(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := HostCommand(ctx, "iptables", append([]string{"-w", "5"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// dump retries a netlink dump interrupted by concurrent changes.
func dump[T any](what string, f func() ([]T, error)) ([]T, error) {
	for i := 0; ; i++ {
		out, err := f()
		if errors.Is(err, netlink.ErrDumpInterrupted) && i < 5 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", what, err)
		}
		return out, nil
	}
}

// prefixOf converts an IPv4 net.IPNet.
func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	ip, ok := netip.AddrFromSlice(n.IP.To4())
	if !ok {
		return netip.Prefix{}, false
	}
	ones, bits := n.Mask.Size()
	if bits != 32 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(ip, ones).Masked(), true
}
