package proxy

import (
	"context"
	"sync"
	"time"

	"github.com/devhq/dev/cluster/api"
)

// AccessLog is a node's ingress access log: the last entries in a ring of
// a fixed size, in memory only. Add never blocks on a reader; Read may
// wait (bounded) for entries after a cursor.
type AccessLog struct {
	mu   sync.Mutex
	ring []api.IngressAccess
	next int    // where the next entry goes
	n    int    // entries held
	last uint64 // Seq of the newest entry (the base before the first)
	// changed is closed at the next Add; nil while nobody waits.
	changed chan struct{}
}

// NewAccessLog returns a log that keeps the last size entries. Its
// sequence numbers start from the time it is made, so that a cursor from
// before a restart of the node is behind every new entry.
func NewAccessLog(size int) *AccessLog {
	return &AccessLog{ring: make([]api.IngressAccess, max(size, 1)), last: uint64(time.Now().UnixNano())}
}

// Add appends e, giving it the next Seq (the oldest entry goes when the
// ring is full).
func (l *AccessLog) Add(e api.IngressAccess) {
	if len(e.Path) > api.MaxAccessPath {
		e.Path = e.Path[:api.MaxAccessPath]
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last++
	e.Seq = l.last
	l.ring[l.next] = e
	l.next = (l.next + 1) % len(l.ring)
	l.n = min(l.n+1, len(l.ring))
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
}

// Read returns the entries after Seq after that match (nil: all), oldest
// first, the last tail of them (tail < 0: all), and the Seq of the newest
// entry held: the cursor to read on from. With wait > 0 and nothing to
// return it waits until an entry comes, wait passes or ctx ends. A cursor
// ahead of the log (from a log of the past, of a longer-running node
// before a clock step back) reads from the start.
func (l *AccessLog) Read(ctx context.Context, after uint64, tail int, wait time.Duration, match func(*api.IngressAccess) bool) ([]api.IngressAccess, uint64) {
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	for {
		out, last, changed := l.read(after, tail, match, wait > 0)
		if len(out) > 0 || wait <= 0 {
			return out, last
		}
		select {
		case <-changed:
		case <-timeout:
			return out, last
		case <-ctx.Done():
			return out, last
		}
	}
}

// read is one pass of Read; with watch, it also returns a channel closed
// at the next Add.
func (l *AccessLog) read(after uint64, tail int, match func(*api.IngressAccess) bool, watch bool) ([]api.IngressAccess, uint64, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if after > l.last {
		after = 0
	}
	var out []api.IngressAccess
	start := (l.next - l.n + len(l.ring)) % len(l.ring)
	for i := range l.n {
		e := &l.ring[(start+i)%len(l.ring)]
		if e.Seq > after && (match == nil || match(e)) {
			out = append(out, *e)
		}
	}
	if tail >= 0 && len(out) > tail {
		out = out[len(out)-tail:]
	}
	var changed chan struct{}
	if watch && len(out) == 0 {
		if l.changed == nil {
			l.changed = make(chan struct{})
		}
		changed = l.changed
	}
	return out, l.last, changed
}
