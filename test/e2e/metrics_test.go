package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads the metrics of the agent whose API socket is sock
// (GET /metrics) and parses them as Prometheus would.
func scrape(sock string) (map[string]*dto.MetricFamily, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	resp, err := c.Get("http://agent/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// metricValue is the value of the sample of family name whose labels
// include labels (a gauge's value, a histogram's count), and whether
// there is one.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		match := 0
		for _, lp := range m.GetLabel() {
			if v, ok := labels[lp.GetName()]; ok && v == lp.GetValue() {
				match++
			}
		}
		if match != len(labels) {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// TestMetricsSeries: after a dev up, the node's /metrics has raft's apply
// latency (the up's writes, this node leading), DNS queries counted by
// result (a pod resolving a service name: answered) and the data path's
// rules (a service with a VIP and an endpoint) and syncs.
func TestMetricsSeries(t *testing.T) {
	c := newCluster(t)
	compose := writeTemp(t, `name: e2emetrics
services:
  web:
    image: `+testImage+`
    command: ["serve"]
  client:
    image: `+testImage+`
    command: ["serve"]
`)
	c.mustDev("up", "-d", "-f", compose)
	wantRunning(c, "e2emetrics", "web", 1, 60*time.Second)
	wantRunning(c, "e2emetrics", "client", 1, 60*time.Second)
	// A pod reaches web by its name: a query the cluster DNS answers.
	eventually(t, 30*time.Second, "client reaching web by name", func() error {
		_, err := c.dev("exec", "-p", "e2emetrics", "client", "/app", "health", "http://web:8080/health")
		return err
	})

	eventually(t, 30*time.Second, "raft, DNS and data path series in /metrics", func() error {
		fams, err := scrape(filepath.Join(c.dir, "dev.sock"))
		if err != nil {
			return err
		}
		if v, ok := metricValue(fams, "dev_raft_apply_duration_seconds", nil); !ok || v <= 0 {
			return fmt.Errorf("dev_raft_apply_duration_seconds count = %v (present %v), want more than 0", v, ok)
		}
		for _, r := range []string{"answered", "nxdomain", "forwarded", "refused", "servfail"} {
			if _, ok := metricValue(fams, "dev_dns_queries_total", map[string]string{"result": r}); !ok {
				return fmt.Errorf("no dev_dns_queries_total{result=%q}", r)
			}
		}
		if v, _ := metricValue(fams, "dev_dns_queries_total", map[string]string{"result": "answered"}); v <= 0 {
			return fmt.Errorf("dev_dns_queries_total{result=\"answered\"} = %v after a pod resolved web, want more than 0", v)
		}
		if v, ok := metricValue(fams, "dev_datapath_rules", nil); !ok || v <= 0 {
			return fmt.Errorf("dev_datapath_rules = %v (present %v) with a service running, want more than 0", v, ok)
		}
		if v, ok := metricValue(fams, "dev_datapath_sync_seconds", nil); !ok || v <= 0 {
			return fmt.Errorf("dev_datapath_sync_seconds count = %v (present %v), want more than 0", v, ok)
		}
		return nil
	})
}
