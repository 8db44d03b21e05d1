package overlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
)

// Defaults of VXLANConfig.
const (
	DefaultVXLANDevice = "devvx0"
	DefaultVNI         = 4213
	DefaultVXLANPort   = 8472 // the Linux kernel's (and flannel's) VXLAN port; IANA's is 4789
	// VXLANOverhead is what VXLAN encapsulation adds to a packet over IPv4:
	// outer IP (20) + UDP (8) + VXLAN (8) + inner Ethernet (14) bytes.
	VXLANOverhead = 50
	// RuleComment tags every iptables rule this package adds, so they can be
	// found and removed again.
	RuleComment = "dev-overlay"
)

// Peer is another node of the pod network, as published in its gossip tags.
type Peer struct {
	Name      string
	HostIP    netip.Addr       // underlay address: the outer destination of VXLAN packets
	PodSubnet netip.Prefix     // the node's pod subnet, e.g. 10.213.2.0/24
	VTEPMAC   net.HardwareAddr // MAC of the peer's VXLAN device (from its Setup)
}

// VXLANConfig describes this node's side of the overlay.
type VXLANConfig struct {
	Device      string       // VXLAN device name; default DefaultVXLANDevice
	VNI         int          // VXLAN network identifier; default DefaultVNI
	Port        int          // UDP destination port; default DefaultVXLANPort
	HostIP      netip.Addr   // this node's underlay IPv4 address (must be on a local interface)
	PodSubnet   netip.Prefix // this node's pod subnet, inside ClusterCIDR
	ClusterCIDR netip.Prefix // all pod subnets; traffic inside it is accepted and not masqueraded
	MTU         int          // device MTU; 0: MTU of the interface carrying HostIP minus VXLANOverhead
}

// withDefaults fills the zero fields and validates the rest.
func (c VXLANConfig) withDefaults() (VXLANConfig, error) {
	if c.Device == "" {
		c.Device = DefaultVXLANDevice
	}
	if c.VNI == 0 {
		c.VNI = DefaultVNI
	}
	if c.Port == 0 {
		c.Port = DefaultVXLANPort
	}
	var errs []error
	if len(c.Device) > 15 {
		errs = append(errs, fmt.Errorf("device name %q is longer than 15 characters", c.Device))
	}
	if c.VNI < 1 || c.VNI > 1<<24-1 {
		errs = append(errs, fmt.Errorf("vni %d is outside 1..16777215", c.VNI))
	}
	if c.Port < 1 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d is outside 1..65535", c.Port))
	}
	if !c.HostIP.Is4() {
		errs = append(errs, fmt.Errorf("host ip %v is not an IPv4 address", c.HostIP))
	}
	if !c.ClusterCIDR.IsValid() || !c.ClusterCIDR.Addr().Is4() {
		errs = append(errs, fmt.Errorf("cluster cidr %v is not an IPv4 prefix", c.ClusterCIDR))
	}
	if !c.PodSubnet.IsValid() || !c.PodSubnet.Addr().Is4() || c.PodSubnet.Bits() > 30 {
		errs = append(errs, fmt.Errorf("pod subnet %v is not an IPv4 prefix of at most /30", c.PodSubnet))
	} else if c.ClusterCIDR.IsValid() && !subnetOf(c.PodSubnet, c.ClusterCIDR) {
		errs = append(errs, fmt.Errorf("pod subnet %v is outside the cluster cidr %v", c.PodSubnet, c.ClusterCIDR))
	}
	if c.MTU < 0 || (c.MTU > 0 && c.MTU < 576) {
		errs = append(errs, fmt.Errorf("mtu %d is too small", c.MTU))
	}
	c.ClusterCIDR = c.ClusterCIDR.Masked()
	c.PodSubnet = c.PodSubnet.Masked()
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("check vxlan config: %w", err)
	}
	return c, nil
}

// subnetOf reports whether p lies entirely inside outer.
func subnetOf(p, outer netip.Prefix) bool {
	return p.Bits() >= outer.Bits() && outer.Contains(p.Addr())
}

// Overlay programs this node's end of the VXLAN pod network.
type Overlay interface {
	// Setup creates (or adopts, idempotently) the VXLAN device and the
	// iptables rules and returns the device's MAC, which peers need to
	// program their FDB and neighbour entries (publish it in gossip tags).
	Setup() (net.HardwareAddr, error)
	// Apply makes exactly peers programmed (FDB, neighbour, route); entries
	// of departed peers are removed. Idempotent; a peer with our own HostIP
	// is ignored.
	Apply(peers []Peer) error
	// Teardown removes the device, routes and iptables rules.
	Teardown() error
}

// FakeOverlay records calls, for tests of callers.
type FakeOverlay struct {
	MAC net.HardwareAddr // returned by Setup; a fixed locally administered MAC when nil
	// Errors returned by the next calls, when set.
	SetupErr, ApplyErr, TeardownErr error

	mu        sync.Mutex
	setups    int
	applies   int
	teardowns int
	peers     []Peer
	up        bool
}

var _ Overlay = (*FakeOverlay)(nil)

// Setup implements Overlay.
func (f *FakeOverlay) Setup() (net.HardwareAddr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setups++
	if f.SetupErr != nil {
		return nil, f.SetupErr
	}
	f.up = true
	if f.MAC == nil {
		return net.HardwareAddr{0x0e, 0x64, 0, 0, 0, 1}, nil
	}
	return slices.Clone(f.MAC), nil
}

// Apply implements Overlay. Like the real one it fails before Setup.
func (f *FakeOverlay) Apply(peers []Peer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies++
	if f.ApplyErr != nil {
		return f.ApplyErr
	}
	if !f.up {
		return errors.New("apply overlay peers: not set up")
	}
	f.peers = clonePeers(peers)
	return nil
}

// Teardown implements Overlay.
func (f *FakeOverlay) Teardown() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.teardowns++
	if f.TeardownErr != nil {
		return f.TeardownErr
	}
	f.up, f.peers = false, nil
	return nil
}

// Peers returns the peers of the last successful Apply (nil after Teardown).
func (f *FakeOverlay) Peers() []Peer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return clonePeers(f.peers)
}

// Calls returns how many times each method was called.
func (f *FakeOverlay) Calls() (setups, applies, teardowns int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.setups, f.applies, f.teardowns
}

func clonePeers(peers []Peer) []Peer {
	if peers == nil {
		return nil
	}
	out := make([]Peer, len(peers))
	for i, p := range peers {
		p.VTEPMAC = slices.Clone(p.VTEPMAC)
		out[i] = p
	}
	return out
}

// peerPlan is the kernel state Apply converges to, keyed for comparison.
type peerPlan struct {
	routes map[netip.Prefix]netip.Addr // pod subnet -> gateway (<subnet>.0), onlink via the device
	neighs map[netip.Addr]string       // gateway -> VTEP MAC (String form)
	fdb    map[string]netip.Addr       // VTEP MAC -> peer host IP
	macs   map[string]net.HardwareAddr // String form -> MAC
}

// planPeers validates peers against the config and computes the desired
// entries. Invalid peers are skipped and reported in the error; the plan for
// the valid ones is returned regardless.
func planPeers(cfg VXLANConfig, peers []Peer) (peerPlan, error) {
	p := peerPlan{
		routes: map[netip.Prefix]netip.Addr{},
		neighs: map[netip.Addr]string{},
		fdb:    map[string]netip.Addr{},
		macs:   map[string]net.HardwareAddr{},
	}
	owner := map[netip.Prefix]string{}
	var errs []error
	for _, peer := range peers {
		if peer.HostIP == cfg.HostIP {
			continue // ourselves
		}
		sub := peer.PodSubnet.Masked()
		switch {
		case !peer.HostIP.Is4():
			errs = append(errs, fmt.Errorf("peer %s: host ip %v is not IPv4", peer.Name, peer.HostIP))
		case len(peer.VTEPMAC) != 6 || peer.VTEPMAC[0]&1 == 1 || isZeroMAC(peer.VTEPMAC):
			errs = append(errs, fmt.Errorf("peer %s: vtep mac %q is not a unicast ethernet address", peer.Name, peer.VTEPMAC))
		case !sub.IsValid() || !sub.Addr().Is4() || !subnetOf(sub, cfg.ClusterCIDR):
			errs = append(errs, fmt.Errorf("peer %s: pod subnet %v is outside the cluster cidr %v", peer.Name, peer.PodSubnet, cfg.ClusterCIDR))
		case sub.Overlaps(cfg.PodSubnet):
			errs = append(errs, fmt.Errorf("peer %s: pod subnet %v overlaps ours (%v)", peer.Name, sub, cfg.PodSubnet))
		case owner[sub] != "":
			errs = append(errs, fmt.Errorf("peer %s: pod subnet %v is already claimed by %s", peer.Name, sub, owner[sub]))
		default:
			overlapping := ""
			for s, n := range owner {
				if s.Overlaps(sub) {
					overlapping = n
				}
			}
			mac := peer.VTEPMAC.String()
			if overlapping != "" {
				errs = append(errs, fmt.Errorf("peer %s: pod subnet %v overlaps that of %s", peer.Name, sub, overlapping))
				continue
			}
			if ip, dup := p.fdb[mac]; dup && ip != peer.HostIP {
				errs = append(errs, fmt.Errorf("peer %s: vtep mac %s is already used by host %v", peer.Name, mac, ip))
				continue
			}
			owner[sub] = peer.Name
			gw := sub.Addr()
			p.routes[sub] = gw
			p.neighs[gw] = mac
			p.fdb[mac] = peer.HostIP
			p.macs[mac] = slices.Clone(peer.VTEPMAC)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return p, fmt.Errorf("check peers: %w", err)
	}
	return p, nil
}

func isZeroMAC(m net.HardwareAddr) bool {
	for _, b := range m {
		if b != 0 {
			return false
		}
	}
	return true
}

// vtepMAC derives a stable, locally administered unicast MAC from the host
// IP, so a recreated device (after a reboot) keeps the MAC its peers know.
func vtepMAC(hostIP netip.Addr) net.HardwareAddr {
	b := hostIP.As4()
	return net.HardwareAddr{0x0e, 0x64, b[0], b[1], b[2], b[3]}
}
