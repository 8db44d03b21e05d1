package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/raftstore"
	"github.com/devhq/dev/cluster/state"
	"github.com/devhq/dev/dns"
	"github.com/devhq/dev/gossip"
	"github.com/devhq/dev/proxy"
)

// requestBuckets are the histograms' buckets, in seconds: requests take
// from a millisecond (a read) to half a minute (a long apply).
var requestBuckets = []float64{.001, .005, .01, .05, .1, .5, 1, 5, 30}

// metrics are the node's Prometheus metrics: what the state, raft,
// gossip and the Engine's stats of the node's pods say at each scrape
// (collectors read them then: nothing is kept in step; the pods' stats are
// kept a few seconds, podmetrics.go), and what the components tell of as it
// happens through their hooks: the API's and the ingress router's requests,
// raft's writes, DNS queries and the data path's syncs.
type metrics struct {
	reg        *prometheus.Registry
	api        *prometheus.HistogramVec
	ingress    *prometheus.HistogramVec
	raftApply  prometheus.Histogram
	dnsQueries *prometheus.CounterVec
	dpRules    prometheus.Gauge
	dpSync     prometheus.Histogram
}

// syncBuckets are the data path's sync buckets, in seconds: an Apply
// takes from a tenth of a millisecond (nothing changed) to seconds (a
// table of thousands of services, written whole).
var syncBuckets = []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5}

// newMetrics makes the node's registry with the series the components'
// hooks feed (made before them: raft takes its hook when it opens); watch
// adds the collectors that read raft, gossip and the state.
func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		api: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dev_api_request_duration_seconds", Help: "API requests by route and status code.",
			Buckets: requestBuckets,
		}, []string{"route", "code"}),
		ingress: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dev_ingress_request_duration_seconds", Help: "Requests through the ingress router by route (host and path) and status class.",
			Buckets: requestBuckets,
		}, []string{"host", "path", "service", "code"}),
		raftApply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "dev_raft_apply_duration_seconds", Help: "Writes this node made as the leader, from proposal until applied to its state.",
			Buckets: requestBuckets,
		}),
		dnsQueries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dev_dns_queries_total", Help: "Queries the cluster DNS server answered, by how: answered (a cluster name), nxdomain, forwarded (to an upstream), refused, servfail.",
		}, []string{"result"}),
		dpRules: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dev_datapath_rules", Help: "What the data path's nftables table holds for the services: set and map elements (VIPs, endpoints, published ports) and generated chains.",
		}),
		dpSync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "dev_datapath_sync_seconds", Help: "How long each apply of the services to the kernel took (failed ones included).",
			Buckets: syncBuckets,
		}),
	}
	for _, r := range dns.Results { // every result shows, at 0 until counted
		m.dnsQueries.WithLabelValues(r)
	}
	m.reg.MustRegister(m.api, m.ingress, m.raftApply, m.dnsQueries, m.dpRules, m.dpSync,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// watch adds the collectors that read raft, gossip, the state and the
// node's pods at each scrape; stats reads its pods' use of the Engine
// (nil: none but their restarts).
func (m *metrics) watch(node string, r *raftstore.Raft, g *gossip.Gossip, stats podStatser, log *slog.Logger) {
	m.reg.MustRegister(&stateCollector{node: node, r: r, g: g},
		&podCollector{node: node, state: r.State, stats: stats, log: log.With("component", "metrics")})
}

// observeRaftApply records a write raft applied (raftstore.Config.ObserveApply).
func (m *metrics) observeRaftApply(took time.Duration) { m.raftApply.Observe(took.Seconds()) }

// observeDNS counts a query by how it was answered (dns.Config.Observe).
func (m *metrics) observeDNS(result string) { m.dnsQueries.WithLabelValues(result).Inc() }

// observeSync records an apply of the data path (proxy.RunConfig.Observe).
func (m *metrics) observeSync(s proxy.Sync) {
	m.dpRules.Set(float64(s.Rules))
	m.dpSync.Observe(s.Took.Seconds())
}

// observeAPI records an API request (apiserver.Options.Observe).
func (m *metrics) observeAPI(route string, code int, took time.Duration) {
	if route == "" {
		route = "unmatched"
	}
	m.api.WithLabelValues(route, strconv.Itoa(code)).Observe(took.Seconds())
}

// observeIngress records a request for a route (proxy.IngressConfig.Observe,
// through ingressObserver).
func (m *metrics) observeIngress(a *proxy.Access) {
	m.ingress.WithLabelValues(a.Route.Host, a.Route.Path, a.Route.Service, strconv.Itoa(a.Status/100)+"xx").Observe(a.Took.Seconds())
}

// handler serves the metrics in Prometheus' text format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{MaxRequestsInFlight: 4, Timeout: 10 * time.Second})
}

// serve serves the metrics on a plain address for a scraper
// (--metrics-addr) until ctx ends.
func (m *metrics) serve(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen metrics on %s (pick another --metrics-addr): %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve metrics: %w", err)
	}
	return nil
}

// stateCollector reads raft, gossip and the state at each scrape.
type stateCollector struct {
	node string
	r    *raftstore.Raft
	g    *gossip.Gossip
}

var (
	descLeader  = prometheus.NewDesc("dev_raft_leader", "1 on the node that leads the cluster (the master), 0 elsewhere.", nil, nil)
	descIndex   = prometheus.NewDesc("dev_raft_index", "Raft indexes: commit, applied (to the state) and last (in the log).", []string{"kind"}, nil)
	descMembers = prometheus.NewDesc("dev_gossip_members", "Gossip members by status, as this node sees them.", []string{"status"}, nil)
	descNodes   = prometheus.NewDesc("dev_nodes", "The cluster's nodes by status, from the state.", []string{"status"}, nil)
	descPods    = prometheus.NewDesc("dev_pods", "Pods assigned to this node by state.", []string{"state"}, nil)
	descAlloc   = prometheus.NewDesc("dev_node_allocatable", "What this node offers to pods: CPUs, memory bytes.", []string{"resource"}, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLeader, descIndex, descMembers, descNodes, descPods, descAlloc} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	leader := 0.0
	if c.r.IsLeader() {
		leader = 1
	}
	ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, leader)
	commit, applied, last := c.r.Indexes()
	for kind, v := range map[string]uint64{"commit": commit, "applied": applied, "last": last} {
		ch <- prometheus.MustNewConstMetric(descIndex, prometheus.GaugeValue, float64(v), kind)
	}
	members := map[string]int{}
	for _, m := range c.g.Members() {
		members[m.Status]++
	}
	for status, n := range members {
		ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(n), status)
	}
	st := c.r.State()
	nodes := map[string]int{}
	for _, n := range st.Nodes() {
		nodes[n.Status]++
		if n.Name == c.node {
			ch <- prometheus.MustNewConstMetric(descAlloc, prometheus.GaugeValue, float64(n.Allocatable.NanoCPUs)/1e9, "cpu")
			ch <- prometheus.MustNewConstMetric(descAlloc, prometheus.GaugeValue, float64(n.Allocatable.MemoryBytes), "memory_bytes")
		}
	}
	for status, n := range nodes {
		ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, float64(n), status)
	}
	pods := map[string]int{}
	for _, p := range st.Pods(state.PodFilter{Node: c.node}) {
		s := p.Status.State
		if s == "" {
			s = api.PodPending
		}
		pods[s]++
	}
	for s, n := range pods {
		ch <- prometheus.MustNewConstMetric(descPods, prometheus.GaugeValue, float64(n), s)
	}
}
