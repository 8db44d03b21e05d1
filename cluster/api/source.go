package api

import (
	"net"
	"net/netip"
)

// SourceKey is what per-source connection caps count by: an IPv4 address,
// or the /64 of an IPv6 one (a host is handed a whole /64 and can pick any
// address in it).
func SourceKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return a
}

// SourceOf is SourceKey of a connection's remote address (the zero
// address when it has no IP).
func SourceOf(addr net.Addr) netip.Addr {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return netip.Addr{}
	}
	return SourceKey(ap.Addr())
}
