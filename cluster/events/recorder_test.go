package events

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// store applies commands to a real state.Store the way the raft FSM does:
// one Update per command, at the next index.
type store struct {
	t   *testing.T
	st  *state.Store
	idx uint64
}

func (s *store) apply(cmds ...state.Command) uint64 {
	s.t.Helper()
	for _, c := range cmds {
		s.idx++
		if err := s.st.Update(s.idx, func(tx *state.Txn) error { return tx.Apply(c) }); err != nil {
			s.t.Fatalf("apply %T: %v", c, err)
		}
	}
	return s.idx
}

func newPod(service string, i int) api.Pod {
	name := api.PodName("hello", service, i)
	return api.Pod{
		Name: name, Project: "hello", Service: service, Index: i,
		Labels: map[string]string{api.LabelProject: "hello", api.LabelService: service, api.LabelPod: name},
		Status: api.PodStatus{State: api.PodPending},
	}
}

// startRecorder runs a recorder over a store that already holds two ready
// nodes and the service hello/web with one pod on h1, and returns once the
// recorder has taken its first view.
func startRecorder(t *testing.T, opts ...Option) (*Recorder, *store) {
	t.Helper()
	s := &store{t: t, st: state.New()}
	s.apply(
		&state.PutNode{Node: api.Node{Name: "h1", Status: api.NodeReady}},
		&state.PutNode{Node: api.Node{Name: "h3", Status: api.NodeReady}},
		&state.ApplyProject{Project: api.Project{Name: "hello", Services: []api.ServiceSpec{{Project: "hello", Name: "web", Image: "web", Replicas: 1}}}},
		&state.CreatePods{Pods: []api.Pod{newPod("web", 1)}},
		&state.AssignPods{Nodes: map[string]string{"hello-web-1": "h1"}},
	)
	r := New(s.st, nil, opts...)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := r.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	eventually(t, func() bool { return r.List(0).Index == s.idx })
	return r, s
}

// eventually retries cond for up to five seconds.
func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met within 5s")
}

func waitEvents(t *testing.T, r *Recorder, after uint64) api.EventList {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l := r.Wait(ctx, after)
	if len(l.Events) == 0 {
		t.Fatalf("Wait(%d): no events within 5s", after)
	}
	return l
}

func reasons(evs []api.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, fmt.Sprintf("%d %s %s", e.Index, e.Reason, e.Name))
	}
	return out
}

func TestRecorderStartsWithNoEvents(t *testing.T) {
	r, s := startRecorder(t)
	l := r.List(0)
	if len(l.Events) != 0 || l.Events == nil {
		t.Fatalf("List(0).Events = %#v, want empty and not nil", l.Events)
	}
	if l.Index != s.idx {
		t.Fatalf("List(0).Index = %d, want the store's %d", l.Index, s.idx)
	}
}

func TestRecorderListAndWait(t *testing.T) {
	r, s := startRecorder(t)
	start := s.idx

	// An update that makes no event moves the index but wakes no waiter.
	noEvent := s.apply(&state.ReleaseRC{Key: "hello/web"})
	eventually(t, func() bool { return r.List(0).Index == noEvent })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	l := r.Wait(ctx, start)
	cancel()
	if len(l.Events) != 0 || l.Index != noEvent {
		t.Fatalf("Wait with a short ctx = %v (index %d), want no events at index %d", reasons(l.Events), l.Index, noEvent)
	}

	// A waiter returns when an update makes an event.
	got := make(chan api.EventList, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		got <- r.Wait(ctx, noEvent)
	}()
	scaled := s.apply(&state.Scale{Project: "hello", Replicas: map[string]int{"web": 3}})
	var w api.EventList
	select {
	case w = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after an update with an event")
	}
	if len(w.Events) != 1 {
		t.Fatalf("Wait = %v, want one event", reasons(w.Events))
	}
	want := []api.Event{{Index: scaled, Reason: api.EventScaled, Kind: "service", Name: "hello/web", Message: "scaled hello/web from 1 to 3"}}
	w.Events[0].Time = time.Time{}
	if !reflect.DeepEqual(w.Events, want) || w.Index != scaled {
		t.Fatalf("Wait = %+v (index %d), want %+v (index %d)", w.Events, w.Index, want, scaled)
	}

	// More events; the list is oldest first and after filters by index.
	created := s.apply(&state.CreatePods{Pods: []api.Pod{newPod("web", 2)}}) // no event
	placedAt := s.apply(&state.AssignPods{Nodes: map[string]string{"hello-web-2": "h3"}})
	eventually(t, func() bool { return r.List(0).Index == placedAt }) // not coalesced with the next
	started := s.apply(&state.PodStatus{Name: "hello-web-2", Node: "h3", Status: api.PodStatus{State: api.PodRunning, ContainerID: "c2"}})
	eventually(t, func() bool { return r.List(0).Index == started })
	wantAll := []string{
		fmt.Sprintf("%d Scaled hello/web", scaled),
		fmt.Sprintf("%d Scheduled hello-web-2", placedAt),
		fmt.Sprintf("%d Started hello-web-2", started),
	}
	if got := reasons(r.List(0).Events); !reflect.DeepEqual(got, wantAll) {
		t.Fatalf("List(0) = %v, want %v", got, wantAll)
	}
	if got := reasons(r.List(created).Events); !reflect.DeepEqual(got, wantAll[1:]) {
		t.Fatalf("List(%d) = %v, want %v", created, got, wantAll[1:])
	}
	if l := r.List(started); len(l.Events) != 0 || l.Index != started {
		t.Fatalf("List(%d) = %v (index %d), want none at index %d", started, reasons(l.Events), l.Index, started)
	}
	// Wait with events already there returns at once.
	if got := reasons(waitEvents(t, r, placedAt).Events); !reflect.DeepEqual(got, wantAll[2:]) {
		t.Fatalf("Wait(%d) = %v, want %v", placedAt, got, wantAll[2:])
	}
}

func TestRecorderRingBuffer(t *testing.T) {
	r, s := startRecorder(t, WithCapacity(3))
	var want []string
	for i := range 5 {
		name := fmt.Sprintf("n%d", i)
		idx := s.apply(&state.PutNode{Node: api.Node{Name: name, Status: api.NodeReady}})
		want = append(want, fmt.Sprintf("%d NodeJoined %s", idx, name))
		eventually(t, func() bool { return r.List(0).Index == idx }) // one view per update
	}
	if got := reasons(r.List(0).Events); !reflect.DeepEqual(got, want[2:]) {
		t.Fatalf("List(0) = %v, want the last three %v", got, want[2:])
	}
}

func TestRecorderReschedule(t *testing.T) {
	r, s := startRecorder(t)
	start := s.idx
	// The node monitor marks h1 down, then forgets its pods after the grace
	// period; the replication controller recreates web-1, the scheduler
	// places it on h3.
	down := s.apply(&state.PutNode{Node: api.Node{Name: "h1", Status: api.NodeDown, DownSince: time.Now()}})
	eventually(t, func() bool { return r.List(0).Index == down })
	gone := s.apply(&state.DeletePods{Names: []string{"hello-web-1"}})
	eventually(t, func() bool { return r.List(0).Index == gone })
	s.apply(&state.CreatePods{Pods: []api.Pod{newPod("web", 1)}})
	placedAt := s.apply(&state.AssignPods{Nodes: map[string]string{"hello-web-1": "h3"}})
	eventually(t, func() bool { return r.List(0).Index == placedAt })

	l := r.List(start)
	var got []string
	for _, e := range l.Events {
		got = append(got, fmt.Sprintf("%s %s %s: %s", e.Reason, e.Name, e.Node, e.Message))
	}
	want := []string{
		"NodeDown h1 h1: h1 is down",
		"Removed hello-web-1 h1: web-1 lost with node h1 (down)",
		"Rescheduled hello-web-1 h3: web-1 lost with node h1 (down), placed on h3",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("events:\n%q\nwant:\n%q", got, want)
	}
}

func TestRecorderRunOnce(t *testing.T) {
	r, _ := startRecorder(t)
	if err := r.Run(context.Background()); err == nil {
		t.Fatal("a second Run while running: want an error")
	}
}

func TestRecorderIndexesOnlyGrow(t *testing.T) {
	r := New(state.New(), nil)
	r.record(10, nil)
	r.record(8, []api.Event{{Reason: api.EventNodeJoined, Name: "a"}}) // the store went back
	r.record(11, []api.Event{{Reason: api.EventNodeJoined, Name: "b"}})
	got := reasons(r.List(10).Events)
	want := []string{"11 NodeJoined a", "12 NodeJoined b"}
	if !reflect.DeepEqual(got, want) || r.List(0).Index != 12 {
		t.Fatalf("List(10) = %v (index %d), want %v (index 12)", got, r.List(0).Index, want)
	}
}

func TestRecorderWaitSeen(t *testing.T) {
	r, s := startRecorder(t)
	start := s.idx
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if got := r.WaitSeen(short, start+1); got != start {
		t.Fatalf("WaitSeen with a short ctx = %d, want %d", got, start)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	noEvent := s.apply(&state.ReleaseRC{Key: "hello/web"})
	if got := r.WaitSeen(ctx, noEvent); got < noEvent {
		t.Fatalf("WaitSeen(%d) = %d", noEvent, got)
	}
	scaled := s.apply(&state.Scale{Project: "hello", Replicas: map[string]int{"web": 2}})
	if got := r.WaitSeen(ctx, scaled); got < scaled {
		t.Fatalf("WaitSeen(%d) = %d", scaled, got)
	}
	// Once seen, the change's events are listed.
	if got, want := reasons(r.List(noEvent).Events), []string{fmt.Sprintf("%d Scaled hello/web", scaled)}; !reflect.DeepEqual(got, want) {
		t.Fatalf("List after WaitSeen = %v, want %v", got, want)
	}
}
