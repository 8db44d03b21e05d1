package cli

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/node"
)

// NewAgentCommand is `dev agent`: the node agent, in the foreground.
func NewAgentCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent (raft store, API, controllers, kubelet) in the foreground",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if g.v.GetBool("debug") {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			n := node.New(node.Config{
				DataDir:     g.dataDir(),
				Name:        g.v.GetString("node-name"),
				RaftAddr:    g.v.GetString("raft-addr"),
				ClusterCIDR: g.v.GetString("cluster-cidr"),
				ServiceCIDR: g.v.GetString("service-cidr"),
				DNSAddr:     g.v.GetString("dns-addr"),
				Network:     g.v.GetString("network"),
				Bridge:      g.v.GetString("bridge"),
				Version:     Version,
				Fast:        g.v.GetBool("fast"),
			}, log)
			return n.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.String("node-name", "", "node name (default: the host name)")
	f.String("raft-addr", "127.0.0.1:7947", "raft listen address")
	f.String("cluster-cidr", "10.213.0.0/16", "pod network of the cluster; each node gets a /24")
	f.String("service-cidr", "10.214.0.0/16", "virtual IPs of services")
	f.String("dns-addr", "127.0.0.1:1053", "host-side address of the cluster DNS server (pods use their gateway, port 53)")
	f.String("network", "dev", "Docker network name of the node's pod network")
	f.String("bridge", "dev0", "bridge device of the node's pod network")
	f.Bool("fast", false, "short timers, for tests")
	f.Bool("debug", false, "debug logging")
	return cmd
}
