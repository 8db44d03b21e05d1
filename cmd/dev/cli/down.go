package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/api"
)

type downOptions struct {
	project projectFlags
	volumes bool
	timeout time.Duration
}

// NewDownCommand is `dev down`.
func NewDownCommand(g *globals) *cobra.Command {
	var o downOptions
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Remove a project's pods (and with -v its named volumes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			name, c, err := o.project.connect(ctx, g, false)
			if err != nil {
				return err
			}
			if _, err := c.DeleteProject(ctx, name); err != nil {
				if !api.IsNotFound(err) {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "project %s is not deployed\n", name)
			}
			wctx, cancel := contextWithTimeout(ctx, o.timeout)
			defer cancel()
			prog := newProgress(cmd.OutOrStdout())
			err = waitGone(wctx, c, name, nil, prog)
			prog.Close()
			if err != nil {
				return fmt.Errorf("wait for pods of %s to stop: %w", name, err)
			}
			if o.volumes {
				if err := c.DeleteVolumes(ctx, name); err != nil {
					return fmt.Errorf("remove volumes of %s: %w", name, err)
				}
			}
			return nil
		},
	}
	o.project.register(cmd)
	cmd.Flags().BoolVarP(&o.volumes, "volumes", "v", false, "also remove the project's named volumes")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 2*time.Minute, "how long to wait for the pods to stop")
	return cmd
}
