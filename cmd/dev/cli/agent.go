package cli

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/node"
)

// NewAgentCommand is `dev agent`: the node agent, in the foreground.
func NewAgentCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent (raft store, API, controllers, kubelet, proxy, DNS) in the foreground",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if g.v.GetBool("debug") {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			cfg, err := g.nodeConfig()
			if err != nil {
				return err
			}
			return node.New(cfg, log).Run(cmd.Context())
		},
	}
	addAgentFlags(cmd)
	cmd.AddCommand(newAgentUpgradeCommand(g), newAgentStopCommand(g), newAgentPipeCommand())
	return cmd
}

// addAgentFlags registers the flags of the agent that `dev agent`, `dev up`
// (which may start one) and `dev join` share.
func addAgentFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.String("node-name", "", "node name (default: the host name)")
	f.String("advertise-addr", "", "IP other nodes reach this one at (default: the address of the default route's interface)")
	f.Int("gossip-port", 7946, "gossip port (tcp+udp)")
	f.Int("raft-port", 7947, "raft port")
	f.Int("api-port", 7948, "HTTPS API port (mutual TLS)")
	f.StringArray("label", nil, "node label KEY=VALUE (repeatable)")
	f.String("cluster-cidr", "10.213.0.0/16", "pod network of the cluster; each node gets a /24")
	f.String("service-cidr", "10.214.0.0/16", "virtual IPs of services")
	f.String("dns-addr", "127.0.0.1:1053", "host-side address of the cluster DNS server (pods use their gateway, port 53)")
	f.String("ingress-addr", ":80", "address of the HTTP ingress router (compose x-ingress routes); empty: none")
	f.String("ingress-tls-addr", ":443", "address of the ingress router's HTTPS (routes with tls: local or auto); empty: none")
	f.String("acme-ca", "", "ACME directory URL that certificates of tls: auto routes come from (with --acme-email and no --acme-ca: Let's Encrypt's, "+node.DefaultACMECA+"; neither: no certificates, the routes answer on HTTP)")
	f.String("acme-ca-root", "", "PEM file of the CAs to trust for the ACME directory's own HTTPS (a test CA such as Pebble); default: the system's")
	f.String("acme-email", "", "contact address of the cluster's ACME account (the CA's expiry notices); giving it agrees to the CA's terms")
	f.String("metrics-addr", "", "also serve the Prometheus metrics on this plain address (e.g. 127.0.0.1:9100), for a scraper; they are always on the API at /metrics")
	f.String("dashboard-addr", "127.0.0.1:7949", "address of the web dashboard (\"dev dashboard\" prints its login link); a non-loopback address serves HTTPS; empty: no dashboard")
	f.String("network", "dev", "Docker network name of the node's pod network")
	f.String("bridge", "dev0", "bridge device of the node's pod network")
	f.String("vxlan-device", "devvx0", "VXLAN device of the overlay")
	f.Duration("node-grace", 0, "how long a node may be down before its pods are recreated elsewhere (default 10s)")
	f.Duration("cert-lifetime", 0, "how long the node certificates this node signs last (default 90 days); nodes renew theirs at 2/3 of it")
	f.Bool("fast", false, "short timers, for tests")
	f.Bool("debug", false, "debug logging")
	f.String("join", "", "")
	f.String("token", "", "")
	_ = f.MarkHidden("join") // set by `dev join`
	_ = f.MarkHidden("token")
	// Set by the CLI for an agent in a container (agentcontainer.go).
	f.String("socket", "", "the API's unix socket (default: dev.sock in --data-dir)")
	f.Bool("socket-docker-group", false, "give the socket the group of the Docker Engine's socket (mode 0660)")
	f.String("secrets-dir", "", "host folder of the pods' secret files (default: secrets in --data-dir)")
	f.String("host-root", "", "the host's root file system as the agent sees it (in a container: /host)")
	f.Bool("secrets-tmpfs", true, "keep the pods' secret and config files on a tmpfs mounted at the secrets dir")
	for _, name := range []string{"socket-docker-group", "secrets-dir", "host-root"} {
		_ = f.MarkHidden(name)
	}
}

// agentFlagNames are forwarded to an agent started in the background.
var agentFlagNames = []string{"node-name", "advertise-addr", "gossip-port", "raft-port", "api-port",
	"cluster-cidr", "service-cidr", "dns-addr", "ingress-addr", "ingress-tls-addr", "acme-ca", "acme-ca-root", "acme-email", "metrics-addr", "dashboard-addr", "network", "bridge", "vxlan-device", "node-grace", "cert-lifetime", "fast", "debug"}

func (g *globals) nodeConfig() (node.Config, error) {
	v := g.v
	labels := map[string]string{}
	for _, l := range v.GetStringSlice("label") {
		k, val, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return node.Config{}, fmt.Errorf("--label %q: want KEY=VALUE", l)
		}
		labels[k] = val
	}
	return node.Config{
		DataDir:           g.dataDir(),
		Name:              v.GetString("node-name"),
		AdvertiseAddr:     v.GetString("advertise-addr"),
		GossipPort:        v.GetInt("gossip-port"),
		RaftPort:          v.GetInt("raft-port"),
		APIPort:           v.GetInt("api-port"),
		Join:              v.GetString("join"),
		Token:             v.GetString("token"),
		ClusterCIDR:       v.GetString("cluster-cidr"),
		ServiceCIDR:       v.GetString("service-cidr"),
		DNSAddr:           v.GetString("dns-addr"),
		IngressAddr:       v.GetString("ingress-addr"),
		IngressTLSAddr:    v.GetString("ingress-tls-addr"),
		ACMECA:            v.GetString("acme-ca"),
		ACMECARoot:        v.GetString("acme-ca-root"),
		ACMEEmail:         v.GetString("acme-email"),
		MetricsAddr:       v.GetString("metrics-addr"),
		DashboardAddr:     v.GetString("dashboard-addr"),
		Network:           v.GetString("network"),
		Bridge:            v.GetString("bridge"),
		VXLANDevice:       v.GetString("vxlan-device"),
		Labels:            labels,
		Version:           Version,
		Socket:            v.GetString("socket"),
		SocketDockerGroup: v.GetBool("socket-docker-group"),
		SecretsDir:        v.GetString("secrets-dir"),
		SecretsTmpfs:      v.GetBool("secrets-tmpfs"),
		HostRoot:          v.GetString("host-root"),
		NodeGrace:         v.GetDuration("node-grace"),
		CertLifetime:      v.GetDuration("cert-lifetime"),
		Fast:              v.GetBool("fast"),
	}, nil
}
