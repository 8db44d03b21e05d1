// Package events derives cluster events (pods placed, started, failed or
// lost with their node, services scaled, nodes down) from successive views
// of the replicated state, and keeps the recent ones for `dev events`.
package events

import (
	"fmt"
	"sort"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// Object kinds of an event.
const (
	kindNode    = "node"
	kindService = "service"
	kindPod     = "pod"
)

// Diff returns the events that lead from prev to cur, stamped with
// cur.Index and now. It is pure. The order is stable: node events, then
// service events, then pod events, each group by object name, and the
// events of one object in the order they happened (a pod replaced under
// the same name is Removed before its successor is Scheduled).
//
// Pods are reported Removed when they are gone from the state (not when
// they are marked deleting), and the status changes of deleting pods are
// not reported. A pod removed together with its node says so ("web-2 lost
// with node h3 (down)"); reporting its replacement as Rescheduled takes the
// memory of a Tracker, as the removal and the new placement usually arrive
// in different views.
func Diff(prev, cur state.View, now time.Time) []api.Event {
	d := &differ{index: cur.Index, now: now}
	d.nodes(prev.Nodes, cur.Nodes)
	d.services(prev.RCs, cur.RCs)
	d.pods(prev, cur)
	sort.SliceStable(d.out, func(i, j int) bool {
		a, b := d.out[i], d.out[j]
		if kindRank(a.Kind) != kindRank(b.Kind) {
			return kindRank(a.Kind) < kindRank(b.Kind)
		}
		return a.Name < b.Name
	})
	return d.out
}

func kindRank(kind string) int {
	switch kind {
	case kindNode:
		return 0
	case kindService:
		return 1
	default:
		return 2
	}
}

type differ struct {
	index uint64
	now   time.Time
	out   []api.Event
}

func (d *differ) add(warning bool, reason, kind, name, node, format string, args ...any) {
	d.out = append(d.out, api.Event{
		Index: d.index, Time: d.now, Reason: reason, Warning: warning,
		Kind: kind, Name: name, Node: node, Message: fmt.Sprintf(format, args...),
	})
}

func (d *differ) nodes(prev, cur []api.Node) {
	before := make(map[string]api.Node, len(prev))
	for _, n := range prev {
		before[n.Name] = n
	}
	for _, c := range cur {
		p, had := before[c.Name]
		delete(before, c.Name)
		switch {
		case !had:
			if c.Address != "" {
				d.add(false, api.EventNodeJoined, kindNode, c.Name, c.Name, "%s joined at %s", c.Name, c.Address)
			} else {
				d.add(false, api.EventNodeJoined, kindNode, c.Name, c.Name, "%s joined", c.Name)
			}
		case c.Status == p.Status:
		case c.Status == api.NodeDown:
			if !c.Heartbeat.IsZero() && d.now.After(c.Heartbeat) {
				d.add(true, api.EventNodeDown, kindNode, c.Name, c.Name, "%s is down (last heartbeat %s ago)",
					c.Name, d.now.Sub(c.Heartbeat).Round(time.Second))
			} else {
				d.add(true, api.EventNodeDown, kindNode, c.Name, c.Name, "%s is down", c.Name)
			}
		case c.Status == api.NodeLeft:
			d.add(false, api.EventNodeLeft, kindNode, c.Name, c.Name, "%s left", c.Name)
		case c.Status == api.NodeReady:
			d.add(false, api.EventNodeReady, kindNode, c.Name, c.Name, "%s is ready", c.Name)
		}
		switch {
		case !had || c.EngineUnreachable == p.EngineUnreachable:
		case c.EngineUnreachable:
			d.add(true, api.EventEngineUnreachable, kindNode, c.Name, c.Name,
				"the Docker Engine of %s does not answer: no new pods go there; its pods stay (their containers may still run)", c.Name)
		default:
			d.add(false, api.EventEngineReachable, kindNode, c.Name, c.Name, "the Docker Engine of %s answers again", c.Name)
		}
		switch {
		case !had || c.Draining == p.Draining:
		case c.Draining:
			d.add(false, api.EventNodeDraining, kindNode, c.Name, c.Name, "draining %s: its pods move to other nodes", c.Name)
		case c.Cordoned:
			d.add(false, api.EventNodeDrained, kindNode, c.Name, c.Name, "%s drained; it stays cordoned", c.Name)
		default:
			d.add(false, api.EventNodeDrained, kindNode, c.Name, c.Name, "drain of %s stopped: uncordoned", c.Name)
		}
	}
	// Nodes forgotten without being seen leaving first.
	for _, p := range prev {
		if _, gone := before[p.Name]; gone && p.Status != api.NodeLeft {
			d.add(false, api.EventNodeLeft, kindNode, p.Name, p.Name, "%s left", p.Name)
		}
	}
}

func (d *differ) services(prev, cur []api.ReplicationController) {
	before := make(map[string]api.ReplicationController, len(prev))
	for _, rc := range prev {
		before[rc.Key()] = rc
	}
	for _, c := range cur {
		p, had := before[c.Key()]
		delete(before, c.Key())
		switch {
		case !had:
			d.add(false, api.EventCreated, kindService, c.Key(), "", "created %s with %s", c.Key(), plural(c.Replicas, "replica"))
		case p.Replicas != c.Replicas:
			d.add(false, api.EventScaled, kindService, c.Key(), "", "scaled %s from %d to %d", c.Key(), p.Replicas, c.Replicas)
		}
	}
	for _, p := range prev {
		if _, gone := before[p.Key()]; gone {
			d.add(false, api.EventDeleted, kindService, p.Key(), "", "removed %s", p.Key())
		}
	}
}

func (d *differ) pods(prev, cur state.View) {
	before := podsByName(prev.Pods)
	after := podsByName(cur.Pods)
	for _, p := range prev.Pods {
		if c, ok := after[p.Name]; ok && samePod(p, c) {
			continue
		}
		if l, lost := lostWith(p, cur); lost {
			d.add(false, api.EventRemoved, kindPod, p.Name, p.Node, "%s lost with node %s (%s)", l.short, l.node, l.why)
		} else {
			d.add(false, api.EventRemoved, kindPod, p.Name, p.Node, "removed %s", p.ShortName())
		}
	}
	for _, c := range cur.Pods {
		p, had := before[c.Name]
		if had && !samePod(p, c) {
			had, p = false, api.Pod{} // a new pod under the name of a removed one
		}
		d.pod(p, had, c)
	}
}

// pod reports what changed of one pod, in lifecycle order.
func (d *differ) pod(p api.Pod, had bool, c api.Pod) {
	short := c.ShortName()
	if c.Node != "" && (!had || p.Node == "") {
		d.add(false, api.EventScheduled, kindPod, c.Name, c.Node, "placed %s on %s", short, c.Node)
	}
	if c.Node == "" && c.Status.Message != "" && (!had || p.Status.Message != c.Status.Message) {
		d.add(true, api.EventPending, kindPod, c.Name, "", "cannot place %s: %s", short, c.Status.Message)
	}
	if c.Deleting || c.Node == "" {
		return // being stopped, or nowhere to run: status changes are not news
	}
	ps, cs := p.Status, c.Status
	restarted := had && cs.Restarts > ps.Restarts
	switch cs.State {
	case api.PodRunning:
		switch {
		case ps.State != api.PodRunning && !restarted:
			d.add(false, api.EventStarted, kindPod, c.Name, c.Node, "started %s", short)
		case restarted || (ps.ContainerID != "" && cs.ContainerID != ps.ContainerID):
			if cs.Restarts > 0 {
				d.add(false, api.EventStarted, kindPod, c.Name, c.Node, "restarted %s (%s)", short, plural(cs.Restarts, "restart"))
			} else {
				d.add(false, api.EventStarted, kindPod, c.Name, c.Node, "restarted %s", short)
			}
		}
		if cs.Health == api.HealthUnhealthy && ps.Health != api.HealthUnhealthy {
			d.add(true, api.EventUnhealthy, kindPod, c.Name, c.Node, "%s is unhealthy%s", short, suffix(cs.Message))
		}
	case api.PodExited, api.PodFailed:
		if had && ps.State == cs.State && ps.ExitCode == cs.ExitCode && ps.ContainerID == cs.ContainerID &&
			ps.Restarts == cs.Restarts {
			return // the same ending, told again
		}
		switch {
		case cs.State == api.PodFailed:
			d.add(true, api.EventFailed, kindPod, c.Name, c.Node, "%s failed%s", short, suffix(cs.Message))
		case c.Stopped:
			d.add(false, api.EventExited, kindPod, c.Name, c.Node, "%s %s", short, cs.Message)
		case cs.ExitCode != 0:
			d.add(true, api.EventFailed, kindPod, c.Name, c.Node, "%s exited with code %d%s", short, cs.ExitCode, suffix(cs.Message))
		default:
			d.add(false, api.EventExited, kindPod, c.Name, c.Node, "%s exited with code 0%s", short, suffix(cs.Message))
		}
	}
}

// samePod reports whether a and b, of the same name, are the same pod (and
// not a replacement created under the name of a removed one).
func samePod(a, b api.Pod) bool { return a.CreateIndex == b.CreateIndex }

// loss is a pod removed from the state together with its node, until a
// replacement is placed (see Tracker).
type loss struct {
	service string // "<project>/<service>"
	pod     string // pod name
	short   string // "<service>-<n>"
	node    string
	why     string // down or left
	at      time.Time
}

// lostWith reports whether p, gone from cur, went with its node: it was
// bound to a node that cur shows down, left or forgets, it was not being
// deleted, and its service still exists (so it will be replaced).
func lostWith(p api.Pod, cur state.View) (loss, bool) {
	if p.Node == "" || p.Deleting {
		return loss{}, false
	}
	key := api.RCKey(p.Project, p.Service)
	hasRC := false
	for _, rc := range cur.RCs {
		if rc.Key() == key {
			hasRC = true
			break
		}
	}
	if !hasRC {
		return loss{}, false
	}
	why := api.NodeLeft // forgotten: DeleteNode follows a node leaving
	for _, n := range cur.Nodes {
		if n.Name == p.Node {
			why = n.Status
			break
		}
	}
	if why != api.NodeDown && why != api.NodeLeft {
		return loss{}, false
	}
	return loss{service: key, pod: p.Name, short: p.ShortName(), node: p.Node, why: why}, true
}

// losses returns the pods of prev that cur lost with their node, at now.
func losses(prev, cur state.View, now time.Time) []loss {
	after := podsByName(cur.Pods)
	var out []loss
	for _, p := range prev.Pods {
		if c, ok := after[p.Name]; ok && samePod(p, c) {
			continue
		}
		if l, lost := lostWith(p, cur); lost {
			l.at = now
			out = append(out, l)
		}
	}
	return out
}

func podsByName(pods []api.Pod) map[string]api.Pod {
	m := make(map[string]api.Pod, len(pods))
	for _, p := range pods {
		m[p.Name] = p
	}
	return m
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// suffix renders an optional detail as ": detail".
func suffix(detail string) string {
	if detail == "" {
		return ""
	}
	return ": " + detail
}
