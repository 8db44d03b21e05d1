package cli

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/api"
)

type psOptions struct {
	project projectFlags
	labels  []string
	output  string
}

// psRow is one pod as `dev ps -o json` prints it.
type psRow struct {
	Name        string            `json:"name"`
	Project     string            `json:"project"`
	Service     string            `json:"service"`
	Node        string            `json:"node"`
	State       string            `json:"state"`
	Ready       string            `json:"ready"` // ready containers / all, as kubectl's READY
	Health      string            `json:"health"`
	IP          string            `json:"ip"`
	ContainerID string            `json:"container_id"`
	Restarts    int               `json:"restarts"`
	Message     string            `json:"message,omitempty"`
	Labels      map[string]string `json:"labels"`
	// Sidecars are the states of the pod's sidecar containers.
	Sidecars []api.ContainerStatus `json:"sidecars,omitempty"`
}

// NewPsCommand is `dev ps`.
func NewPsCommand(g *globals) *cobra.Command {
	var o psOptions
	cmd := &cobra.Command{
		Use:   "ps",
		Short: "List pods (of the project in this folder, of -p, or all)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if err := checkOutput(o.output); err != nil {
				return err
			}
			sel := api.Selector{}
			for _, l := range o.labels {
				s, err := api.ParseSelector(l)
				if err != nil {
					return err
				}
				for k, v := range s {
					sel[k] = v
				}
			}
			name, c, err := o.project.connect(ctx, g, true)
			if err != nil {
				return err
			}
			list, err := c.Pods(ctx, api.PodQuery{Project: name, Selector: sel})
			if err != nil {
				return err
			}
			rows := make([]psRow, 0, len(list.Pods))
			for _, p := range list.Pods {
				rows = append(rows, toRow(p))
			}
			if o.output == "json" {
				return printJSON(cmd.OutOrStdout(), rows)
			}
			printPods(cmd.OutOrStdout(), rows)
			return nil
		},
	}
	o.project.register(cmd)
	cmd.Flags().StringArrayVarP(&o.labels, "selector", "l", nil, "label selector KEY=VALUE (repeatable)")
	cmd.Flags().StringVarP(&o.output, "output", "o", "table", "output format: table or json")
	return cmd
}

func toRow(p api.Pod) psRow {
	state := podState(p)
	cid := p.Status.ContainerID
	if len(cid) > 12 {
		cid = cid[:12]
	}
	return psRow{
		Name: p.Name, Project: p.Project, Service: p.Service, Node: p.Node,
		State: state, Ready: p.ReadyColumn(), Health: p.Status.Health, IP: p.Status.IP, ContainerID: cid,
		Restarts: p.Status.Restarts, Message: p.Status.Message, Labels: p.Labels, Sidecars: p.Status.Sidecars,
	}
}

// podState is a pod's STATE as dev ps and dev ls show it: its
// container's, pending before it has one, paused when frozen (as docker
// compose ps and ls say).
func podState(p api.Pod) string {
	switch {
	case p.Status.State == "":
		return api.PodPending
	case p.Status.State == api.PodRunning && p.Status.Paused:
		return statePaused
	}
	return p.Status.State
}

// statePaused is the state dev ps and dev ls show of a paused pod.
const statePaused = "paused"

func printPods(w io.Writer, rows []psRow) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSERVICE\tNODE\tREADY\tSTATE\tHEALTH\tIP\tRESTARTS\tMESSAGE")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", r.Name, r.Service, r.Node, r.Ready, r.State, r.Health, r.IP, r.Restarts, r.Message)
	}
	tw.Flush()
}
