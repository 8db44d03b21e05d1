package node

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/devhq/dev/cluster/agent/docker"
	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/apiserver"
	"github.com/devhq/dev/cluster/state"
)

// podStatser reads what this node's running pods use from the Engine
// (docker.Driver.PodStats; window 0: one read, no CPU %).
type podStatser interface {
	PodStats(ctx context.Context, pods []string, window time.Duration) ([]api.PodStats, error)
}

// Pod metrics are read at scrape time and kept a few seconds, so that
// several scrapers cost the Engine one read; a read has a few seconds.
const (
	podStatsTTL     = 5 * time.Second
	podStatsTimeout = 5 * time.Second
)

var (
	podLabels       = []string{"project", "service", "pod"}
	descPodCPU      = prometheus.NewDesc("dev_pod_cpu_seconds_total", "CPU time used by the running containers of a pod of this node.", podLabels, nil)
	descPodMemory   = prometheus.NewDesc("dev_pod_memory_working_set_bytes", "Memory of a pod of this node without its inactive file cache, as docker stats shows it.", podLabels, nil)
	descPodMemLimit = prometheus.NewDesc("dev_pod_memory_limit_bytes", "Memory limit of a pod of this node: its containers' limits, at most the node's memory.", podLabels, nil)
	descPodRx       = prometheus.NewDesc("dev_pod_network_receive_bytes_total", "Bytes received by the network namespace of a pod of this node.", podLabels, nil)
	descPodTx       = prometheus.NewDesc("dev_pod_network_transmit_bytes_total", "Bytes sent by the network namespace of a pod of this node.", podLabels, nil)
	descPodRestarts = prometheus.NewDesc("dev_pod_restarts_total", "Restarts of the containers of a pod of this node (its service's and its sidecars') by the agent.", podLabels, nil)
)

// podCollector exports the Engine's stats of this node's running pods and
// the restarts the agent counted (in the state) of all its pods.
type podCollector struct {
	node  string
	state func() *state.Store
	stats podStatser // nil: restarts only
	log   *slog.Logger

	mu   sync.Mutex // one read at a time; the next scrapes take its answer
	at   time.Time
	last map[string]api.PodStats
}

func (c *podCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPodCPU, descPodMemory, descPodMemLimit, descPodRx, descPodTx, descPodRestarts} {
		ch <- d
	}
}

func (c *podCollector) Collect(ch chan<- prometheus.Metric) {
	pods := c.state().Pods(state.PodFilter{Node: c.node})
	var running []string
	for _, p := range pods {
		if p.Status.State == api.PodRunning {
			running = append(running, p.Name)
		}
	}
	usage := c.usage(running)
	for _, p := range pods {
		labels := []string{p.Project, p.Service, p.Name}
		restarts := p.Status.Restarts
		for _, sc := range p.Status.Sidecars {
			restarts += sc.Restarts
		}
		ch <- prometheus.MustNewConstMetric(descPodRestarts, prometheus.CounterValue, float64(restarts), labels...)
		u, ok := usage[p.Name]
		if !ok {
			continue
		}
		ch <- prometheus.MustNewConstMetric(descPodCPU, prometheus.CounterValue, u.CPUSeconds, labels...)
		ch <- prometheus.MustNewConstMetric(descPodMemory, prometheus.GaugeValue, float64(u.MemoryBytes), labels...)
		ch <- prometheus.MustNewConstMetric(descPodMemLimit, prometheus.GaugeValue, float64(u.MemoryLimitBytes), labels...)
		ch <- prometheus.MustNewConstMetric(descPodRx, prometheus.CounterValue, float64(u.NetRxBytes), labels...)
		ch <- prometheus.MustNewConstMetric(descPodTx, prometheus.CounterValue, float64(u.NetTxBytes), labels...)
	}
}

// usage returns the stats of the running pods by name: the last read when
// it is younger than podStatsTTL, else a new one. A failed read is
// remembered as long (no stats), so that scrapes of a node whose Engine
// hangs do not each wait podStatsTimeout behind the lock.
func (c *podCollector) usage(running []string) map[string]api.PodStats {
	if c.stats == nil || len(running) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < podStatsTTL {
		return c.last // nil after a failed read
	}
	ctx, cancel := context.WithTimeout(context.Background(), podStatsTimeout)
	defer cancel()
	got, err := c.stats.PodStats(ctx, running, 0)
	if err != nil {
		c.log.Warn("read pod stats for the metrics", "err", err, "retry in", podStatsTTL)
		c.last, c.at = nil, time.Now()
		return nil
	}
	c.last = make(map[string]api.PodStats, len(got))
	for _, s := range got {
		c.last[s.Pod] = s
	}
	c.at = time.Now()
	return c.last
}

var (
	_ podStatser            = (*docker.Driver)(nil)
	_ apiserver.StatsReader = (*docker.Driver)(nil)
)
