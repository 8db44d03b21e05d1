package cli

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/api"
)

type runOptions struct {
	project    projectFlags
	session    sessionFlags
	rm         bool
	entrypoint string
}

// NewRunCommand is `dev run`.
func NewRunCommand(g *globals) *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "run [-i] [-t] [--rm=false] SERVICE [COMMAND [ARG...]]",
		Short: "Run a one-off command in a new pod of a service",
		Long: "Run a one-off pod of a service, like `docker compose run`: a container from the service's\n" +
			"template (image, environment, volumes, networks, cluster DNS) with COMMAND instead of the\n" +
			"service's command, attached to this terminal. It runs on the node dev talks to unless the\n" +
			"service's placement or data needs another node. It is not a replica: the service's replication\n" +
			"controller neither counts nor replaces it and `dev ps` does not list it. Its container is\n" +
			"removed when it exits (--rm, the default). dev exits with the command's exit code.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.session.checkEnv(); err != nil {
				return err
			}
			ctx := cmd.Context()
			project, c, err := o.project.connect(ctx, g, false)
			if err != nil {
				return err
			}
			lt := localTerm{in: cmd.InOrStdin(), out: cmd.OutOrStdout(), err: cmd.ErrOrStderr()}
			req := api.RunRequest{
				Tty: o.session.tty, Stdin: o.session.stdin, Rm: o.rm,
				Env: o.session.env, User: o.session.user, WorkingDir: o.session.workdir,
			}
			if len(args) > 1 {
				req.Cmd = args[1:]
			}
			if o.entrypoint != "" {
				req.Entrypoint = strings.Fields(o.entrypoint)
			}
			if ts, ok := lt.size(); ok && o.session.tty {
				req.Size = ts
			}
			s, _, err := c.Run(ctx, project, args[0], req)
			if err != nil {
				return err
			}
			return attachExit(ctx, s, o.session, lt)
		},
	}
	cmd.Flags().SetInterspersed(false)
	o.project.register(cmd)
	o.session.register(cmd.Flags())
	cmd.Flags().BoolVar(&o.rm, "rm", true, "remove the container when it exits")
	cmd.Flags().StringVar(&o.entrypoint, "entrypoint", "", "override the image's entrypoint")
	return cmd
}
