package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/api"
)

type upOptions struct {
	project projectFlags
	detach  bool
	scale   []string
	build   bool
	timeout time.Duration
	watch   bool
	// waitTimeout is compose's --wait-timeout (seconds); 0: --timeout.
	waitTimeout int
	// forceRecreate replaces every pod of the project, changed or not.
	forceRecreate bool
	// noStart creates the pods without starting them (compose's --no-start).
	noStart bool
}

// NewUpCommand is `dev up`.
func NewUpCommand(g *globals) *cobra.Command {
	var o upOptions
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Deploy a compose project and wait until its pods run",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.noStart && o.watch {
				return fmt.Errorf("up: --no-start and --watch exclude each other: a watch needs running pods")
			}
			if o.waitTimeout < 0 {
				return fmt.Errorf("up: --wait-timeout %d: want a number of seconds", o.waitTimeout)
			}
			if o.waitTimeout > 0 {
				if cmd.Flags().Changed("timeout") {
					return fmt.Errorf("up: --wait-timeout and --timeout say the same thing: give one")
				}
				o.timeout = time.Duration(o.waitTimeout) * time.Second
			}
			return runUp(cmd.Context(), g, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.project.register(cmd)
	f := cmd.Flags()
	f.BoolVarP(&o.detach, "detach", "d", false, "return once the pods run instead of streaming their logs")
	f.StringArrayVar(&o.scale, "scale", nil, "SERVICE=N: replicas of a service, overriding the file (repeatable)")
	f.BoolVar(&o.build, "build", false, "build images before deploying, even when they exist")
	f.DurationVar(&o.timeout, "timeout", 5*time.Minute, "how long to wait for the pods to run")
	f.IntVar(&o.waitTimeout, "wait-timeout", 0, "compose's spelling of --timeout, in seconds")
	// Compose's flags for what dev up always does: accepted, nothing to set.
	f.Bool("wait", false, "wait until the pods run (and are healthy where they have a healthcheck): dev up always does")
	f.Bool("remove-orphans", false, "remove the services no longer in the file: dev up always does")
	f.BoolVar(&o.forceRecreate, "force-recreate", false, "replace every pod, even of services that did not change (rolling, as an update)")
	f.BoolVar(&o.noStart, "no-start", false, "create the pods (and their containers) without starting them, as compose; dev start (or dev up) starts them")
	f.BoolVarP(&o.watch, "watch", "w", false, "then follow the services' develop.watch paths (sync, rebuild) until Ctrl-C; with -d the project keeps running afterwards")
	return cmd
}

func runUp(ctx context.Context, g *globals, o upOptions, stdout, stderr io.Writer) error {
	// Everything that can be wrong with the input is checked before anything
	// is deployed.
	l, err := o.project.load(ctx, stderr)
	if err != nil {
		return err
	}
	p := l.Project
	var rules []watchRule // dev up --watch: watch.go
	var notes []string
	if o.watch {
		if rules, notes, err = watchRules(l, nil); err != nil {
			return err
		}
	}
	if len(o.scale) > 0 {
		want, err := parseScale(o.scale)
		if err != nil {
			return err
		}
		if err := applyScale(p, want); err != nil {
			return err
		}
	}
	if o.forceRecreate {
		token := time.Now().UTC().Format(time.RFC3339Nano)
		for i := range p.Services {
			p.Services[i].Recreate = token
		}
	}
	p.NoStart = o.noStart
	// The API's own check, here before anything is built or sent.
	if err := api.ValidateProject(p); err != nil {
		return err
	}
	e, err := dockerEngine(ctx)
	if err != nil {
		return err
	}
	dc := e.dc
	defer dc.Close()
	prog := newProgress(stdout)
	if err := resolveImages(ctx, dc, p, o.build, prog); err != nil {
		prog.Close()
		return err
	}
	c, err := g.ensureAgent(ctx)
	if err != nil {
		prog.Close()
		return err
	}
	res, err := c.ApplyProject(ctx, p)
	if err != nil {
		prog.Close()
		return fmt.Errorf("deploy project %s: %w", p.Name, err)
	}
	for _, s := range res.Removed {
		prog.Set("service "+s, "removed (no longer in the file)", true)
	}
	wctx, cancel := contextWithTimeout(ctx, o.timeout)
	converged := serviceState
	if o.noStart {
		converged = serviceCreated
	}
	err = waitServices(wctx, c, p, res.Hashes, prog, converged) // the stored templates' hashes (secrets sealed)
	cancel()
	prog.Close()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("project %s did not converge within %s; see `dev ps -p %s` and `dev logs -p %s`", p.Name, o.timeout, p.Name, p.Name)
		}
		if ctx.Err() != nil && !o.detach && !o.noStart {
			return stopProject(g, c, p.Name, stdout)
		}
		return err
	}
	if o.noStart {
		return nil // nothing runs to attach to
	}
	if o.watch {
		return upWatch(ctx, g, c, dc, p, rules, notes, o, stdout, stderr)
	}
	if o.detach {
		return nil
	}
	// Attached: stream logs until Ctrl-C, then stop the project.
	fmt.Fprintf(stderr, "Attaching to %s; press Ctrl-C to stop the project\n", p.Name)
	if err := streamLogs(ctx, c, p.Name, nil, "", true, -1, stdout); err != nil && ctx.Err() == nil {
		return err
	}
	return stopProject(g, c, p.Name, stdout)
}

// stopProject removes the project's pods after an attached `up` was
// interrupted, as compose stops its containers.
func stopProject(_ *globals, c api.Client, name string, w io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fmt.Fprintf(w, "Stopping %s...\n", name)
	if _, err := c.DeleteProject(ctx, name); err != nil && !api.IsNotFound(err) {
		return err
	}
	prog := newProgress(w)
	defer prog.Close()
	return waitGone(ctx, c, name, nil, prog)
}

func contextWithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
