package docker

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/docker/docker/api/types/container"

	"github.com/devhq/dev/cluster/api"
)

// readSample reads a stats answer of the Engine from testdata/stats.
func readSample(t *testing.T, name string) container.StatsResponse {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "stats", name))
	if err != nil {
		t.Fatal(err)
	}
	var s container.StatsResponse
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return s
}

const mib = 1 << 20

func TestStatsOfOneContainer(t *testing.T) {
	tests := []struct {
		name       string
		file       string
		cpuPercent float64
		workingSet uint64
		rx, tx     uint64
	}{
		// A one-shot read has no previous CPU read: no percentage.
		{name: "cgroup v2, one-shot", file: "web-cgroup2.json", cpuPercent: 0, workingSet: 50*mib - 10*mib},
		{name: "infra: the pod's interfaces", file: "web-infra-cgroup2.json", workingSet: 4096, rx: 2000, tx: 1000},
		// 1 s of CPU over 2 s of the host's 2 CPUs: one CPU busy.
		{name: "cgroup v1, with a previous read; CPUs from percpu_usage", file: "sidecar-cgroup1.json", cpuPercent: 100, workingSet: 100*mib - 20*mib},
		{name: "inactive file over usage: usage", file: "oneoff-cgroup2.json", workingSet: 1 * mib, rx: 42, tx: 24},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := readSample(t, tt.file)
			if got := cpuPercent(s); math.Abs(got-tt.cpuPercent) > 1e-9 {
				t.Errorf("cpuPercent = %v, want %v", got, tt.cpuPercent)
			}
			if got := workingSet(s.MemoryStats); got != tt.workingSet {
				t.Errorf("workingSet = %d, want %d", got, tt.workingSet)
			}
			if rx, tx := netBytes(s.Networks); rx != tt.rx || tx != tt.tx {
				t.Errorf("netBytes = %d, %d; want %d, %d", rx, tx, tt.rx, tt.tx)
			}
		})
	}
}

// TestCPUPercentOfTwoReads: two one-shot reads a second apart give the
// interval `docker stats` computes from (PodStats puts the first read's
// cpu_stats in the second's precpu_stats).
func TestCPUPercentOfTwoReads(t *testing.T) {
	first := readSample(t, "web-cgroup2.json")
	second := first
	second.CPUStats.CPUUsage.TotalUsage += 500_000_000 // half a CPU second
	second.CPUStats.SystemUsage += 4_000_000_000       // one second of the host's 4 CPUs
	second.PreCPUStats = first.CPUStats
	if got := cpuPercent(second); math.Abs(got-50) > 1e-9 {
		t.Errorf("cpuPercent = %v, want 50", got)
	}
	second.CPUStats.SystemUsage = first.CPUStats.SystemUsage // no time passed
	if got := cpuPercent(second); got != 0 {
		t.Errorf("cpuPercent with no interval = %v, want 0", got)
	}
}

func TestPodStats(t *testing.T) {
	const hostMem = 8 << 30
	labels := func(pod, service string, more ...string) map[string]string {
		l := map[string]string{api.LabelPod: pod, api.LabelProject: "shop"}
		if service != "" {
			l[api.LabelService] = service
		}
		for i := 0; i+1 < len(more); i += 2 {
			l[more[i]] = more[i+1]
		}
		return l
	}
	web := []statsContainer{
		{ID: "infra", Labels: labels("shop-web-1", "", LabelInfra, "true")},
		{ID: "web", Labels: labels("shop-web-1", "web")},
		{ID: "metrics", Labels: labels("shop-web-1", "web", LabelSidecar, "metrics")},
	}
	oneOff := statsContainer{ID: "run", Labels: labels("shop-web-run-1a2b", "web")}
	samples := map[string]container.StatsResponse{
		"infra":   readSample(t, "web-infra-cgroup2.json"),
		"web":     readSample(t, "web-cgroup2.json"),
		"metrics": readSample(t, "sidecar-cgroup1.json"),
		"run":     readSample(t, "oneoff-cgroup2.json"),
	}
	webWant := api.PodStats{
		Pod: "shop-web-1", Project: "shop", Service: "web", Node: "n1",
		CPUPercent:       100,                    // the sidecar's; the others have no previous read
		CPUSeconds:       2.5 + 0.001 + 3,        // every container's
		MemoryBytes:      40*mib + 4096 + 80*mib, // every container's working set
		MemoryLimitBytes: hostMem,                // the sidecar has none: the node's
		NetRxBytes:       2000, NetTxBytes: 1000, // the infra container's
	}
	webWant.MemoryPercent = float64(webWant.MemoryBytes) / hostMem * 100

	t.Run("a pod: its containers summed, the network of its infra container", func(t *testing.T) {
		got := podStats("n1", append(web, oneOff), samples, hostMem, true)
		if len(got) != 2 {
			t.Fatalf("got %d pods, want 2: %+v", len(got), got)
		}
		assertPodStats(t, got[0], webWant)
		assertPodStats(t, got[1], api.PodStats{
			Pod: "shop-web-run-1a2b", Project: "shop", Service: "web", Node: "n1",
			CPUSeconds: 4, MemoryBytes: 1 * mib, MemoryLimitBytes: hostMem,
			MemoryPercent: float64(mib) / hostMem * 100,
			NetRxBytes:    42, NetTxBytes: 24, // no infra container: its own
		})
	})
	t.Run("limits of the service and sidecars are summed", func(t *testing.T) {
		limited := map[string]container.StatsResponse{}
		for k, v := range samples {
			limited[k] = v
		}
		m := limited["metrics"]
		m.MemoryStats.Limit = 64 * mib
		limited["metrics"] = m
		got := podStats("n1", web, limited, hostMem, true)
		if len(got) != 1 || got[0].MemoryLimitBytes != 256*mib+64*mib {
			t.Fatalf("got %+v, want a limit of 320 MiB", got)
		}
	})
	t.Run("without a window: no CPU %", func(t *testing.T) {
		got := podStats("n1", web, samples, hostMem, false)
		if len(got) != 1 || got[0].CPUPercent != 0 || math.Abs(got[0].CPUSeconds-webWant.CPUSeconds) > 1e-6 {
			t.Fatalf("got %+v", got)
		}
	})
	t.Run("a container not read leaves its pod out", func(t *testing.T) {
		partial := map[string]container.StatsResponse{"infra": samples["infra"], "web": samples["web"], "run": samples["run"]}
		got := podStats("n1", append(web, oneOff), partial, hostMem, true)
		if len(got) != 1 || got[0].Pod != "shop-web-run-1a2b" {
			t.Fatalf("got %+v, want the one-off pod only", got)
		}
	})
	t.Run("the node's memory unknown: the limits as reported", func(t *testing.T) {
		got := podStats("n1", web[:2], samples, 0, true)
		if len(got) != 1 || got[0].MemoryLimitBytes != 256*mib {
			t.Fatalf("got %+v, want the service's limit", got)
		}
	})
}

func assertPodStats(t *testing.T, got, want api.PodStats) {
	t.Helper()
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-6 }
	if got.Pod != want.Pod || got.Project != want.Project || got.Service != want.Service || got.Node != want.Node ||
		!near(got.CPUPercent, want.CPUPercent) || !near(got.CPUSeconds, want.CPUSeconds) ||
		got.MemoryBytes != want.MemoryBytes || got.MemoryLimitBytes != want.MemoryLimitBytes || !near(got.MemoryPercent, want.MemoryPercent) ||
		got.NetRxBytes != want.NetRxBytes || got.NetTxBytes != want.NetTxBytes {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}
