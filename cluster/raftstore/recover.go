package raftstore

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"

	"github.com/devhq/dev/cluster/state"
)

// offline is a data dir's raft stores, opened while no agent runs (bbolt's
// lock refuses a second opener).
type offline struct {
	bolt  *BoltStore
	snaps raft.SnapshotStore
	conf  *raft.Config
	trans raft.Transport
}

func openOffline(dataDir, nodeID string) (*offline, error) {
	dir := filepath.Join(dataDir, "raft")
	if _, err := os.Stat(filepath.Join(dir, "raft.db")); err != nil {
		return nil, fmt.Errorf("open raft state in %s: %w (is --data-dir the agent's?)", dataDir, err)
	}
	// The agent's stores, snapshot files private: recovering writes one.
	bolt, snaps, err := openStores(dir)
	if err != nil {
		return nil, err
	}
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(nodeID)
	conf.Logger = raftLogger()
	// Only EncodePeer is used: the address as bytes, as the network
	// transport encodes it.
	_, trans := raft.NewInmemTransport("")
	return &offline{bolt: bolt, snaps: snaps, conf: conf, trans: trans}, nil
}

// Members reads the raft configuration last recorded in dataDir's log and
// snapshots. The agent must be stopped.
func Members(dataDir, nodeID string) ([]Server, error) {
	o, err := openOffline(dataDir, nodeID)
	if err != nil {
		return nil, err
	}
	defer o.bolt.Close()
	c, err := raft.GetConfiguration(o.conf, &fsm{state: state.New()}, o.bolt, o.bolt, o.snaps, o.trans)
	if err != nil {
		return nil, fmt.Errorf("read raft configuration: %w", err)
	}
	var out []Server
	for _, s := range c.Servers {
		out = append(out, Server{ID: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

// Recover rewrites dataDir's raft configuration so that nodeID, at
// address, is its only voter and member (hashicorp/raft's RecoverCluster:
// the state this node holds is kept, the log compacted into a snapshot).
// The agent must be stopped; it then starts as a one-voter cluster that
// elects itself. Every other node must join again.
func Recover(dataDir, nodeID, address string) error {
	o, err := openOffline(dataDir, nodeID)
	if err != nil {
		return err
	}
	defer o.bolt.Close()
	conf := raft.Configuration{Servers: []raft.Server{{
		ID: raft.ServerID(nodeID), Address: raft.ServerAddress(address), Suffrage: raft.Voter,
	}}}
	if err := raft.RecoverCluster(o.conf, &fsm{state: state.New()}, o.bolt, o.bolt, o.snaps, o.trans, conf); err != nil {
		return fmt.Errorf("recover raft: %w", err)
	}
	return nil
}
