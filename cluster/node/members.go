package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/devhq/dev/cluster/agent"
	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/apiserver"
	"github.com/devhq/dev/cluster/controller"
	"github.com/devhq/dev/cluster/manager"
	"github.com/devhq/dev/cluster/overlay"
	"github.com/devhq/dev/cluster/raftstore"
	"github.com/devhq/dev/cluster/state"
	"github.com/devhq/dev/gossip"
)

// gossipMembers adapts gossip to the manager's Membership.
type gossipMembers struct{ g *gossip.Gossip }

func (m gossipMembers) Members() []manager.Member {
	select {
	case <-m.g.Ready():
	default:
		return nil
	}
	var out []manager.Member
	for _, mb := range m.g.Members() {
		out = append(out, manager.Member{Name: mb.Name, Status: mb.Status, Tags: mb.Tags})
	}
	return out
}

// apiMembers is the gossip view a join answer lists.
func (m gossipMembers) apiMembers() []apiserver.Member {
	var out []apiserver.Member
	for _, mb := range m.Members() {
		out = append(out, apiserver.Member{Status: mb.Status, Gossip: mb.Tags[manager.TagGossip]})
	}
	return out
}

// joinGossip joins the given members once gossip is up (a node that just
// joined the cluster), retrying for a while. A failed attempt asks a peer
// for the gossip key first: the key the join answer gave may have been
// rotated since.
func (n *Node) joinGossip(ctx context.Context, g *gossip.Gossip, peers []string, keys *gossipKeys) error {
	if len(peers) == 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		return nil
	case <-g.Ready():
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := g.Join(ctx, peers); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("join gossip %v: %w", peers, err)
		} else {
			n.log.Info("join gossip: retrying", "peers", peers, "err", err)
			keys.refresh(ctx)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// recordCluster writes the bootstrap cluster identity into raft once this
// node leads, then forgets the bootstrap file.
func (n *Node) recordCluster(ctx context.Context, r *raftstore.Raft, mgr *manager.Manager, ci state.ClusterInfo) error {
	for {
		if _, ok := r.State().Cluster(); ok {
			break
		}
		if r.IsLeader() {
			if _, err := mgr.Apply(ctx, &state.SetCluster{Cluster: ci, Founder: n.cfg.Name}); err != nil {
				n.log.Warn("record cluster identity", "err", err)
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err := os.Remove(filepath.Join(n.cfg.DataDir, pkiDir, bootstrapFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		n.log.Warn("remove bootstrap file", "err", err)
	}
	return nil
}

// consumeGossip drains gossip events (serf must never block on us) and
// wakes the overlay loop.
func (n *Node) consumeGossip(ctx context.Context, g *gossip.Gossip, kick chan<- struct{}) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-g.Events():
			if !ok {
				return nil
			}
			for _, m := range ev.Members {
				n.log.Info("member "+ev.Type.String(), "member", m.Name, "status", m.Status)
			}
			select {
			case kick <- struct{}{}:
			default:
			}
		}
	}
}

// runOverlay programs the VXLAN overlay once the cluster has more than one
// node: it creates the device, publishes its MAC and the pod subnet in the
// gossip tags, and keeps the peers' entries in line with gossip. A node
// alone never touches VXLAN or iptables.
func (n *Node) runOverlay(ctx context.Context, g *gossip.Gossip, st *state.Store, kick <-chan struct{}) error {
	select {
	case <-ctx.Done():
		return nil
	case <-g.Ready():
	}
	var (
		ov        *overlay.VXLAN
		applied   string
		appliedAt time.Time
		failedAt  time.Time
	)
	defer func() {
		if ov != nil {
			if err := ov.Teardown(); err != nil {
				n.log.Warn("tear down overlay", "err", err)
			}
		}
	}()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		members := g.Members()
		others := 0
		for _, m := range members {
			if m.Name != n.cfg.Name && m.Status == gossip.StatusAlive {
				others++
			}
		}
		self, hasSelf := st.Node(n.cfg.Name)
		if ov == nil && others > 0 && hasSelf && self.PodSubnet != "" && time.Since(failedAt) > 30*time.Second {
			var err error
			if ov, err = n.setupOverlay(g, self); err != nil {
				n.log.Warn("set up overlay; retrying in 30s", "err", err)
				ov, failedAt = nil, time.Now()
			}
		}
		if ov != nil {
			peers := overlayPeers(members, n.cfg.Name, st)
			// Re-applied now and then even unchanged: Apply also puts the
			// iptables rules back in front of Docker's.
			if key := fmt.Sprint(peers); key != applied || time.Since(appliedAt) > 10*time.Second {
				appliedAt = time.Now()
				if err := ov.Apply(peers); err != nil {
					n.log.Warn("program overlay peers", "err", err)
				} else {
					if key != applied {
						n.log.Info("overlay peers programmed", "peers", len(peers))
					}
					applied = key
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
		case <-tick.C:
		case <-st.Changed():
		}
	}
}

func (n *Node) setupOverlay(g *gossip.Gossip, self api.Node) (*overlay.VXLAN, error) {
	host, err := netip.ParseAddr(n.cfg.AdvertiseAddr)
	if err != nil {
		return nil, fmt.Errorf("advertise address %q: %w", n.cfg.AdvertiseAddr, err)
	}
	sub, err := netip.ParsePrefix(self.PodSubnet)
	if err != nil {
		return nil, fmt.Errorf("pod subnet %q: %w", self.PodSubnet, err)
	}
	cidr, err := netip.ParsePrefix(n.cfg.ClusterCIDR)
	if err != nil {
		return nil, fmt.Errorf("cluster cidr %q: %w", n.cfg.ClusterCIDR, err)
	}
	ov := overlay.NewVXLAN(overlay.VXLANConfig{Device: n.cfg.VXLANDevice, HostIP: host, PodSubnet: sub, ClusterCIDR: cidr})
	mac, err := ov.Setup()
	if err != nil {
		return nil, err
	}
	tags := g.Local().Tags
	tags[manager.TagVTEP] = mac.String()
	tags[manager.TagSubnet] = self.PodSubnet
	if err := g.SetTags(tags); err != nil {
		return ov, fmt.Errorf("publish overlay tags: %w", err)
	}
	n.log.Info("overlay up", "device", n.cfg.VXLANDevice, "mac", mac.String(), "subnet", self.PodSubnet)
	return ov, nil
}

// overlayPeers turns the alive members' tags into overlay peers: only
// nodes of the cluster (admitted with a certificate, not revoked), and only
// for the pod subnet and address the state holds for them. A gossip member
// without a certificate, or one claiming another node's subnet, gets no
// VXLAN entry and its packets are dropped at the VXLAN port.
func overlayPeers(members []gossip.Member, self string, st *state.Store) []overlay.Peer {
	var peers []overlay.Peer
	for _, m := range members {
		if m.Name == self || m.Status != gossip.StatusAlive || !st.MayJoinRaft(m.Name) {
			continue
		}
		node, ok := st.Node(m.Name)
		if !ok || node.PodSubnet == "" || node.PodSubnet != m.Tags[manager.TagSubnet] || node.Address != m.Tags[manager.TagIP] {
			continue
		}
		ip, err1 := netip.ParseAddr(m.Tags[manager.TagIP])
		sub, err2 := netip.ParsePrefix(m.Tags[manager.TagSubnet])
		mac, err3 := net.ParseMAC(m.Tags[manager.TagVTEP])
		if err1 != nil || err2 != nil || err3 != nil {
			continue // not set up yet
		}
		peers = append(peers, overlay.Peer{Name: m.Name, HostIP: ip, PodSubnet: sub, VTEPMAC: mac})
	}
	return peers
}

// defaultAdvertiseAddr is the IPv4 address of the interface that carries
// the default route, or 127.0.0.1.
func defaultAdvertiseAddr() string {
	c, err := net.Dial("udp", "192.0.2.1:9") // no packet is sent: UDP connect only picks a route
	if err != nil {
		return "127.0.0.1"
	}
	defer c.Close()
	if a, ok := c.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() != nil {
		return a.IP.String()
	}
	return "127.0.0.1"
}

// leave drains this node (its pods are recreated elsewhere), hands over
// raft leadership, leaves gossip (the leader then removes it from raft) and
// stops the agent.
func (n *Node) leave(ctx context.Context, r *raftstore.Raft, mgr *manager.Manager, g *gossip.Gossip, ag *agent.Agent, stop context.CancelFunc) error {
	st := r.State()
	self, ok := st.Node(n.cfg.Name)
	if !ok {
		return fmt.Errorf("leave: node %s is not registered", n.cfg.Name)
	}
	others := 0
	for _, nd := range st.Nodes() {
		if nd.Name != n.cfg.Name && nd.Status == api.NodeReady {
			others++
		}
	}
	if others > 0 {
		// First as dev node drain moves pods (each replacement ready
		// before its pod stops), for a while: what could not move by
		// then (no room, or data on this node) is made again elsewhere
		// once the node has left, as it always was.
		n.drainSelf(ctx, mgr, st)
		self, _ = st.Node(n.cfg.Name)
		self.Status = api.NodeLeft
		if _, err := mgr.Apply(ctx, &state.PutNode{Node: self}); err != nil {
			return fmt.Errorf("leave: drain node: %w", err)
		}
		for len(st.Pods(state.PodFilter{Node: n.cfg.Name})) > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("leave: pods still on this node: %w", ctx.Err())
			case <-st.Changed():
			case <-time.After(500 * time.Millisecond):
			}
		}
		// Forgotten by the cluster is not yet stopped: the pods' workers
		// are still removing their containers.
		if err := ag.WaitIdle(ctx); err != nil {
			return fmt.Errorf("leave: %w", err)
		}
		if r.IsLeader() {
			if err := r.TransferLeadership(); err != nil {
				n.log.Warn("leave", "err", err)
			}
		}
		// The last write with this node's certificate revokes it: should
		// the node come back as it was, every port refuses it (it may
		// join again, and get a new one).
		if _, err := mgr.Apply(ctx, state.RevokeNow(api.CertNode, n.cfg.Name)); err != nil {
			n.log.Warn("leave: revoke this node's certificate", "err", err)
		}
		if err := g.Leave(); err != nil {
			n.log.Warn("leave gossip", "err", err)
		}
	}
	n.log.Info("left the cluster; stopping")
	n.left.Store(true)
	go func() {
		time.Sleep(200 * time.Millisecond) // let the answer go out
		stop()
	}()
	return nil
}

// leaveDrainTimeout bounds the drain that dev leave starts with.
const leaveDrainTimeout = time.Minute

// drainSelf drains this node (dev node drain) and waits until the leader
// ends the drain, for leaveDrainTimeout at most; it does nothing when no
// other node could take the pods. Failures are logged: dev leave goes on.
func (n *Node) drainSelf(ctx context.Context, mgr *manager.Manager, st *state.Store) {
	if len(controller.DrainTargets(st.Nodes(), n.cfg.Name)) == 0 {
		return
	}
	if _, err := mgr.Apply(ctx, &state.CordonNode{Name: n.cfg.Name, Cordoned: true, Drain: true}); err != nil {
		n.log.Warn("leave: drain this node", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, leaveDrainTimeout)
	defer cancel()
	for {
		changed := st.Changed()
		if self, ok := st.Node(n.cfg.Name); !ok || !self.Draining {
			return
		}
		select {
		case <-ctx.Done():
			n.log.Warn("leave: pods still moving; the rest is made again elsewhere", "after", leaveDrainTimeout)
			return
		case <-changed:
		}
	}
}

// podMTU is the MTU pods get: the underlay's minus the VXLAN overhead, so
// that their packets fit the overlay; 0 (the engine's default) on loopback.
func podMTU(advertise string) int {
	ip := net.ParseIP(advertise)
	if ip == nil || ip.IsLoopback() {
		return 0
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return 0
	}
	for _, ifc := range ifs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.Equal(ip) {
				return ifc.MTU - overlay.VXLANOverhead
			}
		}
	}
	return 0
}
