package node

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/devhq/dev/dns"
	"github.com/devhq/dev/proxy"
)

// TestMetricsAddr: --metrics-addr serves the registry's metrics on a plain
// address, GET /metrics only, until the context ends.
func TestMetricsAddr(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	m := &metrics{reg: prometheus.NewRegistry()}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "dev_test_total", Help: "test"})
	c.Add(3)
	m.reg.MustRegister(c)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.serve(ctx, addr) }()
	var body string
	waitFor(t, 5*time.Second, func() error {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return nil
	})
	if !strings.Contains(body, "dev_test_total 3") {
		t.Errorf("GET /metrics:\n%s", body)
	}
	resp, err := http.Post("http://"+addr+"/metrics", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: %s, want 405", resp.Status)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not return after its context ended")
	}
}

// TestMetricsHooks: what the components' hooks are told (raft's writes,
// DNS queries, the data path's syncs) is in the registry's series, every
// DNS result present from the start.
func TestMetricsHooks(t *testing.T) {
	m := newMetrics()
	fams := gather(t, m)
	for _, r := range dns.Results {
		if v, ok := sample(fams, "dev_dns_queries_total", r); !ok || v != 0 {
			t.Errorf("before any query: dev_dns_queries_total{result=%q} = %v (present %v), want 0", r, v, ok)
		}
	}
	if v, ok := sample(fams, "dev_raft_apply_duration_seconds", ""); !ok || v != 0 {
		t.Errorf("before any write: dev_raft_apply_duration_seconds count = %v (present %v), want 0", v, ok)
	}

	m.observeRaftApply(3 * time.Millisecond)
	m.observeRaftApply(40 * time.Millisecond)
	for _, r := range []string{dns.ResultAnswered, dns.ResultAnswered, dns.ResultNXDomain, dns.ResultForwarded, dns.ResultServFail} {
		m.observeDNS(r)
	}
	m.observeSync(proxy.Sync{Rules: 7, Took: 2 * time.Millisecond})
	m.observeSync(proxy.Sync{Rules: 12, Took: time.Millisecond})

	fams = gather(t, m)
	tests := []struct {
		name, label string
		want        float64
	}{
		{"dev_raft_apply_duration_seconds", "", 2},
		{"dev_dns_queries_total", dns.ResultAnswered, 2},
		{"dev_dns_queries_total", dns.ResultNXDomain, 1},
		{"dev_dns_queries_total", dns.ResultForwarded, 1},
		{"dev_dns_queries_total", dns.ResultRefused, 0},
		{"dev_dns_queries_total", dns.ResultServFail, 1},
		{"dev_datapath_rules", "", 12},
		{"dev_datapath_sync_seconds", "", 2},
	}
	for _, tt := range tests {
		if got, ok := sample(fams, tt.name, tt.label); !ok || got != tt.want {
			t.Errorf("%s{%s} = %v (present %v), want %v", tt.name, tt.label, got, ok, tt.want)
		}
	}
	if h := fams["dev_raft_apply_duration_seconds"].GetMetric()[0].GetHistogram(); h.GetSampleSum() < 0.042 || h.GetSampleSum() > 0.044 {
		t.Errorf("dev_raft_apply_duration_seconds sum = %v, want 0.043", h.GetSampleSum())
	}
}

// gather reads the registry as a scrape would.
func gather(t *testing.T, m *metrics) map[string]*dto.MetricFamily {
	t.Helper()
	got, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	fams := map[string]*dto.MetricFamily{}
	for _, f := range got {
		fams[f.GetName()] = f
	}
	return fams
}

// sample is the value of family name's series (a counter's or gauge's
// value, a histogram's count) whose only label, if any, is result.
func sample(fams map[string]*dto.MetricFamily, name, result string) (float64, bool) {
	for _, s := range fams[name].GetMetric() {
		if result != "" && (len(s.GetLabel()) != 1 || s.GetLabel()[0].GetValue() != result) {
			continue
		}
		switch {
		case s.Counter != nil:
			return s.Counter.GetValue(), true
		case s.Gauge != nil:
			return s.Gauge.GetValue(), true
		case s.Histogram != nil:
			return float64(s.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}
