package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/devhq/dev/cluster/api"
)

// statsClient is what `dev stats` needs of the API.
type statsClient interface {
	Stats(ctx context.Context, q api.StatsQuery) (api.StatsList, error)
}

var _ statsClient = (*api.HTTPClient)(nil)

// statsInterval is the least time between two refreshes of `dev stats`
// (each answer already takes the node's one-second CPU sample).
const statsInterval = time.Second

type statsOptions struct {
	project  projectFlags
	noStream bool
	output   string
	format   string
	interval time.Duration // between the starts of two samples
}

// NewStatsCommand is `dev stats`, as `docker compose stats`.
func NewStatsCommand(g *globals) *cobra.Command {
	o := statsOptions{interval: statsInterval}
	cmd := &cobra.Command{
		Use:   "stats [SERVICE...]",
		Short: "Show the live CPU, memory and network use of the pods, on every node (as docker compose stats)",
		Long: "Show what each running pod (of the project in this folder, of -p, or all) uses, on every\n" +
			"node: CPU % (100% is one CPU, sampled over a second, as docker stats), memory (without the\n" +
			"file cache) against its limit, and the bytes its network received and sent. A pod is the sum\n" +
			"of its containers (the service's and its sidecars'). Refreshes until Ctrl-C; --no-stream\n" +
			"prints once.",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			project, c, err := o.project.connectOutput(ctx, g, &o.output, o.format)
			if err != nil {
				return err
			}
			q := api.StatsQuery{Project: project, Services: args}
			return runStats(ctx, c, q, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.project.register(cmd)
	cmd.Flags().BoolVar(&o.noStream, "no-stream", false, "print one sample and exit")
	registerOutput(cmd, &o.output, &o.format, "output format: table or json (with --no-stream an array; else one array per line and sample)")
	return cmd
}

// runStats prints the pods' stats once (noStream) or again after each
// sample until ctx ends. Nodes whose pods are missing are warned about on
// stderr (when streaming, when that changes).
func runStats(ctx context.Context, c statsClient, q api.StatsQuery, o statsOptions, stdout, stderr io.Writer) error {
	redraw := !o.noStream && o.output == "table" && isTerminalWriter(stdout)
	var lastErrors []string
	for first := true; ; first = false {
		start := time.Now()
		list, err := c.Stats(ctx, q)
		if err != nil {
			if ctx.Err() != nil && !first {
				return nil // Ctrl-C
			}
			return err
		}
		if first || !slices.Equal(list.Errors, lastErrors) {
			for _, e := range list.Errors {
				fmt.Fprintf(stderr, "warning: %s: its pods are not shown\n", e)
			}
			lastErrors = list.Errors
		}
		if first && len(list.Pods) == 0 && len(list.Errors) == 0 && len(q.Services) > 0 {
			fmt.Fprintf(stderr, "no running pod of %s\n", strings.Join(q.Services, ", "))
		}
		switch {
		case o.output == "json" && o.noStream:
			if err := printJSON(stdout, list.Pods); err != nil {
				return err
			}
		case o.output == "json":
			if err := json.NewEncoder(stdout).Encode(list.Pods); err != nil {
				return err
			}
		default:
			if redraw {
				fmt.Fprint(stdout, "\033[H\033[2J") // home, clear, as docker stats
			} else if !first {
				fmt.Fprintln(stdout)
			}
			printStats(stdout, list.Pods)
		}
		if o.noStream || ctx.Err() != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Until(start.Add(o.interval))):
		}
	}
}

// isTerminalWriter reports whether w is an interactive terminal.
func isTerminalWriter(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// printStats writes the pods' stats as `docker stats` does: memory in
// binary units, network in decimal ones.
func printStats(w io.Writer, pods []api.PodStats) {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSERVICE\tNODE\tCPU %\tMEM USAGE / LIMIT\tMEM %\tNET I/O")
	for _, p := range pods {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f%%\t%s / %s\t%.2f%%\t%s / %s\n", p.Pod, p.Service, p.Node, p.CPUPercent,
			binarySize(p.MemoryBytes), binarySize(p.MemoryLimitBytes), p.MemoryPercent,
			decimalSize(p.NetRxBytes), decimalSize(p.NetTxBytes))
	}
	tw.Flush()
}

// binarySize writes n bytes as docker's units.BytesSize: "12.5MiB".
func binarySize(n uint64) string {
	return scaledSize(float64(n), 1024, "%.4g%s", []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"})
}

// decimalSize writes n bytes as docker's units.HumanSizeWithPrecision(n,
// 3): "1.23kB".
func decimalSize(n uint64) string {
	return scaledSize(float64(n), 1000, "%.3g%s", []string{"B", "kB", "MB", "GB", "TB", "PB", "EB"})
}

func scaledSize(v, base float64, format string, units []string) string {
	i := 0
	for v >= base && i < len(units)-1 {
		v /= base
		i++
	}
	return fmt.Sprintf(format, v, units[i])
}
