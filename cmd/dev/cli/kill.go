package cli

import (
	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/api"
)

type killOptions struct {
	project projectFlags
	signal  string
}

// NewKillCommand is `dev kill`, as `docker compose kill`.
func NewKillCommand(g *globals) *cobra.Command {
	var o killOptions
	cmd := &cobra.Command{
		Use:   "kill [SERVICE...]",
		Short: "Send a signal (default SIGKILL) to the running pods of services, on whichever node (as docker compose kill)",
		Long: "Send a signal to the running containers of the services' pods (the service's container and\n" +
			"its sidecars'), on whichever node runs them. Pods that are not running are skipped.\n\n" +
			"Restart policy, as the Docker Engine decides it after `docker compose kill`: SIGKILL (the\n" +
			"default), or the service's stop signal (stop_signal, else SIGTERM), stops the pod for good,\n" +
			"whatever its restart policy: it stays exited (code 137 for SIGKILL) until `dev start`,\n" +
			"`dev restart` or `dev up`, as `dev stop` leaves it. Any other signal (HUP to reload,\n" +
			"USR1...) is the process's to handle; should the process exit from it, its restart policy\n" +
			"applies. (The Engine is stricter when neither the service nor its image names a stop\n" +
			"signal: a container that exits after any `docker kill` stays exited. dev applies the\n" +
			"restart policy then, so that a signal meant for a reload never leaves a pod down.)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return runKill(cmd, g, o, args)
		},
	}
	o.project.register(cmd)
	cmd.Flags().StringVarP(&o.signal, "signal", "s", "SIGKILL", "signal to send: a name (SIGKILL, KILL, HUP...) or a number")
	return cmd
}

func runKill(cmd *cobra.Command, g *globals, o killOptions, services []string) error {
	sig, err := api.NormalizeSignal(o.signal)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	project, c, err := o.project.connect(ctx, g, false)
	if err != nil {
		return err
	}
	return podActions(ctx, c, project, services, api.ActionKill, api.PodActionRequest{Signal: sig}, notRunning, cmd.OutOrStdout())
}
