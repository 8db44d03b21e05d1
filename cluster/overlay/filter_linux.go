package overlay

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The VXLAN port takes packets from member nodes only: a table of its own,
// named after the device, holds the peers' underlay addresses and drops
// every other packet to the port before the VXLAN driver decapsulates it
// (anyone on the LAN could otherwise inject frames into the pod network).
//
//	table ip <device> {
//		set peers { type ipv4_addr; elements = { <peer host IPs> } }
//		chain input { type filter hook input priority -10
//			udp dport <port> ip saddr != @peers counter drop }
//	}
//
// The check is by source address, as flannel's and Docker's overlays have
// it: VXLAN carries no authentication, so a host that can forge a member's
// address on the underlay still gets in.

const peerSet = "peers"

// filterTable is the nftables table of the VXLAN filter.
func (v *VXLAN) filterTable() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyIPv4, Name: v.cfg.Device}
}

// ensureFilter replaces the filter table in one transaction: the peers of
// plan are the only sources the VXLAN port accepts.
func (v *VXLAN) ensureFilter(plan peerPlan) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	t := v.filterTable()
	c.AddTable(t)
	c.DelTable(t) // with the add before it: whatever the table held is gone
	c.AddTable(t)
	set := &nftables.Set{Table: t, Name: peerSet, KeyType: nftables.TypeIPAddr}
	var elems []nftables.SetElement
	seen := map[netip.Addr]bool{}
	for _, ip := range plan.fdb {
		if !seen[ip] {
			seen[ip] = true
			elems = append(elems, nftables.SetElement{Key: ip.AsSlice()})
		}
	}
	if err := c.AddSet(set, elems); err != nil {
		return fmt.Errorf("add set %s: %w", peerSet, err)
	}
	prio := nftables.ChainPriority(-10)
	input := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: &prio})
	c.AddRule(&nftables.Rule{Table: t, Chain: input, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(uint16(v.cfg.Port))},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID, Invert: true},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("program table ip %s: %w", t.Name, err)
	}
	return nil
}

// removeFilter deletes the filter table; a missing one is not an error.
func (v *VXLAN) removeFilter() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	t := v.filterTable()
	c.AddTable(t) // so that the delete finds one
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("remove table ip %s: %w", t.Name, err)
	}
	return nil
}
