package cli

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/api"
)

type portOptions struct {
	project  projectFlags
	protocol string
	index    int
}

// NewPortCommand is `dev port SERVICE PRIVATE_PORT`, as `docker compose
// port`: the address a service's port is published on.
func NewPortCommand(g *globals) *cobra.Command {
	var o portOptions
	cmd := &cobra.Command{
		Use:   "port SERVICE PRIVATE_PORT",
		Short: "Print the public address of a service's port (as docker compose port)",
		Long: "Print the address on which a service's container port is published, as `docker compose port`.\n" +
			"A port published through the routing mesh answers on that port of every node, for every replica;\n" +
			"one with mode: host on the nodes that run the service's pods.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			target, err := strconv.ParseUint(args[1], 10, 16)
			if err != nil || target == 0 {
				return fmt.Errorf("port: %q is not a port number (1-65535)", args[1])
			}
			if o.protocol != "tcp" && o.protocol != "udp" {
				return fmt.Errorf("port: --protocol %q: want tcp or udp", o.protocol)
			}
			project, c, err := o.project.connect(ctx, g, false)
			if err != nil {
				return err
			}
			svcs, err := c.Services(ctx, project)
			if err != nil {
				return err
			}
			for _, s := range svcs {
				if s.Name != args[0] {
					continue
				}
				if o.index < 1 || (s.Desired > 0 && o.index > s.Desired) {
					return fmt.Errorf("port: --index %d: service %s has replicas 1 to %d", o.index, s.Name, max(s.Desired, 1))
				}
				addr, err := publishedAddr(s, uint16(target), o.protocol)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), addr)
				return nil
			}
			return fmt.Errorf("port: project %s has no service %s", project, args[0])
		},
	}
	o.project.register(cmd)
	cmd.Flags().StringVar(&o.protocol, "protocol", "tcp", "tcp or udp")
	cmd.Flags().IntVar(&o.index, "index", 1, "the replica, when the service has several (all publish the same port)")
	return cmd
}

// publishedAddr is where s publishes its container port target/proto,
// as compose prints it: HOST_IP:PORT, 0.0.0.0 for every address.
func publishedAddr(s api.ServiceInfo, target uint16, proto string) (string, error) {
	var published []string
	for _, p := range s.Published {
		published = append(published, fmt.Sprintf("%d->%d/%s", p.Published, p.Target, p.Proto()))
		if p.Target == target && p.Proto() == proto && p.Published != 0 {
			host := p.HostIP
			if host == "" {
				host = "0.0.0.0"
			}
			return net.JoinHostPort(host, strconv.Itoa(int(p.Published))), nil
		}
	}
	if len(published) == 0 {
		return "", fmt.Errorf("port: service %s publishes no port (add ports: to it in the compose file)", s.Name)
	}
	return "", fmt.Errorf("port: service %s does not publish %d/%s (it publishes %s)", s.Name, target, proto, strings.Join(published, ", "))
}
