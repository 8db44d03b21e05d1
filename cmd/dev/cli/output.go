package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/api"
)

// checkOutput validates an -o flag.
func checkOutput(o string) error {
	if o != "table" && o != "json" {
		return fmt.Errorf("-o %q: want table or json", o)
	}
	return nil
}

// printJSON writes v as indented JSON, for -o json.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// registerOutput registers -o (with its help) and --format, docker
// compose's name for it, into output and format.
func registerOutput(cmd *cobra.Command, output, format *string, outputHelp string) {
	cmd.Flags().StringVarP(output, "output", "o", "table", outputHelp)
	cmd.Flags().StringVar(format, "format", "", "the same as -o (docker compose's name): table or json")
}

// connectOutput is the start of a project command with -o (and --format,
// which wins when set; "" when the command has none): it settles and
// checks *output, then connects as connect does (any project allowed).
func (pf *projectFlags) connectOutput(ctx context.Context, g *globals, output *string, format string) (string, *api.HTTPClient, error) {
	if format != "" {
		*output = format
	}
	if err := checkOutput(*output); err != nil {
		return "", nil, err
	}
	return pf.connect(ctx, g, true)
}
