package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
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
}

var _ certmagic.Storage = (*acmeStorage)(nil)

// isPrivateKey reports whether key holds a private key (sealed).
func isPrivateKey(key string) bool { return strings.HasSuffix(key, ".key") }

// IsCertificateKey reports whether key is a certificate's private key,
// which a worker may get opened (an account key it may not).
func isCertificateKey(key string) bool {
	return isPrivateKey(key) && strings.HasPrefix(key, "certificates/")
}

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
	case s.openKey != nil && isCertificateKey(key):
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
// name's certificate and solves its challenges. A lock whose holder went
// away without releasing it expires after lockLease.
func (s *acmeStorage) Lock(ctx context.Context, name string) error {
	for {
		now := time.Now().UTC()
		err := s.apply(ctx, &state.LockACME{Name: name, Owner: s.node, At: now, Until: now.Add(s.lockLease)})
		if err == nil {
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

func (s *acmeStorage) Unlock(ctx context.Context, name string) error {
	return s.apply(ctx, &state.UnlockACME{Name: name, Owner: s.node})
}
