package events

import (
	"fmt"
	"slices"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// DefaultLossTTL is how long a Tracker remembers a pod lost with its node,
// waiting for its replacement's placement.
const DefaultLossTTL = 5 * time.Minute

// maxLosses bounds what a Tracker remembers (a whole node's pods fit).
const maxLosses = 1000

// Tracker is Diff with a memory: it remembers the pods lost with their node
// (down past its grace period, or gone) per service, so that when the
// replication controller's replacement is placed on another node, in the
// same view or a later one, that placement is reported as Rescheduled
// ("web-2 lost with node h3 (down), placed on h1") instead of Scheduled:
// one event per placement, never both. A replacement placed on the lost
// pod's own node (it came back) stays Scheduled. Losses are forgotten after
// the TTL. A Tracker is not safe for concurrent use.
type Tracker struct {
	ttl  time.Duration
	lost []loss // oldest first
}

// NewTracker returns a tracker that remembers losses for ttl
// (DefaultLossTTL if ttl <= 0).
func NewTracker(ttl time.Duration) *Tracker {
	if ttl <= 0 {
		ttl = DefaultLossTTL
	}
	return &Tracker{ttl: ttl}
}

// Next returns the events from prev to cur, as Diff does, with the
// placements of replacements for lost pods turned into Rescheduled.
func (t *Tracker) Next(prev, cur state.View, now time.Time) []api.Event {
	evs := Diff(prev, cur, now)
	t.lost = append(t.lost, losses(prev, cur, now)...)
	evs, t.lost = pair(evs, cur, t.lost, now, t.ttl)
	return evs
}

// pair turns each Scheduled event of a pod whose service lost a pod with
// its node into Rescheduled, when the new node is another one, and returns
// the losses still waiting: each placement uses up one loss of its service
// (the one of the same pod name, else the oldest); losses older than ttl
// are dropped. It is pure: evs and lost are not modified.
func pair(evs []api.Event, cur state.View, lost []loss, now time.Time, ttl time.Duration) ([]api.Event, []loss) {
	var waiting []loss
	for _, l := range lost {
		if now.Sub(l.at) <= ttl {
			waiting = append(waiting, l)
		}
	}
	if len(waiting) > maxLosses {
		waiting = waiting[len(waiting)-maxLosses:]
	}
	out := slices.Clone(evs)
	if len(waiting) == 0 {
		return out, waiting
	}
	pods := podsByName(cur.Pods)
	for i, ev := range out {
		if ev.Kind != kindPod || ev.Reason != api.EventScheduled {
			continue
		}
		p, ok := pods[ev.Name]
		if !ok {
			continue
		}
		key := api.RCKey(p.Project, p.Service)
		j := -1
		for k, l := range waiting {
			if l.service != key {
				continue
			}
			if l.pod == p.Name {
				j = k
				break
			}
			if j < 0 {
				j = k
			}
		}
		if j < 0 {
			continue
		}
		l := waiting[j]
		waiting = slices.Delete(waiting, j, j+1)
		if l.node == ev.Node {
			continue // back on its own node: a plain placement
		}
		out[i].Reason = api.EventRescheduled
		if l.pod == p.Name {
			out[i].Message = fmt.Sprintf("%s lost with node %s (%s), placed on %s", l.short, l.node, l.why, ev.Node)
		} else {
			out[i].Message = fmt.Sprintf("%s lost with node %s (%s), replaced by %s on %s", l.short, l.node, l.why, p.ShortName(), ev.Node)
		}
	}
	return out, waiting
}
