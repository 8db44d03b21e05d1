package dns

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// handler answers one query: cluster names from the Resolver, other names
// from the upstreams. ctx bounds upstream queries (cancelled when Run stops).
type handler struct {
	s   *Server
	ctx context.Context
}

var _ dns.Handler = (*handler)(nil)

// ServeDNS implements dns.Handler.
func (h *handler) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	reqOpt := req.IsEdns0()
	m := new(dns.Msg)
	switch {
	case req.Opcode != dns.OpcodeQuery:
		m.SetRcode(req, dns.RcodeNotImplemented)
		h.write(w, m, reqOpt)
		h.observe(ResultRefused)
		return
	case len(req.Question) != 1:
		m.SetRcode(req, dns.RcodeFormatError)
		h.write(w, m, reqOpt)
		h.observe(ResultRefused)
		return
	case reqOpt != nil && reqOpt.Version() != 0:
		m.SetRcode(req, dns.RcodeBadVers) // RFC 6891 6.1.3; write adds the OPT
		h.write(w, m, reqOpt)
		h.observe(ResultRefused)
		return
	}

	q := req.Question[0]
	client := clientAddr(w.RemoteAddr())
	if allow := h.s.cfg.Allow; allow != nil && !allow(client) {
		m.SetRcode(req, dns.RcodeRefused)
		h.write(w, m, reqOpt)
		h.observe(ResultRefused)
		return
	}
	name := strings.ToLower(q.Name) // no allocation when already lowercase

	if h.inDomain(name) {
		m.SetReply(req)
		m.Authoritative = true
		m.RecursionAvailable = true
		if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
			m.Rcode = dns.RcodeRefused
		} else {
			h.cluster(m, client, q, name)
		}
		h.write(w, m, reqOpt)
		switch m.Rcode {
		case dns.RcodeNameError:
			h.observe(ResultNXDomain)
		case dns.RcodeRefused:
			h.observe(ResultRefused)
		default:
			h.observe(ResultAnswered)
		}
		return
	}

	if isBare(name) && q.Qclass == dns.ClassINET {
		if project, ok := h.s.r.ClientProject(client); ok {
			if vip, _, ok := h.s.r.Service(client, project, name[:len(name)-1]); ok {
				m.SetReply(req)
				m.RecursionAvailable = true
				h.addrs(m, q, vip)
				h.write(w, m, reqOpt)
				h.observe(ResultAnswered)
				return
			}
		}
	}

	h.forward(w, req, reqOpt)
}

// observe tells Config.Observe how a query was answered.
func (h *handler) observe(result string) {
	if h.s.cfg.Observe != nil {
		h.s.cfg.Observe(result)
	}
}

// inDomain reports whether the lowercase name is the cluster domain or below it.
func (h *handler) inDomain(name string) bool {
	return name == h.s.domain || strings.HasSuffix(name, h.s.suffix)
}

// isBare reports whether name is a single label ("web.").
func isBare(name string) bool {
	i := strings.IndexByte(name, '.')
	return i > 0 && i == len(name)-1 && strings.IndexByte(name, '\\') < 0
}

// cluster fills m with the answer for a name of the cluster domain.
func (h *handler) cluster(m *dns.Msg, client netip.Addr, q dns.Question, name string) {
	r := h.s.r
	if name == h.s.domain { // the zone apex
		if q.Qtype == dns.TypeSOA || q.Qtype == dns.TypeANY {
			m.Answer = append(m.Answer, h.s.soa)
			return
		}
		h.nodata(m)
		return
	}
	rest := name[:len(name)-len(h.s.suffix)]
	if strings.IndexByte(rest, '\\') >= 0 { // escaped dots or bytes: never a cluster name
		h.nxdomain(m)
		return
	}
	var l [4]string
	switch splitLabels(rest, &l) {
	case 1: // <project>: an empty non-terminal when the project exists; we cannot tell, so NODATA
		h.nodata(m)
		return
	case 2: // <svc>.<project> or <pod>.<project>
		if vip, _, ok := r.Service(client, l[1], l[0]); ok {
			h.addrs(m, q, vip)
			return
		}
		if ip, ok := r.Pod(l[1], l[0]); ok {
			h.addrs(m, q, ip)
			return
		}
	case 3:
		switch l[0] {
		case "tasks": // tasks.<svc>.<project>
			if ips, ok := r.Tasks(client, l[2], l[1]); ok {
				h.addrs(m, q, ips...)
				return
			}
		case "_tcp", "_udp": // _<proto>.<svc>.<project>: empty non-terminal above SRV names
			if _, ports, ok := r.Service(client, l[2], l[1]); ok {
				for _, p := range ports {
					if protoMatch(p.Protocol, l[0][1:]) {
						h.nodata(m)
						return
					}
				}
			}
		}
	case 4: // _<port>._<proto>.<svc>.<project>
		if h.srv(m, client, q, &l) {
			return
		}
	}
	h.nxdomain(m)
}

// srv answers _<port>._<proto>.<svc>.<project>; false when no such name.
func (h *handler) srv(m *dns.Msg, client netip.Addr, q dns.Question, l *[4]string) bool {
	if len(l[0]) < 2 || l[0][0] != '_' || (l[1] != "_tcp" && l[1] != "_udp") {
		return false
	}
	vip, ports, ok := h.s.r.Service(client, l[3], l[2])
	if !ok {
		return false
	}
	key, proto := l[0][1:], l[1][1:]
	num, numErr := strconv.ParseUint(key, 10, 16)
	target := l[2] + "." + l[3] + h.s.suffix
	found := false
	for _, p := range ports {
		if !protoMatch(p.Protocol, proto) {
			continue
		}
		if !strings.EqualFold(p.Name, key) && (numErr != nil || uint64(p.Number) != num) {
			continue
		}
		found = true
		if q.Qtype == dns.TypeSRV || q.Qtype == dns.TypeANY {
			m.Answer = append(m.Answer, &dns.SRV{
				Hdr:      dns.RR_Header{Name: q.Name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: h.s.cfg.TTL},
				Priority: 0,
				Weight:   100,
				Port:     p.Number,
				Target:   target,
			})
		}
	}
	if !found {
		return false
	}
	if len(m.Answer) == 0 {
		h.nodata(m)
		return true
	}
	if rr := h.addrRR(target, vip); rr != nil {
		m.Extra = append(m.Extra, rr)
	}
	return true
}

// protoMatch compares a Port.Protocol ("" is tcp) with "tcp" or "udp".
func protoMatch(portProto, proto string) bool {
	if portProto == "" {
		portProto = "tcp"
	}
	return strings.EqualFold(portProto, proto)
}

// addrs answers an existing name with its addresses: A for IPv4, AAAA for
// IPv6; NODATA when none matches the question type.
func (h *handler) addrs(m *dns.Msg, q dns.Question, ips ...netip.Addr) {
	if q.Qtype == dns.TypeA || q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeANY {
		for _, ip := range ips {
			ip = ip.Unmap()
			if ip.Is4() && q.Qtype == dns.TypeAAAA || !ip.Is4() && q.Qtype == dns.TypeA {
				continue
			}
			if rr := h.addrRR(q.Name, ip); rr != nil {
				m.Answer = append(m.Answer, rr)
			}
		}
	}
	if len(m.Answer) == 0 {
		h.nodata(m)
	}
}

// addrRR returns the A or AAAA record of name for ip.
func (h *handler) addrRR(name string, ip netip.Addr) dns.RR {
	ip = ip.Unmap()
	hdr := dns.RR_Header{Name: name, Class: dns.ClassINET, Ttl: h.s.cfg.TTL}
	switch {
	case ip.Is4():
		hdr.Rrtype = dns.TypeA
		a := ip.As4()
		return &dns.A{Hdr: hdr, A: net.IP(a[:])}
	case ip.Is6():
		hdr.Rrtype = dns.TypeAAAA
		a := ip.As16()
		return &dns.AAAA{Hdr: hdr, AAAA: net.IP(a[:])}
	}
	return nil
}

// nodata marks an existing name without records of the asked type; inside
// the zone the SOA goes in authority for negative caching.
func (h *handler) nodata(m *dns.Msg) {
	m.Rcode = dns.RcodeSuccess
	if m.Authoritative {
		m.Ns = append(m.Ns, h.s.soa)
	}
}

func (h *handler) nxdomain(m *dns.Msg) {
	m.Rcode = dns.RcodeNameError
	m.Answer = nil
	m.Ns = append(m.Ns, h.s.soa)
}

// splitLabels splits a name without its trailing dot into at most 4 labels,
// left to right, without allocating; -1 when there are more.
func splitLabels(s string, out *[4]string) int {
	for n := 0; n < len(out); n++ {
		i := strings.IndexByte(s, '.')
		if i < 0 {
			out[n] = s
			return n + 1
		}
		out[n] = s[:i]
		s = s[i+1:]
	}
	return -1
}

// write finishes m for the transport and sends it: an OPT record when the
// client sent one, truncation to the client's UDP payload size.
func (h *handler) write(w dns.ResponseWriter, m *dns.Msg, reqOpt *dns.OPT) {
	size := dns.MaxMsgSize
	if reqOpt != nil {
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(ednsSize)
		if reqOpt.Do() {
			opt.SetDo()
		}
		m.Extra = append(m.Extra, opt)
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size = dns.MinMsgSize
		if reqOpt != nil {
			size = min(max(int(reqOpt.UDPSize()), dns.MinMsgSize), ednsSize)
		}
	}
	m.Truncate(size)
	// Pack into a pooled buffer rather than WriteMsg's fresh one (we use no TSIG).
	bp := packBufs.Get().(*[]byte)
	defer packBufs.Put(bp)
	buf, err := m.PackBuffer(*bp)
	if err == nil {
		_, err = w.Write(buf)
	}
	if err != nil {
		h.s.log.Debug("write dns response", "client", w.RemoteAddr(), "err", err)
	}
}

// packBufs holds reply buffers big enough for any UDP reply; larger (TCP)
// replies get their own.
var packBufs = sync.Pool{New: func() any {
	b := make([]byte, 2*ednsSize)
	return &b
}}

// clientAddr returns the IP of a client address (IPv4-mapped unmapped).
func clientAddr(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	case nil:
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
