package cli

import (
	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/api"
)

// `dev pause` and `dev unpause` (pause.go is the infra container's
// process, not a verb).

type pauseOptions struct {
	project projectFlags
}

// NewPauseCommand is `dev pause`, as `docker compose pause`.
func NewPauseCommand(g *globals) *cobra.Command {
	return newPauseCommand(g, api.ActionPause,
		"Pause the running pods of services, on whichever node (as docker compose pause)",
		"Freeze the processes of the running containers of the services' pods (the service's\n"+
			"container and its sidecars'), on whichever node runs them, as `docker pause`. A paused pod\n"+
			"stays running for its service (its address and name stay, connections to it wait, as with a\n"+
			"paused compose container) and `dev ps` shows it paused, until `dev unpause`.")
}

// NewUnpauseCommand is `dev unpause`, as `docker compose unpause`.
func NewUnpauseCommand(g *globals) *cobra.Command {
	return newPauseCommand(g, api.ActionUnpause,
		"Unpause the paused pods of services (as docker compose unpause)",
		"Thaw the processes of the services' paused pods, on whichever node runs them.")
}

func newPauseCommand(g *globals, action, short, long string) *cobra.Command {
	var o pauseOptions
	cmd := &cobra.Command{
		Use:   action + " [SERVICE...]",
		Short: short,
		Long:  long,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			project, c, err := o.project.connect(ctx, g, false)
			if err != nil {
				return err
			}
			return podActions(ctx, c, project, args, action, api.PodActionRequest{}, pauseSkip(action), cmd.OutOrStdout())
		},
	}
	o.project.register(cmd)
	return cmd
}

// pauseSkip says why pause (unpause) leaves a pod alone: not running, or
// paused (not paused) already.
func pauseSkip(action string) func(api.Pod) string {
	return func(p api.Pod) string {
		if why := notRunning(p); why != "" {
			return why
		}
		switch {
		case action == api.ActionPause && p.Status.Paused:
			return "already paused"
		case action == api.ActionUnpause && !p.Status.Paused:
			return "not paused"
		}
		return ""
	}
}
