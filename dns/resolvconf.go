package dns

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"
)

// parseResolvConf returns the nameservers of a resolv.conf as "ip:53"
// addresses, in file order, without duplicates, skipping loopback addresses
// (127.0.0.0/8, ::1: a local stub or ourselves) and those for which skip
// returns true. skipped counts the nameservers left out.
func parseResolvConf(r io.Reader, skip func(netip.Addr) bool) (ups []string, skipped int, err error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		ip, err := netip.ParseAddr(f[1])
		if err != nil {
			continue
		}
		ip = ip.Unmap()
		if ip.IsLoopback() || ip.IsUnspecified() || (skip != nil && skip(ip)) {
			skipped++
			continue
		}
		up := netip.AddrPortFrom(ip, 53).String()
		if !slices.Contains(ups, up) {
			ups = append(ups, up)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, 0, fmt.Errorf("read resolv.conf: %w", err)
	}
	return ups, skipped, nil
}

// readResolvConf parses the resolv.conf at path.
func readResolvConf(path string, skip func(netip.Addr) bool) ([]string, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("open resolv.conf: %w", err)
	}
	defer f.Close()
	return parseResolvConf(f, skip)
}

// ownAddrSkipper returns a predicate true for the IPs this server answers on
// port 53 (forwarding there would loop back to us). An unspecified listen
// host covers every local interface address.
func ownAddrSkipper(listen []string) func(netip.Addr) bool {
	var own []netip.Addr
	wildcard := false
	for _, a := range listen {
		host, port, err := net.SplitHostPort(a)
		if err != nil || (port != "53" && port != "domain") {
			continue
		}
		ip, err := netip.ParseAddr(host)
		if host == "" || (err == nil && ip.IsUnspecified()) {
			wildcard = true
			continue
		}
		if err == nil {
			own = append(own, ip.Unmap())
		}
	}
	if wildcard {
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if p, err := netip.ParsePrefix(a.String()); err == nil {
					own = append(own, p.Addr().Unmap())
				}
			}
		}
	}
	return func(ip netip.Addr) bool { return slices.Contains(own, ip.WithZone("")) }
}

// loadUpstreams reads the upstream list from Config.ResolvConf and stores it.
// When the default /etc/resolv.conf only names a loopback stub (as with
// systemd-resolved), the stub's own upstream list is used instead.
func (s *Server) loadUpstreams(listen []string) {
	path := s.cfg.ResolvConf
	var mod time.Time
	if fi, err := os.Stat(path); err == nil {
		mod = fi.ModTime()
	}
	skip := ownAddrSkipper(listen)
	ups, skipped, err := readResolvConf(path, skip)
	if err == nil && len(ups) == 0 && skipped > 0 && path == defaultResolvConf {
		if alt, _, aerr := readResolvConf(systemdResolvConf, skip); aerr == nil && len(alt) > 0 {
			ups, path = alt, systemdResolvConf
		}
	}
	switch {
	case err != nil:
		s.log.Warn("no upstream resolvers: names outside the cluster domain will fail", "path", path, "err", err)
	case len(ups) == 0:
		s.log.Warn("no usable nameserver in resolv.conf: names outside the cluster domain will fail; set the upstream resolvers in the config", "path", path)
	default:
		s.log.Info("upstream resolvers", "path", path, "upstreams", ups)
	}
	if ups == nil {
		ups = []string{}
	}
	s.resolvMod = mod
	s.upstreams.Store(&ups)
}

// watchResolvConf reloads the upstreams when ResolvConf changes (a laptop
// moving between networks), polling its modification time.
func (s *Server) watchResolvConf(ctx context.Context, listen []string) {
	t := time.NewTicker(resolvConfPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fi, err := os.Stat(s.cfg.ResolvConf)
		if err != nil || fi.ModTime().Equal(s.resolvMod) {
			continue
		}
		s.loadUpstreams(listen)
	}
}

// currentUpstreams returns the upstream list, reading ResolvConf on first use
// when Run has not loaded it (Handler used on its own).
func (s *Server) currentUpstreams() []string {
	if p := s.upstreams.Load(); p != nil {
		return *p
	}
	s.loadUpstreamsOnce.Do(func() { s.loadUpstreams(s.cfg.Addrs) })
	return *s.upstreams.Load()
}
