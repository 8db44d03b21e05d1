// Package proxy is the node's service data path (kube-proxy's role): it
// programs the kernel (one nftables table) so that every TCP and UDP port of
// a service's virtual IP, and every published port, reaches a ready endpoint
// by DNAT, balanced per connection. The rules are computed as a plan (pure,
// in plan.go) and applied by a Kernel: nftables over netlink on Linux
// (kernel_linux.go).
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"time"
)

// Service is one service's share of the data path on this node.
type Service struct {
	// Name identifies the service ("project/service"); chain names derive from it.
	Name string
	// VIP is the service's virtual IP: every TCP and UDP port of it reaches an
	// endpoint on the same port. Invalid: the service has none.
	VIP netip.Addr
	// Endpoints are the ready pods, on any node.
	Endpoints []Endpoint
	// Published are the service's published ports (compose `ports:`).
	Published []Published
}

// Endpoint is one ready pod of a service.
type Endpoint struct {
	Addr  netip.Addr
	Local bool // the pod runs on this node
}

// Published is one published port of a service.
type Published struct {
	// HostIP is the address the port is published on; the unspecified
	// address (or invalid) means every local address of the node.
	HostIP   netip.Addr
	Port     uint16 // the host port
	Target   uint16 // the container port
	Protocol string // "tcp" or "udp"
	// HostMode is compose's `mode: host`: the port is published only where the
	// service has local endpoints, goes to those only and keeps the client's
	// address. Otherwise (`mode: ingress`, the routing mesh) every node
	// publishes it and balances over every endpoint, masquerading only
	// traffic sent to another node.
	HostMode bool
}

// Config configures the kernel data path.
type Config struct {
	// Table is the nftables table (family ip) the data path owns; default DefaultTable.
	Table string
	// ClusterCIDR holds every pod address: a pod's traffic to a VIP keeps its
	// source address; anything else's is masqueraded.
	ClusterCIDR netip.Prefix
	// Bridge is the pod bridge: translated traffic leaving through it stays
	// on this node and keeps its client's address.
	Bridge string
	// ServiceCIDR holds the VIPs. It is routed through the bridge, so that
	// the host's own connections to a VIP find a route and leave with the
	// bridge's address as their source (then translated in the output hook).
	ServiceCIDR netip.Prefix
	// LocalnetDevices carry DNATed traffic from 127.0.0.0/8 (curl
	// localhost:PORT) to pods: route_localnet is set on them when they exist
	// (the pod bridge, the VXLAN device). The table drops what arrives from
	// outside for 127.0.0.0/8, as kube-proxy does.
	LocalnetDevices []string
	// Command makes the command that runs a host program (modprobe); nil:
	// exec.CommandContext. An agent in a container runs the host's own.
	Command func(ctx context.Context, name string, args ...string) *exec.Cmd
	Log     *slog.Logger
}

// Source is what Run consumes: the services this node serves, and a signal
// that they changed. Changed is called again after every signal, so both a
// long-lived channel and a close-and-replace broadcast channel work.
type Source interface {
	Services() []Service
	Changed() <-chan struct{}
}

// Kernel programs a data path. Apply makes the kernel serve exactly the
// services given (idempotent; it computes a plan before touching anything);
// Teardown removes everything the Kernel programmed.
type Kernel interface {
	Apply(services []Service) error
	// Rules is how much the kernel holds for the services: set and map
	// elements and generated chains (0 when nothing is programmed).
	Rules() int
	// FlushStale clears what connections to endpoints that left keep in the
	// kernel (UDP conntrack entries); Run calls it after every Apply.
	FlushStale()
	// Check verifies that what was programmed is still in place (another
	// program may have flushed the ruleset); a later Apply repairs it.
	Check() error
	Teardown() error
}

// Sync is one Apply of the services to the kernel, as RunConfig.Observe is
// told of it.
type Sync struct {
	Rules int           // what the kernel holds after it (Kernel.Rules)
	Took  time.Duration // how long Apply took (the conntrack flush after it apart)
	Err   error         // what Apply returned
}

// RunConfig configures Run.
type RunConfig struct {
	// Resync is how often the kernel is checked; default 10 s.
	Resync time.Duration
	// Observe, when set, is told of every Apply Run makes.
	Observe func(Sync)
	Log     *slog.Logger
}

// Run applies src's services now and on every change, and checks the kernel
// every resync interval (repairing what another program removed), until ctx
// ends. The rules stay in place when Run returns: pods go on being served
// and established connections survive an agent restart. Only when nothing is
// served any more are the rules removed, so that a stopped agent without
// projects leaves nothing behind. Apply errors are logged, and retried at the
// next resync.
func Run(ctx context.Context, k Kernel, src Source, cfg RunConfig) error {
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "proxy")
	resync := cfg.Resync
	if resync <= 0 {
		resync = 10 * time.Second
	}
	tick := time.NewTicker(resync)
	defer tick.Stop()

	var (
		lastErr string
		failed  bool
	)
	apply := func() {
		start := time.Now()
		err := k.Apply(src.Services())
		if cfg.Observe != nil {
			cfg.Observe(Sync{Rules: k.Rules(), Took: time.Since(start), Err: err})
		}
		k.FlushStale()
		switch {
		case err == nil && failed:
			log.Info("service rules applied")
		case err != nil && err.Error() != lastErr:
			log.Warn("apply service rules", "err", err)
		}
		failed = err != nil
		lastErr = ""
		if err != nil {
			lastErr = err.Error()
		}
	}
	// Fetch the channel before the services so that no change is missed.
	changed := src.Changed()
	apply()
	for {
		select {
		case <-ctx.Done():
			if len(src.Services()) == 0 {
				if err := k.Teardown(); err != nil {
					log.Warn("remove service rules", "err", err)
				}
			}
			return nil
		case _, ok := <-changed:
			next := src.Changed()
			if !ok && next == changed {
				next = nil // closed for good: rely on the resync
			}
			changed = next
			apply()
		case <-tick.C:
			if err := k.Check(); err != nil || failed {
				if err != nil {
					log.Warn("service rules changed behind our back; reprogramming", "err", err)
				}
				apply()
			}
		}
	}
}

// CheckPort reports whether addr/proto can be published on this host: nil if
// no other program holds it, otherwise an error saying what holds it. The
// data path never binds published ports itself, so a bind that succeeds
// means the port is free.
func CheckPort(addr netip.AddrPort, proto string) error {
	proto = strings.ToLower(proto)
	network := proto + "4"
	if addr.Addr().Is6() && !addr.Addr().Is4In6() {
		network = proto + "6"
	}
	switch proto {
	case "tcp":
		ln, err := net.Listen(network, addr.String())
		if err != nil {
			return fmt.Errorf("check %s/%s: %w", addr, proto, bareNetError(err))
		}
		return ln.Close()
	case "udp":
		c, err := net.ListenPacket(network, addr.String())
		if err != nil {
			return fmt.Errorf("check %s/%s: %w", addr, proto, bareNetError(err))
		}
		return c.Close()
	default:
		return fmt.Errorf("check %s/%s: unsupported protocol (want tcp or udp)", addr, proto)
	}
}

// bareNetError strips net.OpError's "listen tcp4 1.2.3.4:80:" prefix, which
// repeats what our own message already says.
func bareNetError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}
