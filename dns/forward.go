package dns

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

var errMismatch = errors.New("answer does not match the question")

// forward answers req from the upstreams, SERVFAIL when none answers or
// Config.MaxForwards queries are waiting on them already.
func (h *handler) forward(w dns.ResponseWriter, req *dns.Msg, reqOpt *dns.OPT) {
	var resp *dns.Msg
	select {
	case h.s.forwards <- struct{}{}:
		resp = h.queryUpstreams(req, reqOpt)
		<-h.s.forwards
	default:
		// As many queries wait on the upstreams as are allowed: fail this
		// one now rather than hold another goroutine and socket.
	}
	if resp == nil {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeServerFailure)
		m.RecursionAvailable = true
		h.write(w, m, reqOpt)
		h.observe(ResultServFail)
		return
	}
	// Back to the client's view: its ID and question (as spelled), our OPT.
	resp.Id = req.Id
	resp.Question = req.Question
	resp.Extra = slices.DeleteFunc(resp.Extra, func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypeOPT })
	if reqOpt == nil && resp.Rcode > 0xF {
		resp.Rcode = dns.RcodeServerFailure // an extended rcode cannot be said without EDNS
	}
	h.write(w, resp, reqOpt)
	h.observe(ResultForwarded)
}

// queryUpstreams asks the upstreams in order: UDP first, TCP when the UDP
// answer is truncated. A SERVFAIL/REFUSED answer moves on to the next
// upstream but is returned if nothing better comes. nil: no answer at all.
func (h *handler) queryUpstreams(req *dns.Msg, reqOpt *dns.OPT) *dns.Msg {
	ups := h.s.currentUpstreams()
	if len(ups) == 0 {
		return nil
	}
	// Our own query: fresh ID, the client's question and flags, a plain OPT
	// with our payload size (client EDNS options such as cookies are per hop).
	q := &dns.Msg{
		MsgHdr: dns.MsgHdr{
			Id:               dns.Id(),
			Opcode:           dns.OpcodeQuery,
			RecursionDesired: req.RecursionDesired,
			CheckingDisabled: req.CheckingDisabled,
		},
		Question: req.Question,
	}
	q.SetEdns0(ednsSize, reqOpt != nil && reqOpt.Do())

	var fallback *dns.Msg
	for _, up := range ups {
		resp, err := h.exchange("udp", q, up)
		if err == nil && resp.Truncated {
			if tresp, terr := h.exchange("tcp", q, up); terr == nil {
				resp = tresp
			} else {
				h.s.log.Debug("retry truncated answer over tcp", "upstream", up, "err", terr)
			}
		}
		if err != nil {
			h.s.log.Debug("forward query", "name", q.Question[0].Name, "upstream", up, "err", err)
			if h.ctx.Err() != nil {
				return nil
			}
			continue
		}
		if resp.Rcode == dns.RcodeServerFailure || resp.Rcode == dns.RcodeRefused {
			if fallback == nil {
				fallback = resp
			}
			continue
		}
		return resp
	}
	return fallback
}

// exchange sends m to addr over network ("udp" or "tcp") within the
// upstream timeout; cancelling the handler context aborts it.
func (h *handler) exchange(network string, m *dns.Msg, addr string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(h.ctx, h.s.cfg.Timeout)
	defer cancel()
	c := dns.Client{Net: network, Timeout: h.s.cfg.Timeout, UDPSize: ednsSize}
	co, err := c.DialContext(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s %s: %w", network, addr, err)
	}
	defer co.Close()
	stop := context.AfterFunc(ctx, func() { co.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	r, _, err := c.ExchangeWithConnContext(ctx, m, co)
	if err != nil {
		return nil, fmt.Errorf("query %s %s: %w", network, addr, err)
	}
	want := m.Question[0]
	if !r.Response || len(r.Question) != 1 || r.Question[0].Qtype != want.Qtype ||
		r.Question[0].Qclass != want.Qclass || !strings.EqualFold(r.Question[0].Name, want.Name) {
		return nil, fmt.Errorf("query %s %s: %w", network, addr, errMismatch)
	}
	return r, nil
}
