package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/devhq/dev/bench/results"
)

// TestDatapathBenchmark measures the kernel data path across nodes: on three
// simulated hosts, one pod on h2, load generated from h1's network namespace
// (bench/httpload, keep-alive connections) straight to the pod's IP (over
// the VXLAN overlay), through its VIP, through the published port on h1 (the
// routing mesh: DNAT to h2, masqueraded) and on h2 (DNAT to a local pod).
// DEV_BENCH=1 runs it; DEV_BENCH_RUNS=N runs (default 3), paths interleaved.
func TestDatapathBenchmark(t *testing.T) {
	if os.Getenv("DEV_BENCH") == "" {
		t.Skip("a benchmark: set DEV_BENCH=1 to run it (DEV_BENCH_RUNS=N runs, default 3)")
	}
	runs := benchRuns(t, 3)
	const (
		dur   = "3s"
		conns = "16"
	)
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	load := filepath.Join(t.TempDir(), "httpload")
	build := exec.Command("go", "build", "-o", load, "./bench/httpload")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build httpload: %v\n%s", err, out)
	}

	hosts := newHosts(t, 3)
	ms := newMultiCluster(t, hosts, nil)
	compose := writeTemp(t, "name: e2edpb\nservices:\n  web:\n    image: "+testImage+"\n    command: [\"serve\"]\n"+
		"    ports: [\"18880:8080\"]\n    deploy:\n      placement:\n        constraints: [\"node.hostname==h2\"]\n")
	ms[0].mustDev(t, "up", "-d", "-f", compose)
	pods := running(ms[0].pods(t, "e2edpb"), "web")
	if len(pods) != 1 || pods[0].Node != "h2" {
		t.Fatalf("web pods %+v, want one on h2", pods)
	}
	var svcs []serviceRow
	if err := json.Unmarshal([]byte(ms[0].mustDev(t, "services", "-p", "e2edpb", "-o", "json")), &svcs); err != nil || len(svcs) != 1 {
		t.Fatalf("dev services: %v %v", svcs, err)
	}
	paths := []struct{ label, url string }{
		{"direct to the pod on h2 (overlay)", "http://" + pods[0].IP + ":8080/"},
		{"service VIP -> pod on h2", "http://" + svcs[0].VIP + ":8080/"},
		{"published port on h1 -> pod on h2 (routing mesh)", "http://" + hosts[0].IP + ":18880/"},
		{"published port on h2 -> local pod", "http://" + hosts[1].IP + ":18880/"},
	}
	rps := map[string][]float64{}
	p99 := map[string][]float64{}
	for range runs {
		for _, p := range paths {
			out, err := hosts[0].Command(nil, load, "-rps", "-c", conns, "-d", dur, "-url", p.url).Output()
			f := strings.Fields(string(out))
			if err != nil || len(f) != 2 {
				t.Fatalf("httpload %s from h1: %v %q", p.url, err, out)
			}
			r, _ := strconv.ParseFloat(f[0], 64)
			l, _ := strconv.ParseFloat(f[1], 64)
			rps[p.label] = append(rps[p.label], r)
			p99[p.label] = append(p99[p.label], l)
		}
	}
	out := filepath.Join(results.Dir(), "datapath-3-nodes.jsonl")
	note := fmt.Sprintf("3 simulated hosts (network namespaces on one 2-core machine, one Docker Engine each), load from h1's "+
		"namespace, one pod on h2, %s keep-alive connections, %s per run, paths interleaved", conns, dur)
	var b strings.Builder
	fmt.Fprintf(&b, "data path across nodes (%d runs), appended to %s:\n", runs, out)
	for _, p := range paths {
		recs := []results.Record{
			{Measure: "datapath req/s, 3 nodes", Case: p.label, Tool: "dev", Unit: "req/s", HigherIsBetter: true, Runs: rps[p.label], Note: note},
			{Measure: "datapath p99, 3 nodes", Case: p.label, Tool: "dev", Unit: "µs", Runs: p99[p.label], Note: note},
		}
		if err := results.Append(out, recs...); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "  %-50s req/s median %8.0f %v  p99 µs median %6.0f\n", p.label, recs[0].Median(), rps[p.label], recs[1].Median())
	}
	t.Log(b.String())
}
