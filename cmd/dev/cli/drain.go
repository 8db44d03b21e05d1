package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/api"
)

type drainOptions struct {
	node    string
	timeout time.Duration
	detach  bool
}

// newNodeDrainCommand is `dev node drain NAME`.
func newNodeDrainCommand(g *globals) *cobra.Command {
	var opts drainOptions
	cmd := &cobra.Command{
		Use:   "drain NAME",
		Short: "Move a node's pods to other nodes, as a rolling update would, and leave it cordoned",
		Long: `Move a node's pods to the other nodes, as a rolling update would: one at a time (the
service's update_config parallelism), a replacement started and ready elsewhere before the
pod on the node is stopped (stop-first when the service's update_config asks for it), so
its published ports and its name keep answering. The node is cordoned first and stays so
(dev node uncordon NAME takes pods again, and stops a drain in progress).

Pods that keep data on the node (named volumes, bind mounts) cannot move: they keep
running there, and drain says which they are and exits non-zero. Stop them (dev stop) or
remove their service before taking the node down.

drain waits until the node holds no pod that can move; with --detach it returns at once
and the leader goes on (dev nodes shows the node draining, then cordoned).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.node = args[0]
			ctx := cmd.Context()
			c, err := g.client(ctx)
			if err != nil {
				return err
			}
			return runDrain(ctx, c, opts, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().DurationVar(&opts.timeout, "timeout", 5*time.Minute, "how long to wait for the pods to move (the drain goes on after it)")
	cmd.Flags().BoolVarP(&opts.detach, "detach", "d", false, "start the drain and return without waiting")
	return cmd
}

// drainClient is what dev node drain needs of the API.
type drainClient interface {
	DrainNode(ctx context.Context, name string) (api.WriteResult, error)
	Nodes(ctx context.Context) ([]api.Node, error)
	Pods(ctx context.Context, q api.PodQuery) (api.PodList, error)
}

var _ drainClient = (*api.HTTPClient)(nil)

func runDrain(ctx context.Context, c drainClient, opts drainOptions, out, progress io.Writer) error {
	res, err := c.DrainNode(ctx, opts.node)
	if err != nil {
		return fmt.Errorf("drain node %s: %w", opts.node, err)
	}
	if opts.detach {
		fmt.Fprintf(out, "node %s cordoned; its pods are moving to other nodes (dev nodes shows it draining until they have; dev node uncordon %s stops it)\n", opts.node, opts.node)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, opts.timeout)
	defer cancel()
	idx, last, left := res.Index, "", 0
	for {
		list, err := c.Pods(ctx, api.PodQuery{Index: idx, Wait: 2 * time.Second})
		if err == nil {
			var nodes []api.Node
			nodes, err = c.Nodes(ctx)
			if err == nil {
				var st drainState
				st, err = drainStatus(opts.node, nodes, list.Pods)
				left = st.left
				if st.line != last {
					fmt.Fprintln(progress, st.line)
					last = st.line
				}
				if st.done && err == nil {
					fmt.Fprintf(out, "node %s drained: its pods run on other nodes; it stays cordoned (dev node uncordon %s takes pods again)\n", opts.node, opts.node)
					return nil
				}
				if err != nil {
					return err
				}
			}
			idx = list.Index
		}
		if ctx.Err() != nil {
			return fmt.Errorf("drain node %s: %s still on it after %s; the drain goes on (dev nodes shows it draining until it is done; dev node uncordon %s stops it)",
				opts.node, count(left, "pod"), opts.timeout, opts.node)
		}
		if err != nil {
			return fmt.Errorf("drain node %s: %w", opts.node, err)
		}
	}
}

// drainState is where a drain stands, as dev node drain shows it.
type drainState struct {
	line string // the progress line
	left int    // pods still on the node
	done bool
}

// drainStatus reads the drain of node from the cluster's nodes and pods:
// the pods still on it, and why the replacements of its services wait;
// done once the leader has ended the drain. A drain that ended with pods
// still there (their data is on the node) is an error naming them, as is
// a node uncordoned or gone meanwhile.
func drainStatus(node string, nodes []api.Node, pods []api.Pod) (drainState, error) {
	var n *api.Node
	for i := range nodes {
		if nodes[i].Name == node {
			n = &nodes[i]
		}
	}
	if n == nil {
		return drainState{line: "node " + node + " is gone"}, fmt.Errorf("drain node %s: it left the cluster", node)
	}
	var on []string
	services := map[string]bool{}
	for _, p := range pods {
		if p.Node == node {
			on = append(on, p.ShortName())
			services[api.RCKey(p.Project, p.Service)] = true
		}
	}
	sort.Strings(on)
	var waiting []string
	for _, p := range pods {
		if p.Node == "" && !p.Deleting && p.Status.Message != "" && services[api.RCKey(p.Project, p.Service)] {
			waiting = append(waiting, p.ShortName()+" waits: "+p.Status.Message)
		}
	}
	sort.Strings(waiting)
	st := drainState{left: len(on), done: !n.Draining}
	switch {
	case len(on) == 0:
		st.line = "draining " + node + ": no pod left"
	default:
		st.line = fmt.Sprintf("draining %s: %s left (%s)", node, count(len(on), "pod"), strings.Join(on, ", "))
	}
	if len(waiting) > 0 {
		st.line += "; " + strings.Join(waiting, "; ")
	}
	switch {
	case !n.Cordoned:
		return st, fmt.Errorf("drain node %s: stopped, the node was uncordoned; %s", node, count(len(on), "pod")+" still on it")
	case st.done && len(on) > 0:
		return st, fmt.Errorf("drain node %s: %s keep running there (named volumes or bind mounts pin them to it); stop them with dev stop, or remove their service, before taking %s down",
			node, strings.Join(on, ", "), node)
	}
	return st, nil
}

// count renders "1 pod", "2 pods".
func count(n int, word string) string {
	return fmt.Sprintf("%d %s", n, plural(n, word, word+"s"))
}
