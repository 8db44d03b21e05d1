package api

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// PodStats is what one running pod uses, read from its node's Docker
// Engine: the sums over its containers (the infra container, the
// service's and its sidecars'), as `dev stats` shows them and the node's
// metrics export them.
type PodStats struct {
	Pod     string `json:"pod"`
	Project string `json:"project"`
	Service string `json:"service"`
	Node    string `json:"node"`
	// CPUPercent is the CPU the pod used over the sampling window, as
	// `docker stats` counts it: 100 is one CPU busy the whole time. 0 when
	// it was read without a window (the metrics count CPUSeconds).
	CPUPercent float64 `json:"cpu_percent"`
	// CPUSeconds is the CPU time its running containers used since they
	// started.
	CPUSeconds float64 `json:"cpu_seconds"`
	// MemoryBytes is the working set: usage without the inactive file
	// cache, as `docker stats` shows it.
	MemoryBytes uint64 `json:"memory_bytes"`
	// MemoryLimitBytes is the sum of the limits of the service's and
	// sidecars' containers, at most the node's memory (a container without
	// a limit has the node's).
	MemoryLimitBytes uint64  `json:"memory_limit_bytes"`
	MemoryPercent    float64 `json:"memory_percent"`
	// NetRxBytes and NetTxBytes are the bytes the pod's network namespace
	// (its infra container's) received and sent, over all its interfaces.
	NetRxBytes uint64 `json:"net_rx_bytes"`
	NetTxBytes uint64 `json:"net_tx_bytes"`
}

// StatsQuery selects the pods of GET /v1/stats: those of Project (empty:
// every project) and, when Services is not empty, of those services.
// Local asks the node for its own pods only (what a node asks its peers);
// otherwise the node gathers them from every node that runs one.
type StatsQuery struct {
	Project  string
	Services []string
	Local    bool
}

// Matches reports whether the query selects pod p (its node aside).
func (q StatsQuery) Matches(p *Pod) bool {
	return (q.Project == "" || p.Project == q.Project) &&
		(len(q.Services) == 0 || slices.Contains(q.Services, p.Service))
}

// Values encodes the query for GET /v1/stats.
func (q StatsQuery) Values() url.Values {
	v := url.Values{}
	if q.Project != "" {
		v.Set("project", q.Project)
	}
	for _, s := range q.Services {
		v.Add("service", s)
	}
	if q.Local {
		v.Set("local", "1")
	}
	return v
}

// StatsQueryOf decodes the query of GET /v1/stats.
func StatsQueryOf(v url.Values) StatsQuery {
	return StatsQuery{Project: v.Get("project"), Services: v["service"], Local: v.Get("local") == "1"}
}

// StatsList answers GET /v1/stats: the running pods' stats, sorted by
// pod name.
type StatsList struct {
	Pods []PodStats `json:"pods"`
	// Errors say which nodes' pods are missing and why ("node n2: ...").
	Errors []string `json:"errors,omitempty"`
}

// Sort orders the pods by name.
func (l *StatsList) Sort() {
	slices.SortFunc(l.Pods, func(a, b PodStats) int { return strings.Compare(a.Pod, b.Pod) })
}

// Stats returns the stats of the running pods q selects (GET /v1/stats).
// The node samples CPU over about a second, so the answer takes that long.
func (c *HTTPClient) Stats(ctx context.Context, q StatsQuery) (StatsList, error) {
	var r StatsList
	_, err := c.do(ctx, c.hc, http.MethodGet, "/v1/stats?"+q.Values().Encode(), nil, &r)
	return r, err
}
