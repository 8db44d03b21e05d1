package cli

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/api"
)

type scaleOptions struct {
	project projectFlags
	detach  bool
	timeout time.Duration
}

// NewScaleCommand is `dev scale SVC=N...`.
func NewScaleCommand(g *globals) *cobra.Command {
	var o scaleOptions
	cmd := &cobra.Command{
		Use:   "scale SERVICE=REPLICAS...",
		Short: "Set the number of replicas of services",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			want, err := parseScale(args)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			name, c, err := o.project.connect(ctx, g, false)
			if err != nil {
				return err
			}
			if _, err := c.Scale(ctx, name, want); err != nil {
				return err
			}
			if o.detach {
				return nil
			}
			// Wait on the controllers as they are now stored.
			p, hashes, err := storedProject(ctx, c, name, func(svc string) bool { _, ok := want[svc]; return ok })
			if err != nil {
				return err
			}
			wctx, cancel := contextWithTimeout(ctx, o.timeout)
			defer cancel()
			prog := newProgress(cmd.OutOrStdout())
			defer prog.Close()
			if err := waitProject(wctx, c, p, hashes, prog); err != nil {
				return fmt.Errorf("wait for scale: %w", err)
			}
			return nil
		},
	}
	o.project.register(cmd)
	cmd.Flags().BoolVarP(&o.detach, "detach", "d", false, "do not wait for the pods")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 5*time.Minute, "how long to wait for the pods")
	return cmd
}

// parseScale parses SERVICE=N arguments.
func parseScale(args []string) (map[string]int, error) {
	out := map[string]int{}
	for _, a := range args {
		svc, num, ok := strings.Cut(a, "=")
		if !ok || svc == "" {
			return nil, fmt.Errorf("scale %q: want SERVICE=REPLICAS, e.g. web=3", a)
		}
		n, err := strconv.Atoi(num)
		if err != nil {
			return nil, fmt.Errorf("scale %q: %q is not a number of replicas", a, num)
		}
		if err := api.CheckReplicas(svc, n, ""); err != nil {
			return nil, fmt.Errorf("scale: %w", err)
		}
		out[svc] = n
	}
	return out, nil
}

// applyScale sets replicas on a loaded project, failing on unknown services.
func applyScale(p *api.Project, want map[string]int) error {
	names := make([]string, 0, len(want))
	for s := range want {
		names = append(names, s)
	}
	sort.Strings(names)
	for _, name := range names {
		s := p.Service(name)
		if s == nil {
			return fmt.Errorf("scale: no service %s in project %s", name, p.Name)
		}
		if err := api.CheckReplicas(name, want[name], s.ContainerName); err != nil {
			return fmt.Errorf("scale: %w", err)
		}
		s.Replicas = want[name]
	}
	return nil
}
