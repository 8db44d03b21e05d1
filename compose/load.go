package compose

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/devhq/dev/cluster/api"
)

// ErrNoComposeFile is returned (wrapped) by Load when no -f file was given and
// no compose file with a default name exists in the working directory or its
// parents.
var ErrNoComposeFile = errors.New("no compose file found")

// Options are the project flags of docker compose.
type Options struct {
	// Files are the -f files, merged in order. Empty: compose.yaml,
	// compose.yml, docker-compose.yml or docker-compose.yaml (plus its
	// compose.override.* file) searched in WorkingDir and its parents, or the
	// files listed in COMPOSE_FILE.
	Files []string
	// ProjectName is -p. Empty: COMPOSE_PROJECT_NAME, else `name:` in the
	// files, else the project folder name normalized as compose does
	// ("My App" -> "myapp"). This is compose's order: the environment
	// variable beats `name:`.
	ProjectName string
	// WorkingDir is the project directory (--project-directory). Empty: the
	// folder of the first compose file, as compose does; the default files are
	// searched from the current directory.
	WorkingDir string
	// Profiles are the --profile values; empty: COMPOSE_PROFILES.
	Profiles []string
	// EnvFiles are the --env-file values; empty: .env in the project folder.
	EnvFiles []string
	// Environ is the environment used for interpolation and COMPOSE_*
	// variables, as KEY=VALUE: os.Environ() normally. It is used as given: nil
	// means an empty environment.
	Environ []string
}

// Loaded is a loaded and converted compose project.
type Loaded struct {
	// Model is the compose-go model, normalized as by `docker compose config`.
	Model *types.Project
	// Project is what dev deploys.
	Project *api.Project
	// Warnings lists the compose attributes dev ignores.
	Warnings []Warning
}

// Load reads and merges the compose files selected by opts, interpolates,
// validates and normalizes them with compose-go, resolves env_file into
// environment, and converts the result. Errors in a compose file name the file
// and, when known, the line.
func Load(ctx context.Context, opts Options) (*Loaded, error) {
	po, err := projectOptions(opts, true)
	if err != nil {
		return nil, err
	}
	if len(po.ConfigPaths) == 0 {
		dir, err := po.GetWorkingDir()
		if err != nil {
			return nil, fmt.Errorf("find compose file: %w", err)
		}
		return nil, fmt.Errorf("%w in %s (looked for %s); pass -f FILE",
			ErrNoComposeFile, dir, strings.Join(cli.DefaultFileNames, ", "))
	}
	model, err := po.LoadProject(ctx)
	if err != nil {
		if strings.Contains(err.Error(), "can't set container_name") {
			// compose-go's message for this one names the wrong things; the
			// conversion explains it better.
			if cerr := explainContainerName(ctx, opts); cerr != nil {
				return nil, cerr
			}
		}
		return nil, annotate(err, po.ConfigPaths)
	}
	project, warnings, err := Convert(model)
	if err != nil {
		return nil, err
	}
	normalizeIngress(model, project)
	return &Loaded{Model: model, Project: project, Warnings: warnings}, nil
}

// projectOptions builds compose-go options the way docker compose does
// (cmd/compose/compose.go toProjectOptions), from opts.Environ instead of the
// process environment.
func projectOptions(opts Options, consistency bool) (*cli.ProjectOptions, error) {
	fns := []cli.ProjectOptionsFn{
		cli.WithWorkingDirectory(opts.WorkingDir),
		cli.WithEnv(opts.Environ),
	}
	if !hasVar(opts.Environ, "PWD") {
		if pwd, err := os.Getwd(); err == nil {
			fns = append(fns, cli.WithEnv([]string{"PWD=" + pwd}))
		}
	}
	fns = append(fns,
		// .env of the working directory, unless --env-file
		cli.WithEnvFiles(opts.EnvFiles...),
		cli.WithDotEnv,
		cli.WithConfigFileEnv,
		cli.WithDefaultConfigPath,
		// again: the project directory may be the compose file's folder
		cli.WithEnvFiles(opts.EnvFiles...),
		cli.WithDotEnv,
		cli.WithDefaultProfiles(opts.Profiles...),
		cli.WithName(opts.ProjectName),
		cli.WithResolvedPaths(true),
		cli.WithInterpolation(true),
		cli.WithNormalization(true),
		cli.WithConsistency(consistency),
		cli.WithDiscardEnvFile,
	)
	po, err := cli.NewProjectOptions(opts.Files, fns...)
	if err != nil {
		return nil, fmt.Errorf("load compose project: %w", err)
	}
	return po, nil
}

// explainContainerName reloads without compose-go's consistency check and
// returns the conversion's container_name error, if that is what failed.
func explainContainerName(ctx context.Context, opts Options) error {
	po, err := projectOptions(opts, false)
	if err != nil {
		return nil
	}
	model, err := po.LoadProject(ctx)
	if err != nil {
		return nil
	}
	for _, name := range model.ServiceNames() {
		if err := checkContainerName(name, model.Services[name]); err != nil {
			return err
		}
	}
	return nil
}

func hasVar(environ []string, key string) bool {
	for _, kv := range environ {
		if k, _, _ := strings.Cut(kv, "="); k == key {
			return true
		}
	}
	return false
}

// ConfigYAML renders the normalized model, like `docker compose config`.
func (l *Loaded) ConfigYAML() ([]byte, error) {
	b, err := l.Model.MarshalYAML()
	if err != nil {
		return nil, fmt.Errorf("render compose config: %w", err)
	}
	return b, nil
}
