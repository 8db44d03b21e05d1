package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NFTables is the Linux Kernel: one nftables table, programmed over
// netlink (google/nftables: no nft binary needed, so it works from a
// FROM scratch image), each change one atomic transaction. It works in the
// network namespace of the calling thread.
type NFTables struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	cur    *ruleset     // what the table holds; nil: unknown (start over)
	rules  int          // what the table holds beyond its skeleton (ruleset.size); Rules
	mapSeq uint64       // names the endpoint maps, never reused
	stale  []netip.Addr // endpoints gone since the last FlushStale
	// hairpinned holds the bridge ports (by index) whose hairpin mode is on.
	hairpinned map[int]bool
	warnedBrNF bool
	// newUDPPorts are UDP published ports served since the last FlushStale:
	// flows a client sent while they had no endpoint are untranslated in
	// conntrack and would stay so while the client keeps sending.
	newUDPPorts []hostPortKey
}

// FlushStale implements Kernel: the UDP conntrack entries of endpoints that
// left are deleted, so that a UDP "connection" does not stick to a pod that
// is gone. Apply leaves this for after the rules are in: a conntrack dump
// walks the kernel's whole conntrack hash, which costs more than the rule
// change itself.
func (k *NFTables) FlushStale() {
	k.mu.Lock()
	gone, ports := k.stale, k.newUDPPorts
	k.stale, k.newUDPPorts = nil, nil
	k.mu.Unlock()
	flushUDP(gone, ports, k.log)
}

// mapIDBase keeps our transaction IDs of endpoint maps apart from the ones
// google/nftables allocates for the sets it names itself.
const mapIDBase = 1 << 31

var _ Kernel = (*NFTables)(nil)

// NewNFTables returns the data path for cfg; it touches nothing until Apply.
func NewNFTables(cfg Config) *NFTables {
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &NFTables{cfg: cfg, log: cfg.Log.With("component", "proxy")}
}

// Apply implements Kernel: it computes the rules for services, diffs them
// with what the table holds and sends the difference as one transaction.
// The first Apply (and any after a failure) replaces the table whole, in one
// transaction too; established connections are kept either way (their NAT
// lives in conntrack, not in the rules). UDP flows to endpoints that left
// are flushed from conntrack by the next FlushStale.
func (k *NFTables) Apply(services []Service) error {
	want, planErr := planRules(services)
	k.mu.Lock()
	defer k.mu.Unlock()
	ch := diff(k.cur, want)
	if !ch.empty() {
		c, err := nftables.New(nftables.WithSockOptions(bigBuffers))
		if err != nil {
			return fmt.Errorf("apply service rules: open netlink: %w", err)
		}
		t := k.table()
		if ch.full {
			k.skeleton(c, t)
		}
		if err := k.program(c, t, ch, want); err != nil {
			k.cur = nil
			return fmt.Errorf("apply service rules: %w", err)
		}
		if err := c.Flush(); err != nil {
			// One transaction: the table holds what it held (k.rules).
			k.cur = nil
			return fmt.Errorf("apply service rules (%s): %w", ch.summary(), err)
		}
		k.cur = want
		k.rules = want.size()
	}
	k.setLocalnet("1")
	k.ensureBridgeNetfilter()
	if ch.full {
		k.unbindLoopbackVIPs()
	}
	if err := k.ensureRoute(); errors.Is(err, unix.ENETDOWN) {
		// A bridge is down until its first pod joins it; the next change
		// (that pod becoming an endpoint) routes again.
		k.log.Debug("route the service cidr: the bridge is down", "err", err)
	} else if err != nil {
		k.log.Warn("route the service cidr", "err", err)
	}
	if ch.full || len(ch.addHairpin) > 0 {
		k.setHairpin() // a new endpoint may be a new pod on the bridge
	}
	k.stale = append(k.stale, ch.goneEndpoints...)
	for pk := range ch.addNodePorts {
		if pk.proto == protoUDP {
			k.newUDPPorts = append(k.newUDPPorts, hostPortKey{proto: protoUDP, port: pk.port})
		}
	}
	for hk := range ch.addHostPorts {
		if hk.proto == protoUDP {
			k.newUDPPorts = append(k.newUDPPorts, hk)
		}
	}
	if planErr != nil {
		return fmt.Errorf("apply service rules: %w", planErr)
	}
	return nil
}

// Rules implements Kernel: the elements and generated chains the last
// Apply that reached the kernel programmed (ruleset.size).
func (k *NFTables) Rules() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.rules
}

// Check implements Kernel: the table must still exist.
func (k *NFTables) Check() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	exists, err := k.tableExists()
	if err != nil {
		return err
	}
	if !exists && k.cur != nil {
		k.cur, k.rules = nil, 0
		return fmt.Errorf("table ip %s is gone", k.cfg.Table)
	}
	k.setHairpin()         // a pod's veth may be new since the last change
	return k.ensureRoute() // the bridge may have been re-created
}

// Teardown implements Kernel: the table goes, and route_localnet is reset
// on the devices it was set on.
func (k *NFTables) Teardown() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cur, k.rules = nil, 0
	k.setLocalnet("0")
	if err := k.removeRoute(); err != nil {
		k.log.Warn("remove the service cidr route", "err", err)
	}
	exists, err := k.tableExists()
	if err != nil || !exists {
		return err
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("remove service rules: open netlink: %w", err)
	}
	c.DelTable(k.table())
	if err := c.Flush(); err != nil {
		return fmt.Errorf("remove table ip %s: %w", k.cfg.Table, err)
	}
	return nil
}

func (k *NFTables) tableExists() (bool, error) {
	c, err := nftables.New()
	if err != nil {
		return false, fmt.Errorf("open netlink: %w", err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return false, fmt.Errorf("list nftables tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == k.cfg.Table {
			return true, nil
		}
	}
	return false, nil
}

func (k *NFTables) table() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyIPv4, Name: k.cfg.Table}
}

// The named sets and maps of the table (lookups refer to them by name).
func (k *NFTables) sets(t *nftables.Table) (vips, hairpin, serviceIPs, nodePorts, hostPorts *nftables.Set) {
	return &nftables.Set{Table: t, Name: setVIPs, KeyType: nftables.TypeIPAddr},
		&nftables.Set{Table: t, Name: setHairpin, Concatenation: true,
			KeyType: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeIPAddr)},
		&nftables.Set{Table: t, Name: mapServiceIPs, IsMap: true, KeyType: nftables.TypeIPAddr, DataType: nftables.TypeVerdict},
		&nftables.Set{Table: t, Name: mapNodePorts, IsMap: true, Concatenation: true,
			KeyType: nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService), DataType: nftables.TypeVerdict},
		&nftables.Set{Table: t, Name: mapHostPorts, IsMap: true, Concatenation: true,
			KeyType: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService), DataType: nftables.TypeVerdict}
}

// skeleton replaces the table with its fixed part: sets, maps, base chains
// and the dispatch and reject chains.
//
//	chain nat-prerouting  { type nat hook prerouting priority -110
//		ip daddr SERVICES ip saddr != CLUSTER drop; jump services }
//	chain nat-output      { type nat hook output priority -110; jump services }
//	chain services {
//		meta l4proto tcp ip daddr vmap @service-ips
//		meta l4proto udp ip daddr vmap @service-ips
//		ip daddr . meta l4proto . th dport vmap @host-ports
//		fib daddr type local meta l4proto . th dport vmap @node-ports
//	}
//	chain nat-postrouting { type nat hook postrouting priority 100
//		ct status dnat ip saddr . ip daddr @hairpin masquerade        # a pod reaching itself
//		ct status dnat ip saddr 127.0.0.0/8 masquerade                # localhost:PORT
//		ct status dnat ip daddr CLUSTER ip saddr != CLUSTER oifname != BRIDGE masquerade
//	}
//	chain filter-forward    { type filter hook forward priority -10
//		ip daddr CLUSTER ip saddr != CLUSTER ct state new ct status & dnat == 0 drop }
//	chain filter-input      { type filter hook input priority -10
//		iifname != "lo" ip daddr 127.0.0.0/8 ct state new drop }
//	chain filter-prerouting { type filter hook prerouting priority -90
//		iifname != "lo" ip saddr 127.0.0.0/8 drop; jump reject-unserved }
//	chain filter-output     { type filter hook output priority -10; jump reject-unserved }
//	chain reject-unserved {
//		ip daddr SERVICES ct state new meta l4proto tcp reject with tcp reset
//		ip daddr SERVICES ct state new reject
//		ip daddr SERVICES drop
//	}
//
// The last masquerade rule is the routing mesh's: a translated connection
// from outside the pod network (a client of a published port, the host
// itself) that leaves towards another node must come back through this
// one. Pods keep their address to any VIP, and a client of a published
// port keeps its address when the endpoint is on this node.
func (k *NFTables) skeleton(c *nftables.Conn, t *nftables.Table) {
	c.AddTable(t)
	c.DelTable(t) // with the add before it: whatever the table held is gone
	c.AddTable(t)
	vips, hairpin, serviceIPs, nodePorts, hostPorts := k.sets(t)
	for _, s := range []*nftables.Set{vips, hairpin, serviceIPs, nodePorts, hostPorts} {
		_ = c.AddSet(s, nil) // errors are kept by the Conn and returned by Flush
	}
	prio := func(p int32) *nftables.ChainPriority { return nftables.ChainPriorityRef(nftables.ChainPriority(p)) }
	base := func(name string, typ nftables.ChainType, hook *nftables.ChainHook, p int32) *nftables.Chain {
		return c.AddChain(&nftables.Chain{Name: name, Table: t, Type: typ, Hooknum: hook, Priority: prio(p)})
	}
	regular := func(name string) *nftables.Chain { return c.AddChain(&nftables.Chain{Name: name, Table: t}) }
	add := func(ch *nftables.Chain, exprs ...expr.Any) {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs})
	}
	jump := func(to string) expr.Any { return &expr.Verdict{Kind: expr.VerdictJump, Chain: to} }

	rule := func(parts ...[]expr.Any) []expr.Any { return slices.Concat(parts...) }
	services := regular(chainServices)
	reject := regular(chainReject)

	// Dispatch.
	for _, proto := range []byte{protoTCP, protoUDP} {
		add(services, loadL4Proto(1), cmpEq(1, []byte{proto}), loadDaddr(1), vmap(1, serviceIPs))
	}
	add(services, loadDaddr(1), loadL4Proto(9), loadDport(10), vmap(1, hostPorts))
	add(services,
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		cmpEq(1, binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)),
		loadL4Proto(1), loadDport(9), vmap(1, nodePorts))

	natPre := base("nat-prerouting", nftables.ChainTypeNAT, nftables.ChainHookPrerouting, -110)
	// VIPs serve the cluster: a packet to the service range from outside
	// the pod network (a LAN host that routes the range to this node) is
	// dropped before it is translated. The node's own connections to VIPs
	// take the output hook; published ports are not in the range.
	if svc, cluster := k.cfg.ServiceCIDR.Masked(), k.cfg.ClusterCIDR.Masked(); svc.IsValid() && cluster.IsValid() {
		add(natPre, rule(matchPrefix(loadDaddr(1), svc, expr.CmpOpEq), matchPrefix(loadSaddr(1), cluster, expr.CmpOpNeq),
			[]expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}})...)
	}
	add(natPre, jump(chainServices))
	add(base("nat-output", nftables.ChainTypeNAT, nftables.ChainHookOutput, -110), jump(chainServices))

	// What reaches the service range without being translated has no
	// endpoint (or is not a VIP any more): a new connection is refused at
	// once, anything else dropped. Only new ones are refused: a packet that
	// conntrack found invalid (an out-of-window retransmit of a healthy
	// translated connection) is not translated either, and a reset built
	// from it would kill that connection, as kube-proxy once did. Done in
	// prerouting, before the routing decision: a pod's packet to a VIP routed
	// back out of the bridge it came from would earn the pod an ICMP redirect
	// ("the VIP is on-link") that breaks its later connections to the VIP.
	toServices := []expr.Any{loadDaddr(1), inSet(1, vips)}
	if svc := k.cfg.ServiceCIDR.Masked(); svc.IsValid() {
		toServices = matchPrefix(loadDaddr(1), svc, expr.CmpOpEq) // freed VIPs too
	}
	isNew := []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
	add(reject, rule(toServices, isNew, []expr.Any{loadL4Proto(1), cmpEq(1, []byte{protoTCP}),
		&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}})...)
	add(reject, rule(toServices, isNew, []expr.Any{
		&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3}})...) // port unreachable
	add(reject, rule(toServices, []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}})...)
	post := base("nat-postrouting", nftables.ChainTypeNAT, nftables.ChainHookPostrouting, 100)
	// ct status & dnat != 0 (translated), or == 0.
	ctDNAT := func(op expr.CmpOp) []expr.Any {
		return []expr.Any{
			&expr.Ct{Key: expr.CtKeySTATUS, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(ctStatusDNAT), Xor: make([]byte, 4)},
			&expr.Cmp{Op: op, Register: 1, Data: make([]byte, 4)},
		}
	}
	dnatted := ctDNAT(expr.CmpOpNeq)
	add(post, rule(dnatted, []expr.Any{loadSaddr(1), loadDaddr(9), inSet(1, hairpin), &expr.Masq{}})...)
	add(post, rule(dnatted, matchPrefix(loadSaddr(1), loopback, expr.CmpOpEq), []expr.Any{&expr.Masq{}})...)
	cluster := k.cfg.ClusterCIDR.Masked()
	mesh := rule(dnatted, matchPrefix(loadDaddr(1), cluster, expr.CmpOpEq), matchPrefix(loadSaddr(1), cluster, expr.CmpOpNeq))
	if k.cfg.Bridge != "" {
		mesh = append(mesh, &expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(k.cfg.Bridge)})
	}
	add(post, append(mesh, &expr.Masq{})...)

	// Pods serve the cluster too: a new connection to a pod address from
	// outside the pod network (a LAN host that routes the cluster range to
	// this node, a container on another Docker network) is dropped unless it
	// was translated (a published port). Docker's own FORWARD rules do not
	// stop it on a host where forwarding was on before dockerd started (its
	// FORWARD policy then stays ACCEPT). Other nodes reach pods from their
	// VXLAN address, inside the range.
	if cluster.IsValid() {
		add(base("filter-forward", nftables.ChainTypeFilter, nftables.ChainHookForward, -10), rule(
			matchPrefix(loadDaddr(1), cluster, expr.CmpOpEq), matchPrefix(loadSaddr(1), cluster, expr.CmpOpNeq),
			isNew, ctDNAT(expr.CmpOpEq), []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}})...)
	}

	input := base("filter-input", nftables.ChainTypeFilter, nftables.ChainHookInput, -10)
	// route_localnet lets 127.0.0.0/8 be routed to pods; never let a packet
	// from outside start a connection to the host's loopback services.
	add(input, rule(
		[]expr.Any{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname("lo")}},
		matchPrefix(loadDaddr(1), loopback, expr.CmpOpEq),
		isNew, []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}})...)
	pre := base("filter-prerouting", nftables.ChainTypeFilter, nftables.ChainHookPrerouting, -90)
	// Nor may anything from outside claim a loopback source.
	add(pre, rule(
		[]expr.Any{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname("lo")}},
		matchPrefix(loadSaddr(1), loopback, expr.CmpOpEq),
		[]expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}})...)
	add(pre, jump(chainReject))
	add(base("filter-output", nftables.ChainTypeFilter, nftables.ChainHookOutput, -10), jump(chainReject))
}

var loopback = netip.MustParsePrefix("127.0.0.0/8")

// program adds ch to the batch, in an order the kernel accepts: elements
// that point at chains go before those chains are flushed or deleted, and
// new chains exist before anything points at them.
func (k *NFTables) program(c *nftables.Conn, t *nftables.Table, ch *change, want *ruleset) error {
	vips, hairpin, serviceIPs, nodePorts, hostPorts := k.sets(t)
	var errs []error
	// Elements go in messages of at most elementsPerMessage: a netlink
	// attribute's length is 16 bits, and the element list is one attribute.
	del := func(s *nftables.Set, els []nftables.SetElement) {
		for chunk := range slices.Chunk(els, elementsPerMessage) {
			errs = append(errs, c.SetDeleteElements(s, chunk))
		}
	}
	addEls := func(s *nftables.Set, els []nftables.SetElement) {
		for chunk := range slices.Chunk(els, elementsPerMessage) {
			errs = append(errs, c.SetAddElements(s, chunk))
		}
	}
	del(serviceIPs, serviceIPElements(ch.delServiceIPs))
	del(nodePorts, nodePortElements(ch.delNodePorts))
	del(hostPorts, hostPortElements(ch.delHostPorts))
	del(vips, addrElements(ch.delVIPs))
	del(hairpin, hairpinElements(ch.delHairpin))

	chain := func(name string) *nftables.Chain { return &nftables.Chain{Name: name, Table: t} }
	for _, name := range ch.delChains {
		c.FlushChain(chain(name))
		c.DelChain(chain(name))
	}
	for _, name := range ch.refill {
		c.FlushChain(chain(name))
	}
	for _, name := range ch.newChains {
		c.AddChain(chain(name))
	}
	for _, names := range [][]string{ch.newChains, ch.refill} {
		for _, name := range names {
			exprs, err := k.dnatExprs(c, t, want.chains[name])
			if err != nil {
				return fmt.Errorf("chain %s: %w", name, err)
			}
			c.AddRule(&nftables.Rule{Table: t, Chain: chain(name), Exprs: exprs})
		}
	}

	addEls(vips, addrElements(ch.addVIPs))
	addEls(hairpin, hairpinElements(ch.addHairpin))
	addEls(serviceIPs, serviceIPElements(ch.addServiceIPs))
	addEls(nodePorts, nodePortElements(ch.addNodePorts))
	addEls(hostPorts, hostPortElements(ch.addHostPorts))
	return errors.Join(errs...)
}

// dnatExprs is a generated chain's one rule: dnat to numgen random mod N map
// { i : EP } (every port kept), or { i : EP . PORT } (published ports).
//
// The map is anonymous (it lives and dies with its rule) but gets a name and
// a transaction ID of our own: with nft's "__map%d" the kernel allocates
// each name by scanning every set of the table, which made a table of
// 2,000 maps cost seconds; a name of our own is looked up directly.
func (k *NFTables) dnatExprs(c *nftables.Conn, t *nftables.Table, targets []netip.AddrPort) ([]expr.Any, error) {
	if len(targets) == 0 {
		return nil, errors.New("no dnat targets")
	}
	withPort := targets[0].Port() != 0
	k.mapSeq++
	m := &nftables.Set{Table: t, Anonymous: true, Constant: true, IsMap: true,
		Name: fmt.Sprintf("__ep%d", k.mapSeq), ID: mapIDBase + uint32(k.mapSeq%(1<<30)),
		KeyType: nftables.TypeInteger, DataType: nftables.TypeIPAddr}
	if withPort {
		m.DataType = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	}
	els := make([]nftables.SetElement, len(targets))
	for i, tg := range targets {
		val := tg.Addr().AsSlice()
		if withPort {
			val = append(val, byte(tg.Port()>>8), byte(tg.Port()), 0, 0)
		}
		els[i] = nftables.SetElement{Key: binaryutil.NativeEndian.PutUint32(uint32(i)), Val: val}
	}
	// The elements follow in messages of their own, so that a service with
	// thousands of endpoints stays within a message's limits.
	if err := c.AddSet(m, nil); err != nil {
		return nil, fmt.Errorf("endpoint map: %w", err)
	}
	// (google/nftables refuses to add elements to an anonymous set after
	// AddSet; the kernel takes them in the same transaction, by name and ID.)
	fill := *m
	fill.Anonymous = false
	for chunk := range slices.Chunk(els, elementsPerMessage) {
		if err := c.SetAddElements(&fill, chunk); err != nil {
			return nil, fmt.Errorf("endpoint map: %w", err)
		}
	}
	nat := &expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegAddrMax: 1}
	if withPort {
		nat.RegProtoMin, nat.RegProtoMax = 9, 9
	}
	return []expr.Any{
		&expr.Numgen{Register: 1, Modulus: uint32(len(targets)), Type: unix.NFT_NG_RANDOM},
		&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: m.Name, SetID: m.ID},
		nat,
	}, nil
}

// Expression helpers. Register 1 is the first 16-byte register; 9 and 10
// are its second and third 32-bit words, as concatenated keys need.
func loadDaddr(reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}
}

func loadSaddr(reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}
}

func loadDport(reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
}

func loadL4Proto(reg uint32) expr.Any { return &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg} }

func cmpEq(reg uint32, data []byte) expr.Any {
	return &expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: data}
}

// matchPrefix compares what load puts in register 1 with a prefix.
func matchPrefix(load expr.Any, p netip.Prefix, op expr.CmpOp) []expr.Any {
	out := []expr.Any{load}
	if p.Bits() < 32 {
		out = append(out, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: net.CIDRMask(p.Bits(), 32), Xor: make([]byte, 4)})
	}
	return append(out, &expr.Cmp{Op: op, Register: 1, Data: p.Masked().Addr().AsSlice()})
}

// ifname is an interface name as the kernel compares it (NUL-padded).
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

func vmap(reg uint32, m *nftables.Set) expr.Any {
	return &expr.Lookup{SourceRegister: reg, DestRegister: 0, IsDestRegSet: true, SetName: m.Name}
}

func inSet(reg uint32, s *nftables.Set) expr.Any {
	return &expr.Lookup{SourceRegister: reg, SetName: s.Name}
}

// Element keys. Concatenated keys pad each field to 4 bytes.
func goTo(chain string) *expr.Verdict { return &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain} }

func addrElements(as []netip.Addr) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, len(as))
	for _, a := range as {
		out = append(out, nftables.SetElement{Key: a.AsSlice()})
	}
	return out
}

func hairpinElements(as []netip.Addr) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, len(as))
	for _, a := range as {
		out = append(out, nftables.SetElement{Key: append(a.AsSlice(), a.AsSlice()...)})
	}
	return out
}

func serviceIPElements(m map[netip.Addr]string) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, len(m))
	for a, ch := range m {
		out = append(out, nftables.SetElement{Key: a.AsSlice(), VerdictData: goTo(ch)})
	}
	return out
}

func nodePortElements(m map[portKey]string) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, len(m))
	for k, ch := range m {
		out = append(out, nftables.SetElement{Key: []byte{k.proto, 0, 0, 0, byte(k.port >> 8), byte(k.port), 0, 0}, VerdictData: goTo(ch)})
	}
	return out
}

func hostPortElements(m map[hostPortKey]string) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, len(m))
	for k, ch := range m {
		key := append(k.addr.AsSlice(), k.proto, 0, 0, 0, byte(k.port>>8), byte(k.port), 0, 0)
		out = append(out, nftables.SetElement{Key: key, VerdictData: goTo(ch)})
	}
	return out
}

// bigBuffers lets one transaction carry a whole table: the kernel echoes
// every rule back, and all of it is read after the batch is sent.
func bigBuffers(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		for _, opt := range []int{unix.SO_SNDBUFFORCE, unix.SO_RCVBUFFORCE} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, 64<<20); e != nil {
				serr = e
			}
		}
	}); err != nil {
		return err
	}
	return serr
}

// summary says how big a change is, for errors.
func (c *change) summary() string {
	if c.full {
		return "full table"
	}
	return fmt.Sprintf("%d chains new, %d refilled, %d removed", len(c.newChains), len(c.refill), len(c.delChains))
}

// setLocalnet sets route_localnet on the configured devices that exist.
func (k *NFTables) setLocalnet(v string) {
	for _, dev := range k.cfg.LocalnetDevices {
		p := filepath.Join("/proc/sys/net/ipv4/conf", dev, "route_localnet")
		cur, err := os.ReadFile(p)
		if err != nil || strings.TrimSpace(string(cur)) == v {
			continue // no such device (yet), or already set
		}
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			k.log.Warn("set route_localnet", "device", dev, "err", err)
		}
	}
}

// serviceRoute is the route of the service CIDR through the bridge, or
// nil when there is none to have (no CIDR or bridge configured, or the
// bridge does not exist yet).
func (k *NFTables) serviceRoute() *vnl.Route {
	cidr := k.cfg.ServiceCIDR.Masked()
	if !cidr.IsValid() || k.cfg.Bridge == "" {
		return nil
	}
	br, err := vnl.LinkByName(k.cfg.Bridge)
	if err != nil {
		return nil
	}
	return &vnl.Route{LinkIndex: br.Attrs().Index, Scope: vnl.SCOPE_LINK,
		Dst: &net.IPNet{IP: net.IP(cidr.Addr().AsSlice()), Mask: net.CIDRMask(cidr.Bits(), 32)}}
}

// ensureRoute routes the service CIDR through the bridge (idempotent). The
// kernel picks the bridge's address as source: a pod answers the host's
// connection to a VIP through its own gateway, on any node.
func (k *NFTables) ensureRoute() error {
	want := k.serviceRoute()
	if want == nil {
		return nil
	}
	have, err := vnl.RouteListFiltered(vnl.FAMILY_V4, &vnl.Route{Dst: want.Dst}, vnl.RT_FILTER_DST)
	if err != nil {
		return fmt.Errorf("list routes of %s: %w", want.Dst, err)
	}
	for _, r := range have {
		if r.LinkIndex == want.LinkIndex && r.Table == unix.RT_TABLE_MAIN {
			return nil
		}
	}
	if err := vnl.RouteReplace(want); err != nil {
		return fmt.Errorf("route %s through %s: %w", want.Dst, k.cfg.Bridge, err)
	}
	return nil
}

func (k *NFTables) removeRoute() error {
	r := k.serviceRoute()
	if r == nil {
		return nil
	}
	if err := vnl.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("remove route %s: %w", r.Dst, err)
	}
	return nil
}

// bridgeNetfilter makes bridged traffic pass netfilter. A pod's connection
// to a VIP translated to another pod of the same bridge is answered at layer
// 2, pod to pod; only with br_netfilter does that reply get translated back
// (its source made the VIP again), as kube-proxy requires too. Docker loads
// br_netfilter itself only in some configurations (not by default since
// Engine 27.3).
const bridgeNetfilter = "/proc/sys/net/bridge/bridge-nf-call-iptables"

// ensureBridgeNetfilter sets bridge-nf-call-iptables, loading br_netfilter
// when the setting does not exist yet; it warns once when it cannot.
func (k *NFTables) ensureBridgeNetfilter() {
	cur, err := os.ReadFile(bridgeNetfilter)
	if err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		command := k.cfg.Command
		if command == nil {
			command = exec.CommandContext
		}
		_ = command(ctx, "modprobe", "br_netfilter").Run()
		cancel()
		cur, err = os.ReadFile(bridgeNetfilter)
	}
	if err == nil && strings.TrimSpace(string(cur)) == "1" {
		return
	}
	if err == nil {
		err = os.WriteFile(bridgeNetfilter, []byte("1"), 0o644)
	}
	if err != nil && !k.warnedBrNF {
		k.warnedBrNF = true
		k.log.Warn("bridged traffic does not pass netfilter (load the br_netfilter module): "+
			"a pod's connection to a service whose pod is on the same node will fail", "err", err)
	}
}

// unbindLoopbackVIPs removes VIPs that agents before the kernel data path
// bound on lo: a VIP bound there makes the host's connections to it leave
// with the VIP itself as source, which cost ~10% of their throughput.
func (k *NFTables) unbindLoopbackVIPs() {
	cidr := k.cfg.ServiceCIDR.Masked()
	lo, err := vnl.LinkByName("lo")
	if !cidr.IsValid() || err != nil {
		return
	}
	addrs, err := vnl.AddrList(lo, vnl.FAMILY_V4)
	if err != nil {
		return
	}
	for _, ad := range addrs {
		if a, ok := netip.AddrFromSlice(ad.IP.To4()); ok && cidr.Contains(a) {
			if err := vnl.AddrDel(lo, &ad); err != nil {
				k.log.Warn("unbind an old VIP from lo", "addr", a, "err", err)
			}
		}
	}
}

// setHairpin turns on hairpin mode on the ports of the pod bridge (as the
// kubelet does), so that a pod whose connection to its own service comes
// back to it gets the frame on the port it was sent from.
func (k *NFTables) setHairpin() {
	if k.cfg.Bridge == "" {
		return
	}
	br, err := vnl.LinkByName(k.cfg.Bridge)
	if err != nil {
		return // not there yet: no pods either
	}
	links, err := vnl.LinkList()
	if err != nil {
		k.log.Warn("list links for hairpin mode", "err", err)
		return
	}
	ports := map[int]bool{}
	for _, l := range links {
		idx := l.Attrs().Index
		if l.Attrs().MasterIndex != br.Attrs().Index {
			continue
		}
		ports[idx] = true
		if k.hairpinned[idx] {
			continue
		}
		if pi, err := vnl.LinkGetProtinfo(l); err != nil || !pi.Hairpin {
			if err := vnl.LinkSetHairpin(l, true); err != nil {
				k.log.Warn("set hairpin mode", "port", l.Attrs().Name, "err", err)
				delete(ports, idx) // retried next time
			}
		}
	}
	k.hairpinned = ports // ports that left the bridge are forgotten
}

// flushUDP deletes the UDP conntrack entries of endpoints that are gone,
// so that a UDP "connection" does not stick to a dead endpoint, and those
// to published ports that have just got endpoints (kube-proxy does both).
func flushUDP(gone []netip.Addr, ports []hostPortKey, log *slog.Logger) {
	if len(gone)+len(ports) == 0 {
		return
	}
	filters := make([]vnl.CustomConntrackFilter, 0, len(gone)+len(ports))
	for _, a := range gone {
		f := &vnl.ConntrackFilter{}
		if f.AddIP(vnl.ConntrackReplySrcIP, net.IP(a.AsSlice())) == nil && f.AddProtocol(protoUDP) == nil {
			filters = append(filters, f)
		}
	}
	for _, p := range ports {
		f := &vnl.ConntrackFilter{}
		if f.AddProtocol(protoUDP) != nil || f.AddPort(vnl.ConntrackOrigDstPort, p.port) != nil {
			continue
		}
		if p.addr.IsValid() && f.AddIP(vnl.ConntrackOrigDstIP, net.IP(p.addr.AsSlice())) != nil {
			continue
		}
		filters = append(filters, f)
	}
	if _, err := vnl.ConntrackDeleteFilters(vnl.ConntrackTable, unix.AF_INET, filters...); err != nil {
		log.Warn("flush stale udp conntrack entries", "endpoints", len(gone), "ports", len(ports), "err", err)
	}
}

// elementsPerMessage keeps a message's element list under 64 KiB, the
// limit of a netlink attribute's 16-bit length (the largest element, a
// host-ports key with a goto to a long chain name, takes ~92 bytes: 47 KiB).
const elementsPerMessage = 512

// ctStatusDNAT is IPS_DST_NAT, the conntrack status bit of a translated destination.
const ctStatusDNAT = 1 << 5
