package state

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// ACMEEntry is one value of the cluster's ACME storage (certmagic's: the
// ACME account, the certificates of tls: auto routes and their keys, the
// challenges in progress), replicated so that every node serves the same
// certificate and answers any challenge.
type ACMEEntry struct {
	Value []byte `json:"value"`
	// Sealed marks a Value sealed with the managers' data key: private
	// keys. A worker gets a certificate's key opened from a manager.
	Sealed   bool      `json:"sealed,omitempty"`
	Modified time.Time `json:"modified"`
}

// ACMELock is a lock of the ACME storage (certmagic's Locker): one node
// at a time obtains or renews a name's certificate.
type ACMELock struct {
	Owner string    `json:"owner"`
	Until time.Time `json:"until"`
}

// PutACME stores an entry of the ACME storage.
type PutACME struct {
	Key   string    `json:"key"`
	Entry ACMEEntry `json:"entry"`
}

// DeleteACME removes an entry of the ACME storage and every entry under
// it (Key + "/...").
type DeleteACME struct {
	Key string `json:"key"`
}

// LockACME takes lock Name for Owner until Until, if it is free, expired
// at At (the writer's clock, in the entry: applying it reads no clock), or
// Owner's already.
type LockACME struct {
	Name  string    `json:"name"`
	Owner string    `json:"owner"`
	At    time.Time `json:"at"`
	Until time.Time `json:"until"`
}

// UnlockACME releases lock Name if Owner holds it.
type UnlockACME struct {
	Name  string `json:"name"`
	Owner string `json:"owner"`
}

// IsACMECertificateKey reports whether key is the private key of a
// certificate of the ACME storage: what a worker's router may get opened
// from a manager to serve it. An ACME account's key is not.
func IsACMECertificateKey(key string) bool {
	return strings.HasPrefix(key, "certificates/") && strings.HasSuffix(key, ".key") && !strings.Contains(key, "..")
}

// ErrACMELocked refuses a LockACME while another node holds the lock.
var ErrACMELocked = errors.New("the ACME lock is held by another node")

func (tx *Txn) applyACME(cmd Command) error {
	s := tx.s
	switch c := cmd.(type) {
	case *PutACME:
		if c.Key == "" || strings.HasSuffix(c.Key, "/") {
			return fmt.Errorf("store ACME entry %q: not a key", c.Key)
		}
		e := c.Entry
		e.Value = bytes.Clone(e.Value)
		s.acme[c.Key] = e
	case *DeleteACME:
		delete(s.acme, c.Key)
		prefix := strings.TrimSuffix(c.Key, "/") + "/"
		maps.DeleteFunc(s.acme, func(k string, _ ACMEEntry) bool { return strings.HasPrefix(k, prefix) })
	case *LockACME:
		if l, ok := s.acmeLocks[c.Name]; ok && l.Owner != c.Owner && l.Until.After(c.At) {
			return fmt.Errorf("lock %s: %w (%s, until %s)", c.Name, ErrACMELocked, l.Owner, l.Until.UTC().Format(time.RFC3339))
		}
		s.acmeLocks[c.Name] = ACMELock{Owner: c.Owner, Until: c.Until}
	case *UnlockACME:
		if l, ok := s.acmeLocks[c.Name]; ok && l.Owner == c.Owner {
			delete(s.acmeLocks, c.Name)
		}
	}
	return nil
}

// ACME returns the ACME storage's entry at key.
func (s *Store) ACME(key string) (ACMEEntry, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.acme[key]
	return e, ok
}

// ACMEKeys returns the ACME storage's keys, sorted.
func (s *Store) ACMEKeys() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Sorted(maps.Keys(s.acme))
}
