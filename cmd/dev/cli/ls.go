package cli

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/api"
)

// lsRow is one project as `dev ls -o json` prints it.
type lsRow struct {
	Name     string `json:"name"`
	Status   string `json:"status"` // "running(3), pending(1)", as docker compose ls
	Services int    `json:"services"`
	// Pods counts the project's pods by state: running, paused (dev
	// pause), exited, failed, pending (not started yet), removing.
	Pods map[string]int `json:"pods"`
}

// NewLsCommand is `dev ls`: the deployed projects, as `docker compose ls`.
func NewLsCommand(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the deployed projects and the state of their pods",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := g.client(ctx)
			if err != nil {
				return err
			}
			projects, err := c.Projects(ctx)
			if err != nil {
				return err
			}
			pods, err := c.Pods(ctx, api.PodQuery{})
			if err != nil {
				return err
			}
			rows := lsRows(projects, pods.Pods)
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), rows)
			}
			return printLs(cmd.OutOrStdout(), rows)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

// lsRows counts each project's pods by state, projects by name.
func lsRows(projects []api.ProjectSummary, pods []api.Pod) []lsRow {
	rows := make([]lsRow, 0, len(projects))
	for _, p := range projects {
		row := lsRow{Name: p.Name, Services: len(p.Services), Pods: map[string]int{}}
		for _, pod := range pods {
			if pod.Project == p.Name {
				row.Pods[lsState(pod)]++
			}
		}
		var parts []string
		for _, st := range slices.Sorted(maps.Keys(row.Pods)) {
			parts = append(parts, fmt.Sprintf("%s(%d)", st, row.Pods[st]))
		}
		row.Status = strings.Join(parts, ", ")
		if row.Status == "" {
			row.Status = "no pods"
		}
		rows = append(rows, row)
	}
	slices.SortFunc(rows, func(a, b lsRow) int { return strings.Compare(a.Name, b.Name) })
	return rows
}

func lsState(p api.Pod) string {
	switch {
	case p.Deleting:
		return "removing"
	case p.Node == "":
		return api.PodPending
	}
	return podState(p)
}

func printLs(w io.Writer, rows []lsRow) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tSERVICES")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", r.Name, r.Status, r.Services)
	}
	return tw.Flush()
}
