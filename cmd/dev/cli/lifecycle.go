package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/api"
)

type lifecycleOptions struct {
	project projectFlags
	timeout int
}

// NewStopCommand is `dev stop`.
func NewStopCommand(g *globals) *cobra.Command {
	return newLifecycleCommand(g, "stop", "Stop the pods of services without removing them; they stay stopped until `dev start` (or `dev up`)")
}

// NewStartCommand is `dev start`.
func NewStartCommand(g *globals) *cobra.Command {
	return newLifecycleCommand(g, "start", "Start the stopped pods of services")
}

// NewRestartCommand is `dev restart`.
func NewRestartCommand(g *globals) *cobra.Command {
	return newLifecycleCommand(g, "restart", "Restart the pods of services (stopped ones too)")
}

func newLifecycleCommand(g *globals, action, short string) *cobra.Command {
	var o lifecycleOptions
	cmd := &cobra.Command{
		Use:   action + " [SERVICE...]",
		Short: short,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			project, c, err := o.project.connect(ctx, g, false)
			if err != nil {
				return err
			}
			req := api.PodActionRequest{}
			if cmd.Flags().Changed("timeout") {
				if o.timeout < 0 {
					return fmt.Errorf("--timeout %d: want seconds >= 0", o.timeout)
				}
				req.Timeout = &o.timeout
			}
			return podActions(ctx, c, project, args, action, req, nil, cmd.OutOrStdout())
		},
	}
	o.project.register(cmd)
	if action != "start" {
		cmd.Flags().IntVarP(&o.timeout, "timeout", "t", 0, "seconds to wait for a container to stop before killing it (default: the service's stop_grace_period, else 10)")
	}
	return cmd
}

// podActionClient is what the pod actions need of the API.
type podActionClient interface {
	Pods(ctx context.Context, q api.PodQuery) (api.PodList, error)
	PodAction(ctx context.Context, pod, action string, req api.PodActionRequest) (api.PodActionResult, error)
}

var _ podActionClient = (*api.HTTPClient)(nil)

// podActions applies action to the pods of the project's services (all
// without services), in parallel, and prints one line per pod. skip, when
// set, says why a pod is left alone ("" acts on it).
func podActions(ctx context.Context, c podActionClient, project string, services []string, action string, req api.PodActionRequest,
	skip func(api.Pod) string, w io.Writer) error {
	list, err := c.Pods(ctx, api.PodQuery{Project: project})
	if err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	want := map[string]bool{}
	for _, s := range services {
		want[s] = true
	}
	has := map[string]bool{}
	var pods []api.Pod
	for _, p := range list.Pods {
		if p.Deleting || (len(want) > 0 && !want[p.Service]) {
			continue
		}
		has[p.Service] = true
		pods = append(pods, p)
	}
	for _, s := range services {
		if !has[s] {
			return fmt.Errorf("no pods of service %s in project %s; `dev ps -p %s` lists them", s, project, project)
		}
	}
	if len(pods) == 0 {
		return fmt.Errorf("project %s has no pods; deploy it with dev up", project)
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	lines := make([]string, len(pods))
	errs := make([]error, len(pods))
	var wg sync.WaitGroup
	for i, p := range pods {
		if p.Node == "" {
			lines[i] = fmt.Sprintf("skipped %s: not scheduled yet", p.Name)
			continue
		}
		if skip != nil {
			if why := skip(p); why != "" {
				lines[i] = fmt.Sprintf("skipped %s: %s", p.Name, why)
				continue
			}
		}
		wg.Go(func() {
			res, err := c.PodAction(ctx, p.Name, action, req)
			if err != nil {
				errs[i] = fmt.Errorf("%s %s: %w", action, p.Name, err)
				return
			}
			lines[i] = fmt.Sprintf("%s %s (%s)", pastTense(action), p.Name, podPhase(res.Pod))
		})
	}
	wg.Wait()
	for _, l := range lines {
		if l != "" {
			fmt.Fprintln(w, l)
		}
	}
	return errors.Join(errs...)
}

func pastTense(action string) string {
	switch action {
	case api.ActionStop:
		return "stopped"
	case api.ActionStart:
		return "started"
	case api.ActionKill:
		return "killed"
	case api.ActionPause:
		return "paused"
	case api.ActionUnpause:
		return "unpaused"
	}
	return "restarted"
}

// notRunning says why kill, pause and top leave a pod alone: its
// containers are not running (compose acts on running containers only).
func notRunning(p api.Pod) string {
	if p.Status.State != api.PodRunning {
		return "not running (" + podPhase(p) + ")"
	}
	return ""
}
