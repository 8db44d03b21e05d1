package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

// NewRollbackCommand is `dev rollback SERVICE`.
func NewRollbackCommand(g *globals) *cobra.Command {
	var (
		pf      projectFlags
		detach  bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "rollback SERVICE",
		Short: "Return a service to its previous version (rolling, per deploy.rollback_config)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			name, c, err := pf.connect(ctx, g, false)
			if err != nil {
				return err
			}
			if _, err := c.Rollback(ctx, name, args[0]); err != nil {
				return err
			}
			if detach {
				return nil
			}
			p, hashes, err := storedProject(ctx, c, name, func(svc string) bool { return svc == args[0] })
			if err != nil {
				return err
			}
			wctx, cancel := contextWithTimeout(ctx, timeout)
			defer cancel()
			prog := newProgress(cmd.OutOrStdout())
			defer prog.Close()
			if err := waitProject(wctx, c, p, hashes, prog); err != nil {
				return fmt.Errorf("wait for rollback: %w", err)
			}
			return nil
		},
	}
	pf.register(cmd)
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "do not wait for the pods")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the pods")
	return cmd
}
