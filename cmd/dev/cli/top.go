package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/api"
)

// topClient is what `dev top` needs of the API.
type topClient interface {
	podLister
	PodTop(ctx context.Context, pod string) (api.PodTop, error)
}

var _ topClient = (*api.HTTPClient)(nil)

type topOptions struct {
	project projectFlags
}

// NewTopCommand is `dev top`, as `docker compose top`.
func NewTopCommand(g *globals) *cobra.Command {
	var o topOptions
	cmd := &cobra.Command{
		Use:   "top [SERVICE...]",
		Short: "Show the processes of the running pods, on whichever node (as docker compose top)",
		Long: "List the processes of each running pod of the services (all without SERVICE): its\n" +
			"container's, then its sidecars', as the Engine of the node that runs it reports them\n" +
			"(ps's columns, as docker top).",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			project, c, err := o.project.connect(ctx, g, true)
			if err != nil {
				return err
			}
			return runTop(ctx, c, project, args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.project.register(cmd)
	return cmd
}

// runTop prints the processes of the running pods of services (all
// without), pod by pod in name order; a pod whose node cannot answer is an
// error once the others are printed.
func runTop(ctx context.Context, c topClient, project string, services []string, stdout, stderr io.Writer) error {
	pods, err := servicePods(ctx, c, project, services, func(p api.Pod) bool {
		return !p.Deleting && p.Node != "" && p.Status.State == api.PodRunning
	})
	if err != nil {
		return err
	}
	tops, errs := eachPod(pods, "top", func(p api.Pod) (api.PodTop, error) { return c.PodTop(ctx, p.Name) })
	first := true
	for i, t := range tops {
		if errs[i] != nil {
			continue
		}
		for _, ct := range t.Containers {
			if !first {
				fmt.Fprintln(stdout)
			}
			first = false
			printTop(stdout, t, ct)
		}
	}
	if len(pods) == 0 {
		fmt.Fprintln(stderr, "no running pods")
	}
	return errors.Join(errs...)
}

// printTop prints one container's processes under its name: the pod's
// (as compose names a container), with its sidecar's name after it.
func printTop(w io.Writer, t api.PodTop, ct api.ContainerTop) {
	title := t.Pod
	if ct.Container != t.Service {
		title += " (" + ct.Container + ")"
	}
	fmt.Fprintln(w, title)
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, strings.Join(ct.Titles, "\t"))
	for _, row := range ct.Processes {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
}
