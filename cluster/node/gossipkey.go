package node

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/pki"
	"github.com/devhq/dev/cluster/state"
	"github.com/devhq/dev/gossip"
)

// gossipKeys keeps this member's gossip key the cluster's. The leader
// rotates the key when a node is removed (state.RotateGossipKey); each
// member sets the key its state holds as its only one, at once, and saves
// it with its generation for its next start.
//
// A member that missed a rotation (down through it and dropped from raft
// meanwhile, or joined with the key it replaced) hears no one and is heard
// by no one, and raft will not bring it the entry: it asks the other nodes'
// APIs for the key over mutual TLS, which a revoked node cannot pass, when
// it starts and whenever gossip shows it alone, and takes the newest
// generation any of them answers. That answer is provisional: a node whose
// state lags may still trust a node revoked since, which could answer
// anything, so once its own state moves on, the state's key wins.
type gossipKeys struct {
	g       *gossip.Gossip
	st      *state.Store
	dir     string // the pki dir: gossip.key and gossip.gen
	log     *slog.Logger
	askPeer func(ctx context.Context) []api.GossipKeyResponse // nil: no peers to ask

	mu       sync.Mutex
	key      []byte
	gen      uint64
	fromPeer bool // key came from a peer's answer, not this node's state
	// stateGen is the generation the state held when last looked at
	// (stateSeen: looked at since the start).
	stateGen  uint64
	stateSeen bool

	rounds atomic.Uint64 // state looks, for tests
}

const gossipGenFile = "gossip.gen"

func newGossipKeys(g *gossip.Gossip, st *state.Store, dataDir string, key []byte, log *slog.Logger, askPeer func(context.Context) []api.GossipKeyResponse) *gossipKeys {
	k := &gossipKeys{g: g, st: st, dir: filepath.Join(dataDir, pkiDir), key: bytes.Clone(key),
		log: log.With("component", "gossip-key"), askPeer: askPeer}
	// "GEN" or "GEN peer"; none: the cluster's first key.
	if b, err := os.ReadFile(filepath.Join(k.dir, gossipGenFile)); err == nil {
		f := strings.Fields(string(b))
		if len(f) > 0 {
			k.gen, _ = strconv.ParseUint(f[0], 10, 64)
			k.fromPeer = len(f) > 1 && f[1] == "peer"
		}
	}
	return k
}

// use makes key of generation gen this member's only key, and saves both.
// It reports whether the key changed. k.mu is held.
func (k *gossipKeys) use(key []byte, gen uint64, fromPeer bool, from string) bool {
	if len(key) != state.GossipKeySize {
		return false
	}
	changed := !bytes.Equal(key, k.key)
	if changed {
		if err := k.g.SetKey(key); err != nil {
			k.log.Warn("set the gossip key", "err", err)
			return false
		}
	}
	if !changed && gen == k.gen && fromPeer == k.fromPeer {
		return false
	}
	k.key, k.gen, k.fromPeer = bytes.Clone(key), gen, fromPeer
	// Saved after it is in use: a crash in between starts with the older
	// key and asks the peers (Run).
	if changed {
		if err := pki.WriteSecretFile(filepath.Join(k.dir, gossipKeyFile), key); err != nil {
			k.log.Warn("save the gossip key", "err", err)
		}
	}
	genLine := strconv.FormatUint(gen, 10)
	if fromPeer {
		genLine += " peer"
	}
	if err := pki.WriteSecretFile(filepath.Join(k.dir, gossipGenFile), []byte(genLine+"\n")); err != nil {
		k.log.Warn("save the gossip key's generation", "err", err)
	}
	if changed {
		k.log.Info("gossip key replaced", "from", from, "generation", gen)
	}
	return changed
}

// fromState takes the key of the state's cluster record when it is as new
// as the one in use, or when the state moved on since a peer's key was
// taken (the state is the authority; a peer's answer only bridges a gap).
func (k *gossipKeys) fromState(ci state.ClusterInfo) {
	k.mu.Lock()
	defer k.mu.Unlock()
	moved := k.stateSeen && ci.GossipKeyGen != k.stateGen
	k.stateSeen, k.stateGen = true, ci.GossipKeyGen
	if ci.GossipKeyGen >= k.gen || (k.fromPeer && moved) {
		k.use(ci.GossipKey, ci.GossipKeyGen, false, "the state")
	}
}

// refresh asks the peers for the cluster's key and takes the newest
// generation answered when it is newer than the one in use. It reports
// whether the key changed.
func (k *gossipKeys) refresh(ctx context.Context) bool {
	if k.askPeer == nil {
		return false
	}
	answers := k.askPeer(ctx)
	if len(answers) == 0 {
		return false
	}
	best := slices.MaxFunc(answers, func(a, b api.GossipKeyResponse) int {
		switch {
		case a.Gen < b.Gen:
			return -1
		case a.Gen > b.Gen:
			return 1
		}
		return 0
	})
	k.mu.Lock()
	defer k.mu.Unlock()
	return best.Gen > k.gen && k.use(best.Key, best.Gen, true, "a peer")
}

// Run follows the state's key until ctx ends. It asks the peers first,
// before raft is ready (a node dropped from raft while down never gets
// ready with the old key), then every gossipKeyResync while gossip shows no
// other live member. At each resync it also drops keys that serf's key
// queries installed: the cluster's key is the only one.
func (k *gossipKeys) Run(ctx context.Context) error {
	k.refresh(ctx)
	tick := time.NewTicker(gossipKeyResync)
	defer tick.Stop()
	for {
		changed := k.st.Changed()
		if ci, ok := k.st.Cluster(); ok {
			k.fromState(ci)
		}
		k.rounds.Add(1)
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-tick.C:
			k.mu.Lock()
			if keys := k.g.Keys(); len(keys) != 1 || !bytes.Equal(keys[0], k.key) {
				if err := k.g.SetKey(k.key); err != nil {
					k.log.Warn("set the gossip key", "err", err)
				} else {
					k.log.Warn("dropped gossip keys that are not the cluster's (installed by a serf key query)", "keys", len(keys))
				}
			}
			k.mu.Unlock()
			if k.alone() {
				k.refresh(ctx)
			}
		}
	}
}

// alone reports whether gossip shows no live member but this one.
func (k *gossipKeys) alone() bool {
	for _, m := range k.g.Members() {
		if m.Status == gossip.StatusAlive && m.Name != k.g.Local().Name {
			return false
		}
	}
	return true
}

// gossipKeyResync is how often Run checks the keys, and asks the peers
// while alone.
const gossipKeyResync = 10 * time.Second

// peerGossipKeys returns a function that asks the other nodes this node
// knows of for the cluster's gossip key, all at once, each for at most
// 5 s, and returns every answer. They are the API addresses of its state's
// node records, the address it joined through, and the hosts of its raft
// configuration at apiPort (a state restored from an old snapshot, or
// none, may not list the nodes yet); never selfAPI.
func peerGossipKeys(st *state.Store, servers func() []string, self, selfAPI, joinAddr string, apiPort int,
	get func(ctx context.Context, addr string) (api.GossipKeyResponse, error), log *slog.Logger) func(context.Context) []api.GossipKeyResponse {
	return func(ctx context.Context) []api.GossipKeyResponse {
		var addrs []string
		for _, n := range st.Nodes() {
			if n.Name != self && n.APIAddr != "" && n.Status != api.NodeLeft {
				addrs = append(addrs, n.APIAddr)
			}
		}
		if joinAddr != "" {
			addrs = append(addrs, joinAddr)
		}
		for _, a := range servers() {
			if host, _, err := net.SplitHostPort(a); err == nil {
				addrs = append(addrs, net.JoinHostPort(host, strconv.Itoa(apiPort)))
			}
		}
		slices.Sort(addrs)
		addrs = slices.Compact(addrs)
		addrs = slices.DeleteFunc(addrs, func(a string) bool { return a == selfAPI })
		var (
			mu  sync.Mutex
			out []api.GossipKeyResponse
			wg  sync.WaitGroup
		)
		for _, addr := range addrs {
			wg.Go(func() {
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				res, err := get(cctx, addr)
				if err != nil {
					log.Debug("ask a peer for the gossip key", "addr", addr, "err", err)
					return
				}
				mu.Lock()
				out = append(out, res)
				mu.Unlock()
			})
		}
		wg.Wait()
		return out
	}
}
