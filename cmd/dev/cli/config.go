package cli

import (
	"github.com/spf13/cobra"
)

// NewConfigCommand is `dev config`: the normalized model, as `docker compose config`.
func NewConfigCommand(_ *globals) *cobra.Command {
	var pf projectFlags
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Validate the compose file and print its normalized model",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := pf.load(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			b, err := l.ConfigYAML()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	pf.register(cmd)
	return cmd
}
