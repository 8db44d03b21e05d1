package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/devhq/dev/cluster/api"
)

// fakeStatsClient answers each call with the next answer, and cancels
// cancel once it has given the last.
type fakeStatsClient struct {
	answers []api.StatsList
	cancel  context.CancelFunc
	queries []api.StatsQuery
}

func (f *fakeStatsClient) Stats(_ context.Context, q api.StatsQuery) (api.StatsList, error) {
	f.queries = append(f.queries, q)
	a := f.answers[0]
	if len(f.answers) > 1 {
		f.answers = f.answers[1:]
	} else if f.cancel != nil {
		f.cancel()
	}
	return a, nil
}

func testStats() []api.PodStats {
	return []api.PodStats{
		{Pod: "shop-db-1", Project: "shop", Service: "db", Node: "h2", CPUPercent: 0.5, CPUSeconds: 3,
			MemoryBytes: 300 << 20, MemoryLimitBytes: 2 << 30, MemoryPercent: 14.6484375, NetRxBytes: 2_500_000, NetTxBytes: 1_234_567_890},
		{Pod: "shop-web-1", Project: "shop", Service: "web", Node: "h1", CPUPercent: 112.5, CPUSeconds: 40,
			MemoryBytes: 50 << 20, MemoryLimitBytes: 256 << 20, MemoryPercent: 19.53125, NetRxBytes: 1500, NetTxBytes: 700},
	}
}

func TestPrintStats(t *testing.T) {
	var out bytes.Buffer
	printStats(&out, testStats())
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("want a header and 2 rows, got:\n%s", out.String())
	}
	// Columns are separated by 3 spaces or more; "MEM USAGE / LIMIT" is one.
	cols := func(l string) []string {
		var out []string
		for _, c := range strings.Split(l, "   ") {
			if c = strings.TrimSpace(c); c != "" {
				out = append(out, c)
			}
		}
		return out
	}
	for i, want := range [][]string{
		{"NAME", "SERVICE", "NODE", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O"},
		{"shop-db-1", "db", "h2", "0.50%", "300MiB / 2GiB", "14.65%", "2.5MB / 1.23GB"},
		{"shop-web-1", "web", "h1", "112.50%", "50MiB / 256MiB", "19.53%", "1.5kB / 700B"},
	} {
		if got := cols(lines[i]); !reflect.DeepEqual(got, want) {
			t.Errorf("line %d = %q, want columns %q", i, lines[i], want)
		}
	}
}

func TestSizes(t *testing.T) {
	tests := []struct {
		n               uint64
		binary, decimal string
	}{
		{0, "0B", "0B"},
		{999, "999B", "999B"},
		{1023, "1023B", "1.02kB"},
		{1536, "1.5KiB", "1.54kB"},
		{8 << 30, "8GiB", "8.59GB"},
		{1<<64 - 1, "16EiB", "18.4EB"},
	}
	for _, tt := range tests {
		if got := binarySize(tt.n); got != tt.binary {
			t.Errorf("binarySize(%d) = %q, want %q", tt.n, got, tt.binary)
		}
		if got := decimalSize(tt.n); got != tt.decimal {
			t.Errorf("decimalSize(%d) = %q, want %q", tt.n, got, tt.decimal)
		}
	}
}

func TestRunStatsNoStreamJSON(t *testing.T) {
	f := &fakeStatsClient{answers: []api.StatsList{{Pods: testStats(), Errors: []string{"node h3: the node is down"}}}}
	var out, errOut bytes.Buffer
	q := api.StatsQuery{Project: "shop", Services: []string{"web", "db"}}
	if err := runStats(context.Background(), f, q, statsOptions{noStream: true, output: "json"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	var got []api.PodStats
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("stdout is not a JSON array: %v\n%s", err, out.String())
	}
	if !reflect.DeepEqual(got, testStats()) {
		t.Errorf("printed %+v, want %+v", got, testStats())
	}
	if !reflect.DeepEqual(f.queries, []api.StatsQuery{q}) {
		t.Errorf("queries = %+v, want one of %+v", f.queries, q)
	}
	if errOut.String() != "warning: node h3: the node is down: its pods are not shown\n" {
		t.Errorf("stderr = %q", errOut.String())
	}
}

func TestRunStatsNoPod(t *testing.T) {
	f := &fakeStatsClient{answers: []api.StatsList{{Pods: []api.PodStats{}}}}
	var out, errOut bytes.Buffer
	q := api.StatsQuery{Project: "shop", Services: []string{"web"}}
	if err := runStats(context.Background(), f, q, statsOptions{noStream: true, output: "json"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out.String()) != "[]" || errOut.String() != "no running pod of web\n" {
		t.Errorf("stdout %q, stderr %q", out.String(), errOut.String())
	}
}

// TestRunStatsStream: without --no-stream, a table per sample until
// Ctrl-C (ctx), and the missing nodes when they change.
func TestRunStatsStream(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pods := testStats()
	f := &fakeStatsClient{cancel: cancel, answers: []api.StatsList{
		{Pods: pods, Errors: []string{"node h3: the node is down"}},
		{Pods: pods, Errors: []string{"node h3: the node is down"}},
		{Pods: pods[1:]},
	}}
	var out, errOut bytes.Buffer
	if err := runStats(ctx, f, api.StatsQuery{}, statsOptions{output: "table"}, &out, &errOut); err != nil {
		t.Fatalf("runStats ended by Ctrl-C: %v", err)
	}
	tables := strings.Split(strings.TrimRight(out.String(), "\n"), "\n\n")
	if len(tables) != 3 || strings.Count(tables[0], "\n") != 2 || strings.Count(tables[2], "\n") != 1 {
		t.Fatalf("want 3 tables (3, 3 and 2 lines), got:\n%s", out.String())
	}
	if !strings.HasPrefix(tables[2], "NAME") || !strings.Contains(tables[2], "shop-web-1") {
		t.Errorf("last table:\n%s", tables[2])
	}
	if errOut.String() != "warning: node h3: the node is down: its pods are not shown\n" {
		t.Errorf("stderr = %q, want the warning once", errOut.String())
	}

	t.Run("json: an array per line and sample", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		f := &fakeStatsClient{cancel: cancel, answers: []api.StatsList{{Pods: pods}, {Pods: pods[:1]}}}
		var out, errOut bytes.Buffer
		if err := runStats(ctx, f, api.StatsQuery{}, statsOptions{output: "json"}, &out, &errOut); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
		if len(lines) != 2 {
			t.Fatalf("want 2 lines, got:\n%s", out.String())
		}
		for i, want := range [][]api.PodStats{pods, pods[:1]} {
			var got []api.PodStats
			if err := json.Unmarshal([]byte(lines[i]), &got); err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("line %d = %s (%v), want %+v", i, lines[i], err, want)
			}
		}
	})
}
