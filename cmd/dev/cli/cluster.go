package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/pki"
)

// NewTokenCommand is `dev token`.
func NewTokenCommand(g *globals) *cobra.Command {
	var client, out, revoke string
	var read, rotate, manager bool
	var validFor time.Duration
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Print a join token of the cluster: a worker's, or with --manager a manager's (or, with --client, write a client certificate bundle)",
		Long: `Print a join token of the cluster.

"dev join ADDR --token T" with the worker token (the default) adds a worker:
it runs pods and keeps a copy of the cluster state, but never holds the CA
key or the join secrets and never votes in raft. With the token --manager
prints, the node is a manager: it may become a raft voter (3 voters from 3
managers, 5 from 7) and receives the data key that opens the cluster's
secrets. Tokens are printed by managers only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := g.client(ctx)
			if err != nil {
				return err
			}
			if rotate {
				if client != "" || read || revoke != "" {
					return fmt.Errorf("token: --rotate takes no other flag but --manager")
				}
				res, err := c.RotateToken(ctx, manager)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), res.Token)
				fmt.Fprintf(cmd.ErrOrStderr(), "the previous %s token no longer admits anyone; joined nodes are not affected\n", tokenKind(manager))
				return nil
			}
			if revoke != "" {
				if client != "" || read || out != "" || manager {
					return fmt.Errorf("token: --revoke takes no other flag")
				}
				if _, err := c.RevokeClient(ctx, revoke); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "revoked every client bundle of %s issued so far: every node refuses them now\n", revoke)
				return nil
			}
			if validFor < 0 {
				return fmt.Errorf("token: --valid-for %s: want a positive duration (e.g. 720h)", validFor)
			}
			if (read || validFor != 0) && client == "" {
				return fmt.Errorf("token: --read and --valid-for make a client bundle: give it a name with --client NAME")
			}
			if manager && client != "" {
				return fmt.Errorf("token: --manager prints the manager join token; it does not go with --client")
			}
			role := pki.RoleAdmin
			if read {
				role = pki.RoleRead
			}
			res, err := c.Token(ctx, api.TokenRequest{Client: client, Role: role, Manager: manager, ValidFor: validFor})
			if err != nil {
				return err
			}
			if client == "" {
				fmt.Fprintln(cmd.OutOrStdout(), res.Token)
				return nil
			}
			if out == "" {
				out = client + ".pem"
			}
			if err := os.WriteFile(out, res.Bundle, 0o600); err != nil {
				return fmt.Errorf("write client bundle: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (role %s); use it with --host tcp://<node>:7948 --tls-bundle %s\n", out, role, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&client, "client", "", "issue a client certificate with this name for a remote CLI (role admin: everything a user can do)")
	cmd.Flags().BoolVar(&read, "read", false, "with --client: role read (ps, logs, nodes, services, events, dashboard; no changes, no exec, no tokens)")
	cmd.Flags().StringVarP(&out, "output", "o", "", "where to write the client bundle (default <name>.pem)")
	cmd.Flags().DurationVar(&validFor, "valid-for", 0, "with --client: how long the bundle lasts (default 8760h, a year); the CLI renews it at 2/3 of its life")
	cmd.Flags().BoolVar(&rotate, "rotate", false, "make a new join secret and print the new token: the old token stops working (with --manager: the manager token)")
	cmd.Flags().BoolVar(&manager, "manager", false, "the manager join token: a node joined with it may become a raft voter and holds the cluster's secrets")
	cmd.Flags().StringVar(&revoke, "revoke", "", "revoke every client bundle issued to this name so far (a new --client bundle of the name works again)")
	return cmd
}

func tokenKind(manager bool) string {
	if manager {
		return "manager"
	}
	return "worker"
}

// NewJoinCommand is `dev join <ip[:port]> --token T`.
func NewJoinCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "join ADDRESS[:PORT] --token TOKEN",
		Short: "Start this host's agent and join the cluster that a node at ADDRESS belongs to",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			token := g.v.GetString("token")
			if token == "" {
				return fmt.Errorf("join: --token is required; print it with `dev token` (a worker) or `dev token --manager` on a manager of the cluster")
			}
			if _, err := pki.ParseToken(token); err != nil {
				return err
			}
			if c, err := g.client(ctx); err == nil {
				st, _ := c.Status(ctx)
				return fmt.Errorf("join: an agent already runs here (node %s); stop it first, or pass another --data-dir", st.Node)
			}
			// The agent's other settings (flags, DEV_* variables) follow
			// this command's (forwardedAgentFlags).
			// The token goes in the environment: a command line is readable
			// by every user of the host.
			c, err := g.startAgent(ctx, nil, []string{"--join", args[0]}, []string{"DEV_TOKEN=" + token})
			if err != nil {
				return err
			}
			st, err := c.Status(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "node %s joined the cluster (leader %s)\n", st.Node, st.Leader)
			return nil
		},
	}
	addAgentFlags(cmd)
	return cmd
}

// NewNodesCommand is `dev nodes`.
func NewNodesCommand(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "List the cluster's nodes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			ctx := cmd.Context()
			c, err := g.client(ctx)
			if err != nil {
				return err
			}
			nodes, err := c.Nodes(ctx)
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), nodes)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tADDRESS\tSTATUS\tROLE\tPODS\tCPU (reserved/allocatable)\tMEMORY (reserved/allocatable)\tSUBNET\tLABELS")
			for _, n := range nodes {
				status := nodeStatus(n)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%.1f/%.1f\t%s/%s\t%s\t%s\n", n.Name, n.Address, status, n.Role, n.Pods,
					float64(n.Reserved.NanoCPUs)/1e9, float64(n.Allocatable.NanoCPUs)/1e9,
					mib(n.Reserved.MemoryBytes), mib(n.Allocatable.MemoryBytes), n.PodSubnet, labelList(n.Labels))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

// NewNodeCommand is `dev node`: verbs on one node.
func NewNodeCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Manage one node of the cluster (cordon, uncordon, drain, label, rm)",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "label NAME KEY=VALUE... | KEY-...",
		Short: "Set (KEY=VALUE) or remove (KEY-) labels of a node, over those it was started with",
		Long: "Set (KEY=VALUE) or remove (KEY-) labels of a node, as kubectl label node does. They override the\n" +
			"node's own --label flags and outlive its restarts; placement constraints (node.labels.KEY) see them\n" +
			"at the next placement: pods already placed stay where they are.",
		Args: cobra.MinimumNArgs(2),
		RunE: onNode(g, func(ctx context.Context, c *api.HTTPClient, args []string) (string, error) {
			labels, err := parseNodeLabels(args[1:])
			if err != nil {
				return "", err
			}
			_, err = c.LabelNode(ctx, args[0], labels)
			return "node " + args[0] + " labelled", err
		}),
	})
	for _, cordon := range []bool{true, false} {
		verb, short, done := "cordon", "Place no new pods on a node; what runs there stays", "cordoned"
		if !cordon {
			verb, short, done = "uncordon", "Place new pods on a cordoned node again", "uncordoned"
		}
		cmd.AddCommand(&cobra.Command{
			Use:   verb + " NAME",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: onNode(g, func(ctx context.Context, c *api.HTTPClient, args []string) (string, error) {
				_, err := c.CordonNode(ctx, args[0], cordon)
				return "node " + args[0] + " " + done, err
			}),
		})
	}
	cmd.AddCommand(newNodeDrainCommand(g))
	var force bool
	rm := &cobra.Command{
		Use:   "rm NAME",
		Short: "Forget a node that is gone for good: its pods run elsewhere, its certificate is revoked",
		Long: "Forget a node that is gone for good: its pods are made again on the other nodes, it leaves raft, and its\n" +
			"certificate is revoked, so that every node refuses it on every port should it come back (it may join again\n" +
			"with a new token). A node that is still ready is refused unless --force: run `dev leave` on it instead.",
		Args: cobra.ExactArgs(1),
		RunE: onNode(g, func(ctx context.Context, c *api.HTTPClient, args []string) (string, error) {
			_, err := c.RemoveNode(ctx, args[0], force)
			return "removed node " + args[0] + "; its certificate is revoked", err
		}),
	}
	rm.Flags().BoolVar(&force, "force", false, "remove the node even though it is ready")
	cmd.AddCommand(rm)
	return cmd
}

// onNode is the RunE of a dev node verb: do, then print what it says.
func onNode(g *globals, do func(ctx context.Context, c *api.HTTPClient, args []string) (string, error)) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		ctx := cmd.Context()
		c, err := g.client(ctx)
		if err != nil {
			return err
		}
		msg, err := do(ctx, c, args)
		if err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), msg)
		return nil
	}
}

// NewLeaveCommand is `dev leave`.
func NewLeaveCommand(g *globals) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "leave",
		Short: "Move this node's pods elsewhere, then leave the cluster and stop the agent",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			f, err := g.findAgent(ctx)
			if err != nil {
				return err
			}
			if f.at == g.processHost() || g.host() != "" {
				if err := f.c.Leave(ctx); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "left the cluster")
				return nil
			}
			return g.leaveFromContainer(ctx, f.c, cmd.OutOrStdout())
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for the pods to move")
	return cmd
}

// nodeStatus is a node's STATUS in dev nodes: ready, engine unreachable
// (ready, but its Docker Engine does not answer), down or left; and
// draining or cordoned.
func nodeStatus(n api.Node) string {
	status := n.Status
	if n.Status == api.NodeReady && n.EngineUnreachable {
		status = "engine unreachable"
	}
	switch {
	case n.Draining:
		status += ",draining"
	case n.Cordoned:
		status += ",cordoned"
	}
	return status
}

func mib(b int64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%dMiB", b>>20)
}

func labelList(l map[string]string) string {
	if len(l) == 0 {
		return "-"
	}
	s := api.Selector(l).String()
	return strings.ReplaceAll(s, ",", ", ")
}

// parseNodeLabels reads dev node label's KEY=VALUE (set) and KEY- (remove)
// arguments into the API's form (a removal is KEY: "").
func parseNodeLabels(args []string) (map[string]string, error) {
	labels := map[string]string{}
	for _, a := range args {
		k, v, set := strings.Cut(a, "=")
		switch {
		case set && v == "":
			return nil, fmt.Errorf("label %q: give a value (KEY=VALUE), or remove the label with %s-", a, k)
		case !set && strings.HasSuffix(a, "-"):
			k = strings.TrimSuffix(a, "-")
		case !set:
			return nil, fmt.Errorf("label %q: want KEY=VALUE to set it or KEY- to remove it", a)
		}
		if err := api.CheckNodeLabel(k, v); err != nil {
			return nil, err
		}
		labels[k] = v
	}
	return labels, nil
}
