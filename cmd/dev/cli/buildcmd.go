package cli

import (
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/api"
)

// NewBuildCommand is `dev build`: docker compose build, on the local
// Engine (pods on other nodes get the image from it when placed there).
func NewBuildCommand(g *globals) *cobra.Command {
	var pf projectFlags
	cmd := &cobra.Command{
		Use:   "build [SERVICE...]",
		Short: "Build the images of the services that have a build section (as docker compose build), on this machine's Docker Engine",
		Long: `Build the images of the project's services that have a build section, or of the
SERVICEs named, on this machine's Docker Engine, as docker compose build does.
Nothing is deployed: dev up uses the images (dev up --build builds again). A
service that only names an image is skipped. Other nodes get a built image
from this one when a pod is placed there (no registry is used).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBuild(cmd.Context(), &pf, args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	pf.register(cmd)
	return cmd
}

func runBuild(ctx context.Context, pf *projectFlags, services []string, stdout, stderr io.Writer) error {
	l, err := pf.load(ctx, stderr)
	if err != nil {
		return err
	}
	specs, err := buildable(l.Project, services)
	if err != nil {
		return err
	}
	e, err := dockerEngine(ctx)
	if err != nil {
		return err
	}
	defer e.dc.Close()
	for _, s := range specs {
		if s.Build == nil {
			fmt.Fprintf(stdout, "%s uses an image, skipping\n", s.Name)
			continue
		}
		fmt.Fprintf(stdout, "building %s (%s)\n", s.Name, s.Image)
		if err := buildImage(ctx, e.dc, s); err != nil {
			return fmt.Errorf("build service %s: %w", s.Name, err)
		}
		fmt.Fprintf(stdout, "built %s\n", s.Image)
	}
	return nil
}

// buildable are the project's services (and their sidecars) that names
// ask for, all of them when none; a name that is no service is refused
// before anything is built.
func buildable(p *api.Project, names []string) ([]*api.ServiceSpec, error) {
	var out []*api.ServiceSpec
	var known []string
	for i := range p.Services {
		s := &p.Services[i]
		all := []*api.ServiceSpec{s}
		for j := range s.Sidecars {
			all = append(all, &s.Sidecars[j])
		}
		for _, sp := range all {
			known = append(known, sp.Name)
			if len(names) == 0 || slices.Contains(names, sp.Name) {
				out = append(out, sp)
			}
		}
	}
	for _, n := range names {
		if !slices.Contains(known, n) {
			slices.Sort(known)
			return nil, fmt.Errorf("build: no service %s in project %s (services: %v)", n, p.Name, known)
		}
	}
	return out, nil
}
