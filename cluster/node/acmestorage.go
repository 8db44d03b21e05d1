package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/devhq/dev/cluster/pki"
	"github.com/devhq/dev/cluster/state"
)

// acmeStorage is certmagic's Storage over the replicated state: reads
// from this node's copy, writes through raft (state.PutACME and the
// rest), private keys sealed with the managers' data key. Every node
// reads the same certificates and challenges: any node serves a tls: auto
// host, and answers the ACME CA's challenge whichever node it reaches.
type acmeStorage struct {
	st    *state.Store
	apply func(ctx context.Context, cmd state.Command) error
	key   *pki.DataKey // nil on a worker
	node  string
	// openKey asks a manager for a certificate's private key, opened: a
	// worker serves the certificates but holds no data key.
	openKey func(ctx context.Context, key string) ([]byte, error)
	// challengeWait is how long a challenge not in this node's state yet
	// is waited for: the leader stores it through raft, and the CA may ask
	// a follower a moment before the entry reaches it.
	challengeWait time.Duration
	lockLease     time.Duration
	// owner holds the locks this storage takes (node: its node's name);
	// each leadership term takes them as an owner of its own (term).
	owner string
	held  *heldLocks
}

// heldLocks are the locks an owner holds, each kept alive (its lease
// extended) until released: certmagic holds one through all the retries
// of an issuance.
type heldLocks struct {
	mu   sync.Mutex
	stop map[string]context.CancelFunc
}

// term is s for one leadership term: the same state, its own lock owner.
func (s *acmeStorage) term() *acmeStorage {
	t := *s
	t.owner = newLockOwner(s.node)
	t.held = &heldLocks{stop: map[string]context.CancelFunc{}}
	return &t
}

func (s *acmeStorage) lockOwner() string {
	if s.owner != "" {
		return s.owner
	}
	return s.node
}

var _ certmagic.Storage = (*acmeStorage)(nil)

// isPrivateKey reports whether key holds a private key (sealed).
func isPrivateKey(key string) bool { return strings.HasSuffix(key, ".key") }

func isChallenge(key string) bool { return strings.Contains(key, "/challenge_tokens/") }

func (s *acmeStorage) Store(ctx context.Context, key string, value []byte) error {
	e := state.ACMEEntry{Value: value, Modified: time.Now().UTC()}
	if isPrivateKey(key) {
		if s.key == nil {
			return fmt.Errorf("store %s: this node is a worker and holds no data key to seal it", key)
		}
		e.Value, e.Sealed = s.key.SealACME(key, value), true
	}
	return s.apply(ctx, &state.PutACME{Key: key, Entry: e})
}

func (s *acmeStorage) Load(ctx context.Context, key string) ([]byte, error) {
	e, ok := s.st.ACME(key)
	if !ok && isChallenge(key) {
		e, ok = s.await(ctx, key)
	}
	switch {
	case !ok:
		return nil, fs.ErrNotExist
	case !e.Sealed:
		return e.Value, nil
	case s.key != nil:
		return s.key.OpenACME(key, e.Value)
	case s.openKey != nil && state.IsACMECertificateKey(key):
		return s.openKey(ctx, key)
	}
	return nil, fmt.Errorf("load %s: sealed, and this node is a worker", key)
}

// await waits up to challengeWait for key to reach this node's state.
func (s *acmeStorage) await(ctx context.Context, key string) (state.ACMEEntry, bool) {
	ctx, cancel := context.WithTimeout(ctx, s.challengeWait)
	defer cancel()
	for {
		changed := s.st.Changed()
		if e, ok := s.st.ACME(key); ok {
			return e, true
		}
		select {
		case <-ctx.Done():
			return state.ACMEEntry{}, false
		case <-changed:
		}
	}
}

func (s *acmeStorage) Delete(ctx context.Context, key string) error {
	return s.apply(ctx, &state.DeleteACME{Key: key})
}

func (s *acmeStorage) Exists(_ context.Context, key string) bool {
	_, err := s.Stat(context.Background(), key)
	return err == nil
}

func (s *acmeStorage) List(_ context.Context, path string, recursive bool) ([]string, error) {
	prefix := strings.TrimSuffix(path, "/") + "/"
	var out []string
	seen := map[string]bool{}
	for _, k := range s.st.ACMEKeys() {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		if !recursive {
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				k = prefix + rest[:i]
			}
		}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return nil, fs.ErrNotExist
	}
	return out, nil
}

func (s *acmeStorage) Stat(_ context.Context, key string) (certmagic.KeyInfo, error) {
	if e, ok := s.st.ACME(key); ok {
		return certmagic.KeyInfo{Key: key, Modified: e.Modified, Size: int64(len(e.Value)), IsTerminal: true}, nil
	}
	prefix := strings.TrimSuffix(key, "/") + "/"
	for _, k := range s.st.ACMEKeys() {
		if strings.HasPrefix(k, prefix) {
			return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
		}
	}
	return certmagic.KeyInfo{}, fs.ErrNotExist
}

// Lock takes name in the state: one node at a time obtains or renews a
// name's certificate and solves its challenges. The lease is extended
// every third of it while held; a lock whose holder went away without
// releasing it expires after lockLease.
func (s *acmeStorage) Lock(ctx context.Context, name string) error {
	owner := s.lockOwner()
	for {
		now := time.Now().UTC()
		err := s.apply(ctx, &state.LockACME{Name: name, Owner: owner, At: now, Until: now.Add(s.lockLease)})
		if err == nil {
			s.keepAlive(name, owner)
			return nil
		}
		if !errors.Is(err, state.ErrACMELocked) {
			return fmt.Errorf("lock %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lock %s: %w", name, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// keepAlive extends the lease of a held lock until it is released.
func (s *acmeStorage) keepAlive(name, owner string) {
	if s.held == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.held.mu.Lock()
	if old := s.held.stop[name]; old != nil {
		old()
	}
	s.held.stop[name] = cancel
	s.held.mu.Unlock()
	go func() {
		tick := time.NewTicker(s.lockLease / 3)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				now := time.Now().UTC()
				actx, acancel := context.WithTimeout(ctx, 10*time.Second)
				_ = s.apply(actx, &state.LockACME{Name: name, Owner: owner, At: now, Until: now.Add(s.lockLease)})
				acancel()
			}
		}
	}()
}

func (s *acmeStorage) Unlock(ctx context.Context, name string) error {
	if s.held != nil {
		s.held.mu.Lock()
		if stop := s.held.stop[name]; stop != nil {
			stop()
			delete(s.held.stop, name)
		}
		s.held.mu.Unlock()
	}
	return s.apply(ctx, &state.UnlockACME{Name: name, Owner: s.lockOwner()})
}
