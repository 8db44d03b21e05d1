// Package overlay programs the host side of the pod network: service virtual
// IPs on the loopback device today, the VXLAN overlay between nodes later.
// The Linux implementation is in _linux.go files; Fake is for tests.
package overlay

import (
	"net/netip"
	"sort"
	"sync"
)

// VIPs keeps the set of service virtual IPs bound on this host.
type VIPs interface {
	// Set makes exactly desired (all inside the service CIDR) bound; other
	// addresses of the CIDR are removed. Idempotent.
	Set(desired []netip.Addr) error
}

// Fake records the desired set, for tests.
type Fake struct {
	mu   sync.Mutex
	addr map[netip.Addr]bool
}

var _ VIPs = (*Fake)(nil)

// Set implements VIPs.
func (f *Fake) Set(desired []netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addr = map[netip.Addr]bool{}
	for _, a := range desired {
		f.addr[a] = true
	}
	return nil
}

// Addrs returns the current set, sorted.
func (f *Fake) Addrs() []netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]netip.Addr, 0, len(f.addr))
	for a := range f.addr {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}
