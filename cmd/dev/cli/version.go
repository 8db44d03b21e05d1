package cli

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// Version is dev's version, set at build time (make build: -X with `git
// describe --always --dirty`); else the commit Go recorded in the binary,
// else "dev".
var Version string

func init() {
	if Version == "" {
		Version = buildVersion()
	}
}

func buildVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return "dev"
	}
	return "g" + rev + dirty
}

// NewVersionCommand is `dev version`: the CLI's version and the agent's.
func NewVersionCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this dev binary and of the agent it talks to",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "client: dev %s (%s, %s/%s)\n", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			f, err := g.findAgent(ctx)
			if err != nil {
				fmt.Fprintf(w, "agent:  none answers (%v)\n", err)
				return nil
			}
			fmt.Fprintf(w, "agent:  dev %s (node %s, at %s)\n", f.status.Version, f.status.Node, strings.TrimPrefix(f.at, "unix://"))
			if f.status.Version != Version {
				fmt.Fprintln(w, "the agent runs another version: `dev agent upgrade` replaces an agent's container, keeping its pods running")
			}
			return nil
		},
	}
}
