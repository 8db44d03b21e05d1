package events

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
)

func lostPod(service string, i int, node, why string, at time.Time) loss {
	return loss{
		service: api.RCKey("hello", service), pod: api.PodName("hello", service, i),
		short: fmt.Sprintf("%s-%d", service, i), node: node, why: why, at: at,
	}
}

func placed(service string, i int, node string) api.Event {
	return ev(api.EventScheduled, "pod", api.PodName("hello", service, i), node, fmt.Sprintf("placed %s-%d on %s", service, i, node))
}

func TestPair(t *testing.T) {
	cur := view(5, rc("web", 3), rc("db", 1),
		web(2, "h1", pending("")), web(3, "h1", pending("")), pod("db", 1, "h1", pending("")))
	old := t0.Add(-time.Minute)
	tests := []struct {
		name     string
		evs      []api.Event
		lost     []loss
		want     []api.Event
		wantLost []loss
	}{
		{
			name: "no losses",
			evs:  []api.Event{placed("web", 2, "h1")},
			want: []api.Event{placed("web", 2, "h1")},
		},
		{
			name: "replacement on another node",
			evs:  []api.Event{placed("web", 2, "h1")},
			lost: []loss{lostPod("web", 2, "h3", api.NodeDown, old)},
			want: []api.Event{ev(api.EventRescheduled, "pod", "hello-web-2", "h1", "web-2 lost with node h3 (down), placed on h1")},
		},
		{
			name: "replacement under another name",
			evs:  []api.Event{placed("web", 3, "h1")},
			lost: []loss{lostPod("web", 2, "h3", api.NodeLeft, old)},
			want: []api.Event{ev(api.EventRescheduled, "pod", "hello-web-3", "h1", "web-2 lost with node h3 (left), replaced by web-3 on h1")},
		},
		{
			name:     "the same name wins over an older loss",
			evs:      []api.Event{placed("web", 2, "h1")},
			lost:     []loss{lostPod("web", 1, "h3", api.NodeDown, old), lostPod("web", 2, "h2", api.NodeDown, t0)},
			want:     []api.Event{ev(api.EventRescheduled, "pod", "hello-web-2", "h1", "web-2 lost with node h2 (down), placed on h1")},
			wantLost: []loss{lostPod("web", 1, "h3", api.NodeDown, old)},
		},
		{
			name: "back on its own node: a plain placement, the loss used up",
			evs:  []api.Event{placed("web", 2, "h1")},
			lost: []loss{lostPod("web", 2, "h1", api.NodeDown, old)},
			want: []api.Event{placed("web", 2, "h1")},
		},
		{
			name:     "another service's placement",
			evs:      []api.Event{placed("db", 1, "h1")},
			lost:     []loss{lostPod("web", 2, "h3", api.NodeDown, old)},
			want:     []api.Event{placed("db", 1, "h1")},
			wantLost: []loss{lostPod("web", 2, "h3", api.NodeDown, old)},
		},
		{
			name: "one loss, one reschedule",
			evs:  []api.Event{placed("web", 2, "h1"), placed("web", 3, "h1")},
			lost: []loss{lostPod("web", 2, "h3", api.NodeDown, old)},
			want: []api.Event{
				ev(api.EventRescheduled, "pod", "hello-web-2", "h1", "web-2 lost with node h3 (down), placed on h1"),
				placed("web", 3, "h1"),
			},
		},
		{
			name: "expired loss",
			evs:  []api.Event{placed("web", 2, "h1")},
			lost: []loss{lostPod("web", 2, "h3", api.NodeDown, t0.Add(-DefaultLossTTL-time.Second))},
			want: []api.Event{placed("web", 2, "h1")},
		},
		{
			name:     "other events keep the loss",
			evs:      []api.Event{ev(api.EventStarted, "pod", "hello-web-2", "h1", "started web-2")},
			lost:     []loss{lostPod("web", 2, "h3", api.NodeDown, old)},
			want:     []api.Event{ev(api.EventStarted, "pod", "hello-web-2", "h1", "started web-2")},
			wantLost: []loss{lostPod("web", 2, "h3", api.NodeDown, old)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs := append([]api.Event(nil), tt.evs...)
			lost := append([]loss(nil), tt.lost...)
			got, gotLost := pair(evs, cur, lost, t0, DefaultLossTTL)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("events:\n%swant:\n%s", render(got), render(tt.want))
			}
			if len(gotLost) != 0 || len(tt.wantLost) != 0 {
				if !reflect.DeepEqual(gotLost, tt.wantLost) {
					t.Errorf("losses = %+v, want %+v", gotLost, tt.wantLost)
				}
			}
			if !reflect.DeepEqual(evs, tt.evs) || !reflect.DeepEqual(lost, tt.lost) {
				t.Error("pair modified its arguments")
			}
		})
	}
}

func TestTrackerReschedulesAcrossViews(t *testing.T) {
	h1, h3 := node("h1", api.NodeReady), node("h3", api.NodeReady)
	h3down := api.Node{Name: "h3", Status: api.NodeDown}
	svc := rc("web", 2)
	lost := web(2, "h3", running("c2", 0))
	steps := []struct {
		name string
		cur  []any
		want []api.Event
	}{
		{
			name: "node down",
			cur:  []any{h1, h3down, svc, web(1, "h1", running("c1", 0)), lost},
			want: []api.Event{warn(ev(api.EventNodeDown, "node", "h3", "h3", "h3 is down"))},
		},
		{
			name: "pods of the node forgotten after the grace period",
			cur:  []any{h1, h3down, svc, web(1, "h1", running("c1", 0))},
			want: []api.Event{ev(api.EventRemoved, "pod", "hello-web-2", "h3", "web-2 lost with node h3 (down)")},
		},
		{
			name: "replacement created",
			cur:  []any{h1, h3down, svc, web(1, "h1", running("c1", 0)), with(web(2, "", pending("")), func(p *api.Pod) { p.CreateIndex = 9 })},
		},
		{
			name: "replacement placed on another node",
			cur:  []any{h1, h3down, svc, web(1, "h1", running("c1", 0)), with(web(2, "h1", pending("")), func(p *api.Pod) { p.CreateIndex = 9 })},
			want: []api.Event{ev(api.EventRescheduled, "pod", "hello-web-2", "h1", "web-2 lost with node h3 (down), placed on h1")},
		},
		{
			name: "the loss is used up",
			cur: []any{h1, node("h3", api.NodeReady), rc("web", 3), web(1, "h1", running("c1", 0)),
				with(web(2, "h1", pending("")), func(p *api.Pod) { p.CreateIndex = 9 }), web(3, "h3", pending(""))},
			want: []api.Event{
				ev(api.EventNodeReady, "node", "h3", "h3", "h3 is ready"),
				ev(api.EventScaled, "service", "hello/web", "", "scaled hello/web from 2 to 3"),
				placed("web", 3, "h3"),
			},
		},
	}
	tr := NewTracker(0)
	prev := view(1, h1, h3, svc, web(1, "h1", running("c1", 0)), lost)
	for i, st := range steps {
		cur := view(uint64(i+2), st.cur...)
		now := t0.Add(time.Duration(i) * time.Second)
		got := tr.Next(prev, cur, now)
		if want := stamp(st.want, cur.Index, now); (len(got) != 0 || len(want) != 0) && !reflect.DeepEqual(got, want) {
			t.Fatalf("step %q:\n%swant:\n%s", st.name, render(got), render(want))
		}
		prev = cur
	}
}

func TestTrackerReschedulesInOneView(t *testing.T) {
	h1, h3down := node("h1", api.NodeReady), node("h3", api.NodeDown)
	svc := rc("web", 1)
	prev := view(1, h1, h3down, svc, web(1, "h3", running("c1", 0)))
	cur := view(2, h1, h3down, svc, with(web(1, "h1", running("c9", 0)), func(p *api.Pod) { p.CreateIndex = 2 }))
	got := NewTracker(0).Next(prev, cur, t0)
	want := stamp([]api.Event{
		ev(api.EventRemoved, "pod", "hello-web-1", "h3", "web-1 lost with node h3 (down)"),
		ev(api.EventRescheduled, "pod", "hello-web-1", "h1", "web-1 lost with node h3 (down), placed on h1"),
		ev(api.EventStarted, "pod", "hello-web-1", "h1", "started web-1"),
	}, 2, t0)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Next:\n%swant:\n%s", render(got), render(want))
	}
}

func TestTrackerForgetsOldLosses(t *testing.T) {
	h1, h3down := node("h1", api.NodeReady), node("h3", api.NodeDown)
	svc := rc("web", 1)
	tr := NewTracker(time.Minute)
	v1 := view(1, h1, h3down, svc, web(1, "h3", running("c1", 0)))
	v2 := view(2, h1, h3down, svc)
	v3 := view(3, h1, h3down, svc, with(web(1, "h1", pending("")), func(p *api.Pod) { p.CreateIndex = 3 }))
	tr.Next(v1, v2, t0)
	got := tr.Next(v2, v3, t0.Add(2*time.Minute))
	if len(got) != 1 || got[0].Reason != api.EventScheduled {
		t.Fatalf("Next after the TTL:\n%swant one Scheduled", render(got))
	}
	if len(tr.lost) != 0 {
		t.Fatalf("losses kept past the TTL: %+v", tr.lost)
	}
}
