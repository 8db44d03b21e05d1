package cli

import (
	"fmt"
	"net"
	"net/netip"
	"os/exec"

	"github.com/spf13/cobra"
)

// NewDashboardCommand is `dev dashboard`: it prints the agent's dashboard
// address and a login link (whoever may use the API may use the dashboard).
func NewDashboardCommand(g *globals) *cobra.Command {
	var (
		urlOnly bool
		open    bool
	)
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Print the link to the agent's live web dashboard (nodes, services, pods, events, logs)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := g.client(ctx)
			if err != nil {
				return err
			}
			info, err := c.Dashboard(ctx)
			if err != nil {
				return fmt.Errorf("dashboard: %w", err)
			}
			out := cmd.OutOrStdout()
			if urlOnly {
				fmt.Fprintln(out, info.URL)
				return nil
			}
			fmt.Fprintf(out, "Dashboard: %s\n", info.URL)
			fmt.Fprintln(out, "The link logs a browser in; keep it to yourself (the agent makes a new one when it restarts).")
			if host, port, err := net.SplitHostPort(info.Addr); err == nil {
				if a, err := netip.ParseAddr(host); err == nil && a.IsLoopback() {
					fmt.Fprintf(out, "It listens on %s only: from another machine, `ssh -L %s:%s NODE` first, or start the agent with --dashboard-addr.\n", info.Addr, port, info.Addr)
				}
			}
			if open {
				if err := exec.Command("xdg-open", info.URL).Start(); err != nil {
					return fmt.Errorf("open a browser (xdg-open): %w; open the link above by hand", err)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&urlOnly, "url", false, "print only the login link")
	cmd.Flags().BoolVar(&open, "open", false, "open the link in a browser (xdg-open)")
	return cmd
}
