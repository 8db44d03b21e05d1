// Package raftstore is the replicated cluster store: hashicorp/raft over a
// bbolt log, with the FSM that applies commands to cluster/state.
package raftstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/devhq/dev/cluster/state"
)

// Config configures the raft node.
type Config struct {
	DataDir string // raft/ below it holds the log and snapshots
	NodeID  string
	// BindAddr is the raft TCP listen address; AdvertiseAddr what peers dial
	// (defaults to BindAddr).
	BindAddr      string
	AdvertiseAddr string
	// Bootstrap makes this node a one-voter cluster when it has no state.
	Bootstrap bool
	// Listener and ClientTLS, when set, carry raft over mutual TLS: raft
	// accepts from Listener, whose connections must have completed their
	// TLS handshake already (pki.HandshakeListener: hashicorp/raft gives
	// each connection a goroutine and 256 KiB of buffers before reading a
	// byte, so nothing unauthenticated may reach it), and dials with
	// ClientTLS. Without them raft listens on BindAddr in plain TCP (tests).
	Listener  net.Listener
	ClientTLS *tls.Config
	// Fast shortens raft timers for tests.
	Fast bool
	// ObserveApply, when set, is told how long each write Apply made took,
	// from its proposal until the leader applied it to the state (a write
	// raft refused or that timed out is not told).
	ObserveApply func(took time.Duration)
	Log          *slog.Logger
}

// ErrNotLeader is returned by Apply on a follower.
var ErrNotLeader = errors.New("not the raft leader")

// Raft is a running raft node and its state.
type Raft struct {
	raft      *raft.Raft
	state     *state.Store
	bolt      *BoltStore
	transport *raft.NetworkTransport
	observe   func(time.Duration) // Config.ObserveApply; nil: none
	log       *slog.Logger
}

// openStores opens the log store and the snapshot store of the raft dir
// dir: snapshot files private (privateSnapshots), for the agent and for
// dev recover alike.
func openStores(dir string) (*BoltStore, privateSnapshots, error) {
	bolt, err := OpenBoltStore(filepath.Join(dir, "raft.db"))
	if err != nil {
		return nil, privateSnapshots{}, err
	}
	files, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, raftLogger())
	if err != nil {
		bolt.Close()
		return nil, privateSnapshots{}, fmt.Errorf("open snapshot store: %w", err)
	}
	snaps := privateSnapshots{FileSnapshotStore: files, dir: filepath.Join(dir, "snapshots")}
	if err := snaps.restrict(); err != nil {
		bolt.Close()
		return nil, privateSnapshots{}, err
	}
	return bolt, snaps, nil
}

// Open starts raft with its persisted state (raft runs its own goroutines
// from here on; Close stops them).
func Open(cfg Config) (*Raft, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	dir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create raft dir: %w", err)
	}
	bolt, snaps, err := openStores(dir)
	if err != nil {
		return nil, err
	}
	adv := cfg.AdvertiseAddr
	if adv == "" {
		adv = cfg.BindAddr
	}
	advAddr, err := net.ResolveTCPAddr("tcp", adv)
	if err != nil {
		bolt.Close()
		return nil, fmt.Errorf("resolve raft address %s: %w", adv, err)
	}
	var transport *raft.NetworkTransport
	if cfg.Listener != nil {
		layer := newTLSStreamLayer(cfg.Listener, advAddr, cfg.ClientTLS)
		transport = raft.NewNetworkTransportWithLogger(layer, 3, 10*time.Second, raftLogger())
	} else {
		transport, err = raft.NewTCPTransportWithLogger(cfg.BindAddr, advAddr, 3, 10*time.Second, raftLogger())
		if err != nil {
			bolt.Close()
			return nil, fmt.Errorf("listen raft on %s (is another agent running? pick another --raft-addr): %w", cfg.BindAddr, err)
		}
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = raftLogger()
	rc.SnapshotThreshold = 4096
	rc.SnapshotInterval = 60 * time.Second
	if cfg.Fast {
		rc.HeartbeatTimeout = 200 * time.Millisecond
		rc.ElectionTimeout = 200 * time.Millisecond
		rc.LeaderLeaseTimeout = 100 * time.Millisecond
	} else {
		// A LAN cluster: faster than raft's WAN-minded defaults.
		rc.HeartbeatTimeout = 500 * time.Millisecond
		rc.ElectionTimeout = 500 * time.Millisecond
		rc.LeaderLeaseTimeout = 250 * time.Millisecond
	}

	st := state.New()
	r, err := raft.NewRaft(rc, &fsm{state: st}, bolt, bolt, snaps, transport)
	if err != nil {
		transport.Close()
		bolt.Close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	if cfg.Bootstrap {
		has, err := raft.HasExistingState(bolt, bolt, snaps)
		if err != nil {
			r.Shutdown()
			bolt.Close()
			return nil, fmt.Errorf("check raft state: %w", err)
		}
		if !has {
			f := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
				ID: rc.LocalID, Address: transport.LocalAddr(), Suffrage: raft.Voter,
			}}})
			if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
				r.Shutdown()
				bolt.Close()
				return nil, fmt.Errorf("bootstrap raft: %w", err)
			}
		}
	}
	return &Raft{raft: r, state: st, bolt: bolt, transport: transport, observe: cfg.ObserveApply, log: cfg.Log}, nil
}

// State is the local replica of the cluster state.
func (r *Raft) State() *state.Store { return r.state }

// IsLeader reports whether this node leads.
func (r *Raft) IsLeader() bool { return r.raft.State() == raft.Leader }

// LeaderCh signals leadership changes (true: became leader).
func (r *Raft) LeaderCh() <-chan bool { return r.raft.LeaderCh() }

// Leader returns the leader's ID, or "" when there is none.
func (r *Raft) Leader() string {
	_, id := r.raft.LeaderWithID()
	return string(id)
}

// Apply proposes cmd and waits until it is committed and applied locally.
// It returns the index of the entry.
func (r *Raft) Apply(ctx context.Context, cmd state.Command) (uint64, error) {
	if r.raft.State() != raft.Leader {
		return 0, ErrNotLeader
	}
	b, err := state.Encode(cmd)
	if err != nil {
		return 0, err
	}
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	start := time.Now()
	f := r.raft.Apply(b, timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return 0, ErrNotLeader
		}
		return 0, fmt.Errorf("apply command: %w", err)
	}
	// The future is done once the leader's FSM applied the entry (an
	// error the FSM returned included: the entry is in the log).
	if r.observe != nil {
		r.observe(time.Since(start))
	}
	if rerr, ok := f.Response().(error); ok && rerr != nil {
		return f.Index(), rerr
	}
	return f.Index(), nil
}

// WaitReady blocks until this node has a leader and has applied every entry
// that was in its log when it started, so that readers see the persisted
// state (an agent must not garbage-collect containers against an empty
// state after a restart).
func (r *Raft) WaitReady(ctx context.Context) error {
	target := r.raft.LastIndex()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if r.Leader() != "" && r.raft.AppliedIndex() >= target {
			if r.IsLeader() {
				// A barrier makes sure everything committed is applied.
				if err := r.raft.Barrier(5 * time.Second).Error(); err == nil {
					return nil
				}
			} else {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for raft: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// Server is one member of the raft configuration.
type Server struct {
	ID      string
	Address string
	Voter   bool
}

// Servers returns the current raft configuration.
func (r *Raft) Servers() ([]Server, error) {
	f := r.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("read raft configuration: %w", err)
	}
	var out []Server
	for _, s := range f.Configuration().Servers {
		out = append(out, Server{ID: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

// AddServer adds (or re-adds at a new address, or promotes/demotes) a member.
func (r *Raft) AddServer(id, addr string, voter bool) error {
	var f raft.IndexFuture
	if voter {
		f = r.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 10*time.Second)
	} else {
		f = r.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 10*time.Second)
	}
	if err := f.Error(); err != nil {
		return fmt.Errorf("add raft server %s (%s): %w", id, addr, err)
	}
	return nil
}

// DemoteServer makes a voter a non-voter (AddServer with voter false does
// not: raft's AddNonvoter leaves a voter's vote).
func (r *Raft) DemoteServer(id string) error {
	if err := r.raft.DemoteVoter(raft.ServerID(id), 0, 10*time.Second).Error(); err != nil {
		return fmt.Errorf("demote raft server %s: %w", id, err)
	}
	return nil
}

// RemoveServer removes a member.
func (r *Raft) RemoveServer(id string) error {
	if err := r.raft.RemoveServer(raft.ServerID(id), 0, 10*time.Second).Error(); err != nil {
		return fmt.Errorf("remove raft server %s: %w", id, err)
	}
	return nil
}

// LeaderAddr returns the leader's raft address and ID, or empty strings.
func (r *Raft) LeaderAddr() (addr, id string) {
	a, i := r.raft.LeaderWithID()
	return string(a), string(i)
}

// TransferLeadership hands leadership to another voter, if there is one.
func (r *Raft) TransferLeadership() error {
	if err := r.raft.LeadershipTransfer().Error(); err != nil {
		return fmt.Errorf("transfer raft leadership: %w", err)
	}
	return nil
}

// Indexes returns raft's commit index, the index applied to the state,
// and the last index in the log.
func (r *Raft) Indexes() (commit, applied, last uint64) {
	return r.raft.CommitIndex(), r.raft.AppliedIndex(), r.raft.LastIndex()
}

// HasState reports whether this node has raft state (it was bootstrapped or
// has joined before).
func (r *Raft) HasState() bool { return r.raft.LastIndex() > 0 }

// Close shuts raft down and closes its stores.
func (r *Raft) Close() error {
	err := r.raft.Shutdown().Error()
	r.transport.Close()
	if cerr := r.bolt.Close(); err == nil {
		err = cerr
	}
	return err
}

// raftLogger is raft's own logger: warnings and errors only, to stderr.
func raftLogger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: os.Stderr})
}
