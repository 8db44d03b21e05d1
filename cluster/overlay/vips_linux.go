package overlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// LoopbackVIPs binds virtual IPs as /32 addresses on the loopback device, so
// that the node proxy can listen on them and traffic to them from pods (via
// their gateway) and from the host is delivered locally.
type LoopbackVIPs struct {
	cidr netip.Prefix
	link string
}

var _ VIPs = (*LoopbackVIPs)(nil)

// NewLoopbackVIPs manages the addresses of cidr on "lo".
func NewLoopbackVIPs(cidr netip.Prefix) *LoopbackVIPs {
	return &LoopbackVIPs{cidr: cidr.Masked(), link: "lo"}
}

// Set implements VIPs.
func (l *LoopbackVIPs) Set(desired []netip.Addr) error {
	link, err := netlink.LinkByName(l.link)
	if err != nil {
		return fmt.Errorf("find link %s: %w", l.link, err)
	}
	want := map[netip.Addr]bool{}
	for _, a := range desired {
		if !l.cidr.Contains(a) {
			return fmt.Errorf("set virtual ips: %s is outside the service cidr %s", a, l.cidr)
		}
		want[a] = true
	}
	have, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", l.link, err)
	}
	var errs []error
	for _, ad := range have {
		a, ok := netip.AddrFromSlice(ad.IP.To4())
		if !ok || !l.cidr.Contains(a) {
			continue
		}
		if ones, _ := ad.Mask.Size(); ones == 32 && want[a] {
			delete(want, a) // already there
			continue
		}
		if err := netlink.AddrDel(link, &ad); err != nil {
			errs = append(errs, fmt.Errorf("remove %s from %s: %w", a, l.link, err))
		}
	}
	for a := range want {
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(32, 32)}, Scope: int(netlink.SCOPE_HOST)}
		if err := netlink.AddrAdd(link, addr); err != nil {
			errs = append(errs, fmt.Errorf("add %s to %s: %w", a, l.link, err))
		}
	}
	return errors.Join(errs...)
}
