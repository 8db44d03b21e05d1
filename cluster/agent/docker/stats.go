package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"

	"github.com/devhq/dev/cluster/api"
)

// Stats reads are bounded: a few at a time on the Engine, each in a few
// seconds.
const (
	statsReads       = 4
	statsReadTimeout = 5 * time.Second
)

// PodStats reads the Engine's stats of the running containers of pods (on
// this node) with one-shot reads, and sums them per pod (podStats). With
// window > 0 it reads twice, window apart, for the CPU % (as `docker
// stats`, which compares a read with the one before); with 0 once, and
// CPUPercent stays 0. A pod with no running container, or one of whose
// containers could not be read, is left out.
func (d *Driver) PodStats(ctx context.Context, pods []string, window time.Duration) ([]api.PodStats, error) {
	if len(pods) == 0 {
		return nil, nil
	}
	want := make(map[string]bool, len(pods))
	for _, p := range pods {
		want[p] = true
	}
	sums, err := d.cli.ContainerList(ctx, container.ListOptions{Filters: managedFilter()}) // running ones
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var cs []statsContainer
	for _, s := range sums {
		if d.mine(s.Labels) && want[s.Labels[api.LabelPod]] {
			cs = append(cs, statsContainer{ID: s.ID, Labels: s.Labels})
		}
	}
	if len(cs) == 0 {
		return nil, nil
	}
	samples := d.readStats(ctx, cs)
	if window > 0 {
		select {
		case <-time.After(window):
		case <-ctx.Done():
			return nil, fmt.Errorf("read container stats: %w", ctx.Err())
		}
		pre := samples
		samples = d.readStats(ctx, cs)
		for id, s := range samples {
			p, ok := pre[id]
			if !ok {
				delete(samples, id)
				continue
			}
			s.PreCPUStats, s.PreRead = p.CPUStats, p.Read
			samples[id] = s
		}
	}
	return podStats(d.opts.Node, cs, samples, d.memTotal(ctx), window > 0), nil
}

// statsContainer is a running container whose stats are read.
type statsContainer struct {
	ID     string
	Labels map[string]string
}

// readStats reads the one-shot stats of cs, statsReads at a time, each
// within statsReadTimeout; a container that could not be read is missing
// from the answer (one that is gone quietly, others with a warning).
func (d *Driver) readStats(ctx context.Context, cs []statsContainer) map[string]container.StatsResponse {
	out := make(map[string]container.StatsResponse, len(cs))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, statsReads)
	for _, c := range cs {
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			s, err := d.readOne(ctx, c.ID)
			if err != nil {
				if !cerrdefs.IsNotFound(err) && ctx.Err() == nil {
					d.log.Warn("read container stats", "container", c.ID[:min(12, len(c.ID))], "pod", c.Labels[api.LabelPod], "err", err)
				}
				return
			}
			mu.Lock()
			out[c.ID] = s
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

func (d *Driver) readOne(ctx context.Context, id string) (container.StatsResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, statsReadTimeout)
	defer cancel()
	var s container.StatsResponse
	r, err := d.cli.ContainerStatsOneShot(ctx, id)
	if err != nil {
		return s, err
	}
	defer r.Body.Close()
	if err := json.NewDecoder(r.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("decode stats: %w", err)
	}
	return s, nil
}

// memTotal is the Engine's memory (docker info), read once; 0 when it
// cannot be read.
func (d *Driver) memTotal(ctx context.Context) uint64 {
	if m := d.memBytes.Load(); m > 0 {
		return m
	}
	res, err := d.Resources(ctx)
	if err != nil || res.MemoryBytes <= 0 {
		return 0
	}
	d.memBytes.Store(uint64(res.MemoryBytes))
	return uint64(res.MemoryBytes)
}

// podStats sums the samples of containers cs per pod (label dev.pod) on
// node: CPU and memory over all of them, the memory limit over the
// service's and sidecars' (the infra container has none, and the pod's
// limit is theirs; at most memTotal when it is known), the network from
// the infra container, which holds the pod's network namespace (the
// containers that join it report none), or from every container of a pod
// that has none (a one-off pod). A pod one of whose containers has no
// sample is left out: a sum without it would make its counters go back.
func podStats(node string, cs []statsContainer, samples map[string]container.StatsResponse, memTotal uint64, withCPU bool) []api.PodStats {
	type pod struct {
		api.PodStats
		infra   bool
		missing bool
		rx, tx  uint64 // of containers other than the infra one
	}
	pods := map[string]*pod{}
	var order []string
	for _, c := range cs {
		name := c.Labels[api.LabelPod]
		p, ok := pods[name]
		if !ok {
			p = &pod{PodStats: api.PodStats{Pod: name, Node: node}}
			pods[name] = p
			order = append(order, name)
		}
		if p.Project == "" {
			p.Project = c.Labels[api.LabelProject]
		}
		if p.Service == "" {
			p.Service = c.Labels[api.LabelService]
		}
		s, ok := samples[c.ID]
		if !ok {
			p.missing = true
			continue
		}
		p.CPUSeconds += float64(s.CPUStats.CPUUsage.TotalUsage) / 1e9
		if withCPU {
			p.CPUPercent += cpuPercent(s)
		}
		p.MemoryBytes += workingSet(s.MemoryStats)
		rx, tx := netBytes(s.Networks)
		if c.Labels[LabelInfra] == "true" {
			p.infra = true
			p.NetRxBytes, p.NetTxBytes = rx, tx
			continue
		}
		p.MemoryLimitBytes = addCapped(p.MemoryLimitBytes, s.MemoryStats.Limit)
		p.rx += rx
		p.tx += tx
	}
	out := make([]api.PodStats, 0, len(order))
	for _, name := range order {
		p := pods[name]
		if p.missing {
			continue
		}
		if !p.infra {
			p.NetRxBytes, p.NetTxBytes = p.rx, p.tx
		}
		if memTotal > 0 && (p.MemoryLimitBytes == 0 || p.MemoryLimitBytes > memTotal) {
			p.MemoryLimitBytes = memTotal
		}
		if p.MemoryLimitBytes > 0 {
			p.MemoryPercent = float64(p.MemoryBytes) / float64(p.MemoryLimitBytes) * 100
		}
		out = append(out, p.PodStats)
	}
	return out
}

// cpuPercent is a container's CPU use between s's precpu_stats and
// cpu_stats, as `docker stats` computes it: the container's share of the
// host's CPU time over the interval, times the online CPUs (100 is one
// CPU busy). 0 without a previous read.
func cpuPercent(s container.StatsResponse) float64 {
	if s.PreCPUStats.SystemUsage == 0 {
		return 0 // a one-shot read: no interval
	}
	cpuDelta := float64(s.CPUStats.CPUUsage.TotalUsage) - float64(s.PreCPUStats.CPUUsage.TotalUsage)
	systemDelta := float64(s.CPUStats.SystemUsage) - float64(s.PreCPUStats.SystemUsage)
	cpus := float64(s.CPUStats.OnlineCPUs)
	if cpus == 0 {
		cpus = float64(len(s.CPUStats.CPUUsage.PercpuUsage))
	}
	if systemDelta <= 0 || cpuDelta <= 0 {
		return 0
	}
	return cpuDelta / systemDelta * cpus * 100
}

// workingSet is a container's memory without its inactive file cache, as
// `docker stats` (and cAdvisor) count it: usage minus total_inactive_file
// on cgroup v1, minus inactive_file on cgroup v2.
func workingSet(m container.MemoryStats) uint64 {
	if v, ok := m.Stats["total_inactive_file"]; ok && v < m.Usage { // cgroup v1
		return m.Usage - v
	}
	if v := m.Stats["inactive_file"]; v < m.Usage {
		return m.Usage - v
	}
	return m.Usage
}

// netBytes sums the bytes received and sent over a container's interfaces.
func netBytes(nets map[string]container.NetworkStats) (rx, tx uint64) {
	for _, n := range nets {
		rx += n.RxBytes
		tx += n.TxBytes
	}
	return rx, tx
}

// addCapped adds without wrapping round: cgroup v1 reports no limit as
// nearly 2^63.
func addCapped(a, b uint64) uint64 {
	if a+b < a {
		return math.MaxUint64
	}
	return a + b
}
