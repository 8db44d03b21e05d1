package node

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/devhq/dev/cluster/state"
)

// dnsSources says who the cluster DNS answers: pods (the cluster CIDR),
// the node itself (loopback and its own addresses) and the cluster's
// nodes. The hosts it knows are re-read at most every refresh, on a
// query, so that a check costs a map lookup.
type dnsSources struct {
	cidr    netip.Prefix
	st      *state.Store
	refresh time.Duration

	mu    sync.Mutex
	hosts map[netip.Addr]bool
	at    time.Time
}

func newDNSSources(cidr netip.Prefix, st *state.Store) *dnsSources {
	return &dnsSources{cidr: cidr, st: st, refresh: 10 * time.Second}
}

// Allow implements dns.Config.Allow.
func (s *dnsSources) Allow(a netip.Addr) bool {
	a = a.Unmap()
	if a.IsLoopback() || s.cidr.Contains(a) {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hosts == nil || time.Since(s.at) > s.refresh {
		s.hosts, s.at = s.known(), time.Now()
	}
	return s.hosts[a]
}

// known lists this host's addresses and the cluster's nodes'.
func (s *dnsSources) known() map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				out[p.Addr().Unmap()] = true
			}
		}
	}
	for _, n := range s.st.Nodes() {
		if a, err := netip.ParseAddr(n.Address); err == nil {
			out[a.Unmap()] = true
		} else if ap, err := netip.ParseAddrPort(n.Address); err == nil {
			out[ap.Addr().Unmap()] = true
		}
	}
	return out
}
