package cli

import (
	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/api"
)

type execOptions struct {
	project   projectFlags
	session   sessionFlags
	container string
}

// NewExecCommand is `dev exec`.
func NewExecCommand(g *globals) *cobra.Command {
	var o execOptions
	cmd := &cobra.Command{
		Use:   "exec [-i] [-t] SERVICE[.N]|POD COMMAND [ARG...]",
		Short: "Run a command in a running pod, on whichever node it runs",
		Long: "Run a command in a running pod's container, like `docker exec`, on whichever node runs the pod.\n" +
			"SERVICE picks the service's first running pod, SERVICE.N its pod number N; a full pod name works too.\n" +
			"dev exits with the command's exit code (126/127 when it cannot be run, as docker).",
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.session.checkEnv(); err != nil {
				return err
			}
			ctx := cmd.Context()
			project, c, err := o.project.connect(ctx, g, true)
			if err != nil {
				return err
			}
			pod, err := resolvePod(ctx, c, project, args[0])
			if err != nil {
				return err
			}
			lt := localTerm{in: cmd.InOrStdin(), out: cmd.OutOrStdout(), err: cmd.ErrOrStderr()}
			req := api.ExecRequest{
				Cmd: args[1:], Container: o.container, Tty: o.session.tty, Stdin: o.session.stdin,
				Env: o.session.env, User: o.session.user, WorkingDir: o.session.workdir,
			}
			if ts, ok := lt.size(); ok && o.session.tty {
				req.Size = ts
			}
			s, err := c.Exec(ctx, pod.Name, req)
			if err != nil {
				return err
			}
			return attachExit(ctx, s, o.session, lt)
		},
	}
	cmd.Flags().SetInterspersed(false) // flags after SERVICE belong to the command
	o.project.register(cmd)
	o.session.register(cmd.Flags())
	cmd.Flags().StringVarP(&o.container, "container", "c", "", "a sidecar's container of the pod, by its service name (default: the service's own)")
	return cmd
}
