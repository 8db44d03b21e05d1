package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// countingStats answers every pod with fixed stats and counts its reads.
type countingStats struct {
	mu    sync.Mutex
	reads int
	asked []string
	err   error
}

func (f *countingStats) PodStats(_ context.Context, pods []string, window time.Duration) ([]api.PodStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	f.asked = slices.Clone(pods)
	if f.err != nil {
		return nil, f.err
	}
	var out []api.PodStats
	for _, p := range pods {
		out = append(out, api.PodStats{Pod: p, CPUSeconds: 1.5, MemoryBytes: 1 << 20, MemoryLimitBytes: 1 << 30, NetRxBytes: 100, NetTxBytes: 50})
	}
	return out, nil
}

// podMetricsState has, on node n1, a running pod whose sidecar restarted
// and an exited pod the agent restarted twice; on n2, a running pod.
func podMetricsState(t *testing.T) *state.Store {
	t.Helper()
	st := state.New()
	err := st.Update(1, func(tx *state.Txn) error {
		for _, cmd := range []state.Command{
			&state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{
				{Project: "shop", Name: "web", Image: "x", Replicas: 2}, {Project: "shop", Name: "worker", Image: "x", Replicas: 1}}}},
			&state.PutNode{Node: api.Node{Name: "n1", Status: api.NodeReady}},
			&state.PutNode{Node: api.Node{Name: "n2", Status: api.NodeReady}},
			&state.CreatePods{Pods: []api.Pod{
				{Name: "shop-web-1", Project: "shop", Service: "web", Index: 1},
				{Name: "shop-web-2", Project: "shop", Service: "web", Index: 2},
				{Name: "shop-worker-1", Project: "shop", Service: "worker", Index: 1},
			}},
			&state.AssignPods{Nodes: map[string]string{"shop-web-1": "n1", "shop-web-2": "n2", "shop-worker-1": "n1"}},
			&state.PodStatus{Name: "shop-web-1", Node: "n1", Status: api.PodStatus{State: api.PodRunning, Restarts: 1,
				Sidecars: []api.ContainerStatus{{Name: "metrics", State: api.PodRunning, Restarts: 3}}}},
			&state.PodStatus{Name: "shop-web-2", Node: "n2", Status: api.PodStatus{State: api.PodRunning}},
			&state.PodStatus{Name: "shop-worker-1", Node: "n1", Status: api.PodStatus{State: api.PodExited, Restarts: 2}},
		} {
			if err := tx.Apply(cmd); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// collect gathers c's samples as "name{label values} value" lines.
func collect(t *testing.T, c prometheus.Collector) []string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			var lv []string
			for _, l := range m.GetLabel() {
				lv = append(lv, l.GetName()+"="+l.GetValue())
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			out = append(out, fmt.Sprintf("%s{%s} %g", f.GetName(), strings.Join(lv, ","), v))
		}
	}
	return out
}

// TestPodMetrics: the running pods of this node get their Engine stats,
// every pod of it its restarts; several scrapes within the TTL read the
// Engine once.
func TestPodMetrics(t *testing.T) {
	st := podMetricsState(t)
	stats := &countingStats{}
	c := &podCollector{node: "n1", state: func() *state.Store { return st }, stats: stats, log: slog.New(slog.DiscardHandler)}
	web := "{pod=shop-web-1,project=shop,service=web}"
	restarts := []string{
		"dev_pod_restarts_total" + web + " 4",
		"dev_pod_restarts_total{pod=shop-worker-1,project=shop,service=worker} 2",
	}
	want := append([]string{
		"dev_pod_cpu_seconds_total" + web + " 1.5",
		"dev_pod_memory_limit_bytes" + web + " 1.073741824e+09",
		"dev_pod_memory_working_set_bytes" + web + " 1.048576e+06",
		"dev_pod_network_receive_bytes_total" + web + " 100",
		"dev_pod_network_transmit_bytes_total" + web + " 50",
	}, restarts...)
	for range 2 {
		if got := collect(t, c); !slices.Equal(got, want) {
			t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	if stats.reads != 1 || !slices.Equal(stats.asked, []string{"shop-web-1"}) {
		t.Errorf("the Engine was read %d times for %v; want once, for the running pod", stats.reads, stats.asked)
	}

	t.Run("the Engine fails: restarts only, not read again before the TTL", func(t *testing.T) {
		stats := &countingStats{err: errors.New("docker: connection refused")}
		c := &podCollector{node: "n1", state: func() *state.Store { return st }, stats: stats, log: slog.New(slog.DiscardHandler)}
		for range 2 {
			if got := collect(t, c); !slices.Equal(got, restarts) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(restarts, "\n"))
			}
		}
		if stats.reads != 1 {
			t.Errorf("%d reads for 2 scrapes within the TTL, want one: a failed read is remembered", stats.reads)
		}
	})
}
