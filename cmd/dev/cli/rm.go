package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/api"
)

// rmClient is what `dev rm` needs of the API.
type rmClient interface {
	podActionClient
	Remove(ctx context.Context, project string, req api.RemoveRequest) (api.RemoveResult, error)
}

var _ rmClient = (*api.HTTPClient)(nil)

type rmOptions struct {
	project projectFlags
	force   bool
	stop    bool
	volumes bool
	// wait bounds the wait for the removed pods' containers to go.
	wait time.Duration
}

// NewRmCommand is `dev rm`, as `docker compose rm`.
func NewRmCommand(g *globals) *cobra.Command {
	o := rmOptions{wait: time.Minute}
	cmd := &cobra.Command{
		Use:   "rm [SERVICE...]",
		Short: "Remove the stopped pods of services (as docker compose rm)",
		Long: "Remove the stopped pods of the services (all without SERVICE): those stopped with `dev stop`\n" +
			"or `dev kill`, and those that exited and that their restart policy does not restart (a\n" +
			"finished job), with their containers, on whichever node. Asks first, unless -f.\n\n" +
			"As with compose, the services stay defined: their replica counts are lowered by the pods\n" +
			"removed, so that nothing replaces them, and `dev up` brings them back to the file's count.\n" +
			"Running pods are left alone (-s stops them first). A container's anonymous volumes always\n" +
			"go with it (-v is accepted for compose's sake); named volumes stay (`dev down -v`).\n" +
			"compose's `rm -f` is --force: -f names the compose file, as on every project verb.",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			project, c, err := o.project.connect(ctx, g, false)
			if err != nil {
				return err
			}
			return runRm(ctx, c, project, args, o, cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	o.project.register(cmd)
	// compose's -f: here -f is the compose file, as on every project verb.
	cmd.Flags().BoolVar(&o.force, "force", false, "do not ask before removing (compose's rm -f; -f names the compose file here)")
	cmd.Flags().BoolVarP(&o.stop, "stop", "s", false, "stop the pods first, then remove them")
	cmd.Flags().BoolVarP(&o.volumes, "volumes", "v", false, "remove the containers' anonymous volumes (always done)")
	return cmd
}

func runRm(ctx context.Context, c rmClient, project string, services []string, o rmOptions, stdin io.Reader, stdout io.Writer) error {
	if o.stop {
		if err := podActions(ctx, c, project, services, api.ActionStop, api.PodActionRequest{}, notRunning, io.Discard); err != nil {
			return err
		}
	}
	dry, err := c.Remove(ctx, project, api.RemoveRequest{Services: services, DryRun: true})
	if err != nil {
		return fmt.Errorf("list stopped pods: %w", err)
	}
	if len(dry.Removed) == 0 {
		fmt.Fprintln(stdout, "No stopped pods")
		return nil
	}
	if !o.force {
		fmt.Fprintf(stdout, "Going to remove %s\nAre you sure? [yN] ", strings.Join(dry.Removed, ", "))
		line, _ := bufio.NewReader(stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			return nil
		}
	}
	res, err := c.Remove(ctx, project, api.RemoveRequest{Services: services, Pods: dry.Removed})
	if err != nil {
		return fmt.Errorf("remove stopped pods: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, o.wait)
	defer cancel()
	if err := waitGone(wctx, c, project, res.Removed, discardProgress{}); err != nil {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%w after %s; `dev ps` shows them until their nodes have removed their containers", err, o.wait)
		}
		return err
	}
	for _, name := range res.Removed {
		fmt.Fprintf(stdout, "removed %s\n", name)
	}
	return nil
}
