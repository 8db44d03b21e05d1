package events

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// DefaultCapacity is how many events a Recorder keeps unless told otherwise.
const DefaultCapacity = 1000

// Option tunes a Recorder.
type Option func(*options)

type options struct {
	capacity int
	lossTTL  time.Duration
}

// WithCapacity sets how many recent events the Recorder keeps (the oldest
// are dropped first); n <= 0 keeps the default.
func WithCapacity(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.capacity = n
		}
	}
}

// WithLossTTL sets how long a pod lost with its node waits for its
// replacement to be reported Rescheduled (see Tracker); d <= 0 keeps the
// default.
func WithLossTTL(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.lossTTL = d
		}
	}
}

// Recorder derives events from every change of a state.Store and keeps the
// recent ones in a ring buffer for List and Wait. Events are not
// replicated: each node records what it sees from the moment Run starts.
type Recorder struct {
	st      *state.Store
	log     *slog.Logger
	tracker *Tracker
	running atomic.Bool

	mu     sync.Mutex
	ring   []api.Event   // circular, len = capacity
	head   int           // position of the oldest event
	n      int           // events held
	index  uint64        // the highest index known: last view's or last event's
	notify chan struct{} // closed and replaced when events are added
	seen   chan struct{} // closed and replaced when index moves
}

// New returns a recorder of st's changes; it starts nothing.
func New(st *state.Store, log *slog.Logger, opts ...Option) *Recorder {
	o := options{capacity: DefaultCapacity, lossTTL: DefaultLossTTL}
	for _, opt := range opts {
		opt(&o)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Recorder{
		st:      st,
		log:     log.With("component", "events"),
		tracker: NewTracker(o.lossTTL),
		ring:    make([]api.Event, o.capacity),
		notify:  make(chan struct{}),
		seen:    make(chan struct{}),
	}
}

// Run records events until ctx ends, then returns nil. What exists when it
// starts is taken as given (no events for it); from then on every change of
// the store is diffed against the view before it. Several store updates
// applied between two looks are diffed as one step. Run may be called once
// at a time.
func (r *Recorder) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("run events recorder: already running")
	}
	defer r.running.Store(false)
	changed := r.st.Changed() // before the view: no update falls between
	prev := r.st.View()
	r.record(prev.Index, nil)
	r.log.Debug("recording events", "index", prev.Index)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
		start := time.Now()
		changed = r.st.Changed()
		cur := r.st.View()
		r.record(cur.Index, r.tracker.Next(prev, cur, start))
		prev = cur
		// A view and a diff cost O(pods) (about 20ms at 10,000 pods,
		// BenchmarkViewAndDiff): rest idleRatio times as long before the next
		// one, so that a burst of changes costs the node at most a fifth of
		// a core; the changes in between are diffed as one step.
		if rest := idleRatio * time.Since(start); rest > time.Millisecond {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(rest):
			}
		}
	}
}

// idleRatio bounds the recorder's CPU time to 1/(1+idleRatio) of a core.
const idleRatio = 4

// record appends the events of the view at index and wakes waiters.
func (r *Recorder) record(index uint64, evs []api.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(evs) == 0 {
		if index > r.index {
			r.index = index
			close(r.seen)
			r.seen = make(chan struct{})
		}
		return
	}
	// Event indexes only grow, so that a client's ?index= never skips
	// events; should the store's index not have moved past what is known
	// (a snapshot restored), the events go just after it.
	stamp := max(index, r.index+1)
	for _, ev := range evs {
		ev.Index = stamp
		r.log.Debug("event", "reason", ev.Reason, "kind", ev.Kind, "name", ev.Name, "message", ev.Message)
		if r.n < len(r.ring) {
			r.ring[(r.head+r.n)%len(r.ring)] = ev
			r.n++
		} else {
			r.ring[r.head] = ev
			r.head = (r.head + 1) % len(r.ring)
		}
	}
	r.index = stamp
	close(r.notify)
	r.notify = make(chan struct{})
	close(r.seen)
	r.seen = make(chan struct{})
}

// List returns the kept events with Index > after, oldest first (none is
// an empty, non-nil slice). EventList.Index is the highest index the
// recorder knows: that of the last view it diffed, or of its last event if
// higher. Every event with a lower or equal index is already kept and every
// later one gets a higher index, so a client that passes it back as
// ?index= gets only new events and misses none (short of more than the
// buffer's capacity arriving in between).
func (r *Recorder) List(after uint64) api.EventList {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.listLocked(after)
}

func (r *Recorder) listLocked(after uint64) api.EventList {
	at := func(i int) api.Event { return r.ring[(r.head+i)%len(r.ring)] }
	i := sort.Search(r.n, func(i int) bool { return at(i).Index > after })
	evs := make([]api.Event, 0, r.n-i)
	for ; i < r.n; i++ {
		evs = append(evs, at(i))
	}
	return api.EventList{Index: r.index, Events: evs}
}

// Wait is List that blocks until there are events after after, or ctx ends
// (then it returns what there is, possibly no events).
func (r *Recorder) Wait(ctx context.Context, after uint64) api.EventList {
	for {
		r.mu.Lock()
		l := r.listLocked(after)
		ch := r.notify
		r.mu.Unlock()
		if len(l.Events) > 0 || ctx.Err() != nil {
			return l
		}
		select {
		case <-ch:
		case <-ctx.Done():
		}
	}
}

// WaitSeen blocks until the recorder has diffed the store up to index (its
// events for that change, if any, are then in List), or ctx ends. It
// returns the highest index the recorder knows.
func (r *Recorder) WaitSeen(ctx context.Context, index uint64) uint64 {
	for {
		r.mu.Lock()
		idx, ch := r.index, r.seen
		r.mu.Unlock()
		if idx >= index || ctx.Err() != nil {
			return idx
		}
		select {
		case <-ch:
		case <-ctx.Done():
		}
	}
}
