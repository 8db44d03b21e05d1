package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/api"
)

// NewServicesCommand is `dev services`.
func NewServicesCommand(g *globals) *cobra.Command {
	var (
		pf     projectFlags
		output string
	)
	cmd := &cobra.Command{
		Use:   "services",
		Short: "List services with their virtual IP (every port forwarded), published ports and ready/desired replicas",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if err := checkOutput(output); err != nil {
				return err
			}
			name, c, err := pf.connect(ctx, g, true)
			if err != nil {
				return err
			}
			svcs, err := c.Services(ctx, name)
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), svcs)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PROJECT\tSERVICE\tVIP\tPORTS\tPUBLISHED\tREADY")
			for _, s := range svcs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d\n", s.Project, s.Name, s.VIP,
					vipPorts(s.Ports), portList(s.Published, true), s.Ready, s.Desired)
			}
			return tw.Flush()
		},
	}
	pf.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

// vipPorts says what the VIP forwards: every TCP and UDP port, as in
// compose; the declared ones are listed for reference (DNS SRV records,
// <SVC>_SERVICE_PORT).
func vipPorts(declared []api.PortSpec) string {
	if len(declared) == 0 {
		return "all"
	}
	return "all (" + portList(declared, false) + ")"
}

func portList(ports []api.PortSpec, published bool) string {
	parts := make([]string, 0, len(ports))
	for _, p := range ports {
		proto := p.Proto()
		if published {
			host := ""
			if p.HostIP != "" {
				host = p.HostIP + ":"
			}
			mode := ""
			if p.Mode == api.PortModeHost {
				mode = " (host)"
			}
			parts = append(parts, fmt.Sprintf("%s%d->%d/%s%s", host, p.Published, p.Target, proto, mode))
		} else {
			parts = append(parts, fmt.Sprintf("%d/%s", p.Target, proto))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ",")
}
