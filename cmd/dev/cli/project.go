package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/compose"
)

// projectFlags are the compose flags `docker compose` users know.
type projectFlags struct {
	files    []string
	name     string
	profiles []string
	envFiles []string
	workDir  string
}

func (pf *projectFlags) register(cmd *cobra.Command) {
	pf.registerFile(cmd, "f")
}

// registerFile registers the flags with fileShort as the shorthand of
// --file ("" for none: `dev logs -f` means follow, as in compose).
func (pf *projectFlags) registerFile(cmd *cobra.Command, fileShort string) {
	f := cmd.Flags()
	f.StringArrayVarP(&pf.files, "file", fileShort, nil, "compose file (repeatable; default: compose.yaml and friends)")
	f.StringVarP(&pf.name, "project-name", "p", "", "project name (default: name: in the file, else the folder name)")
	f.StringArrayVar(&pf.profiles, "profile", nil, "enable a compose profile (repeatable)")
	f.StringArrayVar(&pf.envFiles, "env-file", nil, "alternate environment file (repeatable)")
	f.StringVar(&pf.workDir, "project-directory", "", "project directory (default: the first compose file's folder)")
}

// load reads the compose project, printing warnings to stderr.
func (pf *projectFlags) load(ctx context.Context, stderr io.Writer) (*compose.Loaded, error) {
	l, err := compose.Load(ctx, compose.Options{
		Files: pf.files, ProjectName: pf.name, WorkingDir: pf.workDir,
		Profiles: pf.profiles, EnvFiles: pf.envFiles, Environ: os.Environ(),
	})
	if err != nil {
		return nil, err
	}
	for _, w := range l.Warnings {
		fmt.Fprintln(stderr, "warning:", w.String())
	}
	return l, nil
}

// projectName is -p when given, else the name of the compose project found
// from the current directory. With allowNone, no compose file means "" (all
// projects) instead of an error.
func (pf *projectFlags) projectName(ctx context.Context, allowNone bool) (string, error) {
	if pf.name != "" {
		return pf.name, nil
	}
	l, err := pf.load(ctx, io.Discard)
	if err != nil {
		if allowNone && len(pf.files) == 0 && isNoComposeFile(err) {
			return "", nil
		}
		return "", err
	}
	return l.Project.Name, nil
}

func isNoComposeFile(err error) bool { return errors.Is(err, compose.ErrNoComposeFile) }

// connect resolves the project name (see projectName) and returns a client
// for the agent: the start of every command that works on a deployed project.
func (pf *projectFlags) connect(ctx context.Context, g *globals, allowNone bool) (string, *api.HTTPClient, error) {
	name, err := pf.projectName(ctx, allowNone)
	if err != nil {
		return "", nil, err
	}
	c, err := g.client(ctx)
	if err != nil {
		return "", nil, err
	}
	return name, c, nil
}
