package cli

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/raftstore"
)

type recoverOptions struct {
	name       string
	apiPort    int
	gossipPort int
	timeout    time.Duration
}

// NewRecoverCommand is `dev recover`.
func NewRecoverCommand(g *globals) *cobra.Command {
	var o recoverOptions
	cmd := &cobra.Command{
		Use:   "recover",
		Short: "Make this node the only raft voter, from its own copy of the state, when the voters are gone for good",
		Long: `Make this node the cluster's only raft voter, from its own copy of the state, when the
voters are gone for good (Swarm's --force-new-cluster). With two nodes only the first votes:
when it dies, the survivor's pods run on, but nothing can be scheduled or changed.

Stop this node's agent first (recover opens its data dir, which a running agent holds), then
run dev recover on it, then start the agent again (dev up, or dev agent as before). recover
refuses while any other voter answers on its raft, API or gossip port: the cluster would be
split in two. The other nodes keep their pods; the old voters' pods are made again on the
nodes left once their grace is over.

A removed voter must not come back with its data: it would lead a cluster of its own. Once
the agent runs, revoke it (dev node rm NAME --force), so that every node refuses it, and
wipe its data dir before it joins again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRecover(cmd, g.dataDir(), o)
		},
	}
	host, _ := os.Hostname()
	f := cmd.Flags()
	f.StringVar(&o.name, "node-name", host, "this node's name, as its agent was started with")
	f.IntVar(&o.apiPort, "api-port", 7948, "the other voters' API port, probed before recovering")
	f.IntVar(&o.gossipPort, "gossip-port", 7946, "the other voters' gossip port, probed before recovering")
	f.DurationVar(&o.timeout, "probe-timeout", 3*time.Second, "how long to wait for each of the other voters' ports")
	return cmd
}

func runRecover(cmd *cobra.Command, dataDir string, o recoverOptions) error {
	out := cmd.OutOrStdout()
	members, err := raftstore.Members(dataDir, o.name)
	if err != nil {
		return fmt.Errorf("read the raft members: %w (stop this node's agent first)", err)
	}
	var self *raftstore.Server
	var others []raftstore.Server
	for i, m := range members {
		if m.ID == o.name {
			self = &members[i]
		} else if m.Voter {
			others = append(others, m)
		}
	}
	if self == nil {
		var names []string
		for _, m := range members {
			names = append(names, m.ID)
		}
		return fmt.Errorf("recover: node %s is not a raft member here (members: %s); pass --node-name as the agent was started with", o.name, strings.Join(names, ", "))
	}
	if self.Voter && len(others) == 0 {
		fmt.Fprintf(out, "node %s is already the only voter: nothing to recover\n", o.name)
		return nil
	}
	for _, m := range others {
		if addr, ok := answers(m.Address, o, self.Address); ok {
			return fmt.Errorf("recover: voter %s answers at %s: it is not gone; fix the network between the nodes instead (recovering now would split the cluster in two)", m.ID, addr)
		}
	}
	if err := raftstore.Recover(dataDir, o.name, self.Address); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	var gone []string
	for _, m := range others {
		gone = append(gone, m.ID)
	}
	fmt.Fprintf(out, "node %s is now the only raft voter (removed: %s).\n", o.name, strings.Join(gone, ", "))
	fmt.Fprintf(out, "Start its agent again (dev up, or dev agent as before), then revoke the removed voters so that no node takes them back: dev node rm %s --force\n", strings.Join(gone, " "))
	return nil
}

// answers reports whether a voter answers on its raft port, or on the API
// or gossip port of its host, and which; selfRaft is this node's own raft
// address (never probed: the agent is stopped, but another could run).
func answers(raftAddr string, o recoverOptions, selfRaft string) (string, bool) {
	host, _, err := net.SplitHostPort(raftAddr)
	if err != nil || raftAddr == selfRaft {
		return "", false
	}
	for _, addr := range []string{
		raftAddr,
		net.JoinHostPort(host, strconv.Itoa(o.apiPort)),
		net.JoinHostPort(host, strconv.Itoa(o.gossipPort)),
	} {
		c, err := net.DialTimeout("tcp", addr, o.timeout)
		if err == nil {
			c.Close()
			return addr, true
		}
	}
	return "", false
}
