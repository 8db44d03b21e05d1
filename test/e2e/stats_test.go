package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
)

// TestStats: dev stats --no-stream -o json lists every running pod of the
// project with the memory it uses (under its limit where it has one) and
// the bytes its network namespace moved; a SERVICE argument filters; the
// node's /metrics has the CPU, memory and restart series of each running
// pod.
func TestStats(t *testing.T) {
	c := newCluster(t)
	compose := writeTemp(t, `name: e2estats
services:
  web:
    image: `+testImage+`
    command: ["serve"]
    deploy:
      replicas: 2
      resources:
        limits:
          memory: 64M
  worker:
    image: `+testImage+`
    command: ["serve"]
  metrics:
    image: `+testImage+`
    command: ["sleep", "1h"]
    network_mode: service:worker
`)
	c.mustDev("up", "-d", "-f", compose)
	web := wantRunning(c, "e2estats", "web", 2, 60*time.Second)
	wantRunning(c, "e2estats", "worker", 1, 60*time.Second)
	var pods []string
	for _, r := range c.ps("e2estats") {
		if r.State == "running" {
			pods = append(pods, r.Name)
		}
	}
	slices.Sort(pods)

	// Pod-to-pod traffic, for the network columns: worker-1 asks web-1.
	c.mustDev("exec", "-p", "e2estats", "worker", "/app", "health", "http://"+web[0].IP+":8080/health")

	stats := func(args ...string) []api.PodStats {
		t.Helper()
		out := c.mustDev(append([]string{"stats", "-p", "e2estats", "--no-stream", "-o", "json"}, args...)...)
		var rows []api.PodStats
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("parse dev stats --no-stream -o json: %v\n%s", err, out)
		}
		return rows
	}
	rows := stats()
	var got []string
	for _, r := range rows {
		got = append(got, r.Pod)
		if r.Project != "e2estats" || r.Node != c.node || r.MemoryBytes == 0 || r.CPUSeconds <= 0 ||
			r.MemoryLimitBytes < r.MemoryBytes || r.MemoryPercent <= 0 || r.CPUPercent < 0 {
			t.Errorf("dev stats: %+v: want its project, node, some memory under its limit, some CPU time", r)
		}
		switch r.Pod {
		case web[0].Name:
			if r.NetRxBytes == 0 || r.NetTxBytes == 0 {
				t.Errorf("dev stats: %s answered a request but its network moved %d/%d bytes", r.Pod, r.NetRxBytes, r.NetTxBytes)
			}
			fallthrough
		case web[1].Name:
			if r.MemoryLimitBytes != 64<<20 {
				t.Errorf("dev stats: %s has a limit of %d bytes, want its 64M", r.Pod, r.MemoryLimitBytes)
			}
		}
	}
	if !slices.Equal(got, pods) {
		t.Errorf("dev stats lists %v, want the running pods %v", got, pods)
	}
	if rows := stats("worker"); len(rows) != 1 || rows[0].Service != "worker" {
		t.Errorf("dev stats worker: %+v, want the worker pod only", rows)
	}
	if out := c.mustDev("stats", "-p", "e2estats", "--no-stream"); !containsAll(out, append([]string{"CPU %", "MEM USAGE / LIMIT", "NET I/O"}, pods...)...) {
		t.Errorf("dev stats --no-stream:\n%s", out)
	}

	// The node's metrics: CPU, memory and restarts of each running pod.
	eventually(t, 30*time.Second, "the pods' series in /metrics", func() error {
		fams, err := scrape(filepath.Join(c.dir, "dev.sock"))
		if err != nil {
			return err
		}
		for _, p := range pods {
			for _, name := range []string{"dev_pod_cpu_seconds_total", "dev_pod_memory_working_set_bytes", "dev_pod_network_receive_bytes_total", "dev_pod_restarts_total"} {
				v, ok := metricValue(fams, name, map[string]string{"project": "e2estats", "pod": p})
				if !ok {
					return fmt.Errorf("no %s series for pod %s", name, p)
				}
				if name == "dev_pod_cpu_seconds_total" && v <= 0 || name == "dev_pod_memory_working_set_bytes" && v <= 0 {
					return fmt.Errorf("%s{pod=%s} = %v, want more than 0", name, p, v)
				}
			}
		}
		return nil
	})
}

// containsAll reports whether s contains every one of subs.
func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
