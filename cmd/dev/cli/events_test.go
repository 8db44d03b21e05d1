package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
)

// fakeEvents answers Events from a script: one answer per call, and ends
// ctx once the script is done.
type fakeEvents struct {
	answers []api.EventList
	calls   []string // "index/wait"
	cancel  context.CancelFunc
	err     error // answered once the script is done, if set
}

func (f *fakeEvents) Events(ctx context.Context, index uint64, wait time.Duration) (api.EventList, error) {
	f.calls = append(f.calls, fmt.Sprintf("%d/%s", index, wait))
	if len(f.answers) == 0 {
		if f.err != nil {
			return api.EventList{}, f.err
		}
		f.cancel()
		return api.EventList{}, ctx.Err()
	}
	l := f.answers[0]
	f.answers = f.answers[1:]
	return l, nil
}

var _ eventsClient = (*fakeEvents)(nil)

func testEvents() []api.Event {
	at := time.Now() // today: printed as a time of day
	return []api.Event{
		{Index: 7, Time: at, Reason: api.EventNodeDown, Warning: true, Kind: "node", Name: "h3", Node: "h3", Message: "h3 is down"},
		{Index: 9, Time: at, Reason: api.EventRescheduled, Kind: "pod", Name: "hello-web-2", Node: "h1", Message: "web-2 lost with node h3 (down), placed on h1"},
		{Index: 9, Time: at, Reason: api.EventScaled, Kind: "service", Name: "hello/web", Message: "scaled hello/web from 2 to 5"},
	}
}

func TestRunEventsTable(t *testing.T) {
	evs := testEvents()
	f := &fakeEvents{answers: []api.EventList{{Index: 9, Events: evs}}}
	var out, errOut bytes.Buffer
	if err := runEvents(context.Background(), f, eventsOptions{output: "table"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("want a header and 3 rows, got:\n%s", out.String())
	}
	for i, want := range [][]string{
		{"TIME", "TYPE", "REASON", "OBJECT", "NODE", "MESSAGE"},
		{evs[0].Time.Local().Format("15:04:05"), "Warning", "NodeDown", "node/h3", "h3", "h3", "is", "down"},
		{"Normal", "Rescheduled", "pod/hello-web-2", "h1", "web-2", "lost"},
		{"Normal", "Scaled", "service/hello/web", "-", "scaled", "hello/web"},
	} {
		fields := strings.Fields(lines[i])
		if i > 1 {
			fields = fields[1:] // the time
		}
		if len(fields) < len(want) || !reflect.DeepEqual(fields[:len(want)], want) {
			t.Errorf("line %d = %q, want it to start with %q", i, lines[i], want)
		}
	}
	// Columns line up: every row has its REASON where the header has it.
	col := strings.Index(lines[0], "REASON")
	for _, l := range lines[1:] {
		if l[col-1] != ' ' || l[col] == ' ' {
			t.Errorf("row not aligned with the header:\n%s\n%s", lines[0], l)
		}
	}
	if f.calls[0] != "0/0s" || len(f.calls) != 1 {
		t.Errorf("calls = %v, want one non-blocking list", f.calls)
	}
}

func TestRunEventsNone(t *testing.T) {
	f := &fakeEvents{answers: []api.EventList{{Index: 3, Events: []api.Event{}}}}
	var out, errOut bytes.Buffer
	if err := runEvents(context.Background(), f, eventsOptions{output: "table"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 || !strings.Contains(errOut.String(), "No events") {
		t.Fatalf("stdout %q, stderr %q", out.String(), errOut.String())
	}
}

func TestRunEventsFollowJSON(t *testing.T) {
	evs := testEvents()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := &fakeEvents{cancel: cancel, answers: []api.EventList{
		{Index: 7, Events: evs[:1]},
		{Index: 8, Events: []api.Event{}}, // a wait that timed out
		{Index: 9, Events: evs[1:]},
	}}
	var out, errOut bytes.Buffer
	if err := runEvents(ctx, f, eventsOptions{follow: true, output: "json"}, &out, &errOut); err != nil {
		t.Fatalf("runEvents ended by Ctrl-C: %v", err)
	}
	// The index passed back is the last answer's; blocking queries wait 30s.
	wantCalls := []string{"0/0s", "7/30s", "8/30s", "9/30s"}
	if !reflect.DeepEqual(f.calls, wantCalls) {
		t.Errorf("calls = %v, want %v", f.calls, wantCalls)
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != len(evs) {
		t.Fatalf("want one line per event, got:\n%s", out.String())
	}
	for i, l := range lines {
		var e api.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if e.Reason != evs[i].Reason || e.Name != evs[i].Name || e.Index != evs[i].Index {
			t.Errorf("line %d = %+v, want %+v", i, e, evs[i])
		}
	}
}

func TestRunEventsFollowTableHeaderFirst(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	evs := testEvents()
	f := &fakeEvents{cancel: cancel, answers: []api.EventList{
		{Index: 5, Events: []api.Event{}},
		{Index: 9, Events: evs},
	}}
	var out, errOut bytes.Buffer
	if err := runEvents(ctx, f, eventsOptions{follow: true, output: "table"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "TIME") {
		t.Fatalf("want the header, then 3 rows:\n%s", out.String())
	}
}

func TestRunEventsError(t *testing.T) {
	boom := errors.New("boom")
	f := &fakeEvents{err: boom}
	err := runEvents(context.Background(), f, eventsOptions{output: "table"}, &bytes.Buffer{}, &bytes.Buffer{})
	if !errors.Is(err, boom) {
		t.Fatalf("runEvents = %v, want boom", err)
	}
	// While following too.
	f = &fakeEvents{err: boom, answers: []api.EventList{{Index: 1, Events: []api.Event{}}}}
	err = runEvents(context.Background(), f, eventsOptions{follow: true, output: "table"}, &bytes.Buffer{}, &bytes.Buffer{})
	if !errors.Is(err, boom) {
		t.Fatalf("runEvents -f = %v, want boom", err)
	}
}
