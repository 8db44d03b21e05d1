package api

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// IngressAccess is one request a node's ingress router routed: a line of
// its access log (`dev logs --ingress`).
type IngressAccess struct {
	// Seq orders one node's entries; it only grows, across restarts of the
	// node too (it starts from the time the log was made).
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"` // when the request came
	Node   string    `json:"node"` // whose router answered
	Client string    `json:"client"`
	Host   string    `json:"host"`
	Path   string    `json:"path"` // the request's path, cut at MaxAccessPath bytes
	Method string    `json:"method"`
	Proto  string    `json:"proto"` // the client's: HTTP/1.1, HTTP/2.0
	Status int       `json:"status"`
	// Bytes is the size of the response body sent to the client.
	Bytes    int64         `json:"bytes"`
	Duration time.Duration `json:"duration_ns"`
	// Project and Service own the route (RoutePath its path prefix), Pod
	// is the pod that answered ("" when none did: no ready pod, none
	// reachable, a redirect to HTTPS).
	Project   string `json:"project"`
	Service   string `json:"service"`
	RoutePath string `json:"route_path"`
	Pod       string `json:"pod,omitempty"`
}

// MaxAccessPath is the most of a request's path an access log keeps.
const MaxAccessPath = 512

// String is the entry as `dev logs --ingress` prints it (after the
// service's prefix): time, node, client, request, status, bytes, duration
// and the pod.
func (a IngressAccess) String() string {
	pod := a.Pod
	if pod == "" {
		pod = "-"
	}
	return fmt.Sprintf("%s %s %s \"%s %s%s %s\" %d %d %s %s",
		a.Time.UTC().Format("2006-01-02T15:04:05.000Z"), a.Node, a.Client, a.Method, a.Host, a.Path, a.Proto,
		a.Status, a.Bytes, a.Duration.Round(time.Microsecond), pod)
}

// IngressLogQuery selects the access log entries of GET /v1/ingress/log:
// those of Project's routes (empty: every project's) and, when Services
// is not empty, of those services' routes.
type IngressLogQuery struct {
	Project  string
	Services []string
	// Tail keeps the last Tail entries of the answer (< 0: all of them).
	Tail int
	// After is the cursor of a follow: for each node, the last Seq seen;
	// only entries after it are answered (a node not in it: all of its).
	After map[string]uint64
	// Wait > 0 makes it a blocking query: the answer comes once a node has
	// an entry after the cursor, or when Wait passes.
	Wait time.Duration
	// Local asks the node for its own log only (what a node asks its
	// peers); otherwise the node gathers every node's.
	Local bool
}

// Matches reports whether the query selects entry a.
func (q IngressLogQuery) Matches(a *IngressAccess) bool {
	return (q.Project == "" || a.Project == q.Project) &&
		(len(q.Services) == 0 || slices.Contains(q.Services, a.Service))
}

// Values encodes the query for GET /v1/ingress/log.
func (q IngressLogQuery) Values() url.Values {
	v := url.Values{}
	if q.Project != "" {
		v.Set("project", q.Project)
	}
	for _, s := range q.Services {
		v.Add("service", s)
	}
	if q.Tail >= 0 {
		v.Set("tail", strconv.Itoa(q.Tail))
	}
	for _, n := range slices.Sorted(maps.Keys(q.After)) {
		v.Add("after", n+":"+strconv.FormatUint(q.After[n], 10))
	}
	if q.Wait > 0 {
		v.Set("wait", q.Wait.String())
	}
	if q.Local {
		v.Set("local", "1")
	}
	return v
}

// IngressLogQueryOf decodes the query of GET /v1/ingress/log.
func IngressLogQueryOf(v url.Values) (IngressLogQuery, error) {
	q := IngressLogQuery{Project: v.Get("project"), Services: v["service"], Tail: -1, Local: v.Get("local") == "1"}
	if s := v.Get("tail"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return q, fmt.Errorf("tail %q: want a number >= 0", s)
		}
		q.Tail = n
	}
	for _, s := range v["after"] {
		node, seq, ok := strings.Cut(s, ":")
		n, err := strconv.ParseUint(seq, 10, 64)
		if !ok || node == "" || err != nil {
			return q, fmt.Errorf("after %q: want NODE:SEQ", s)
		}
		if q.After == nil {
			q.After = map[string]uint64{}
		}
		q.After[node] = n
	}
	if s := v.Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return q, fmt.Errorf("wait %q: want a duration like 30s", s)
		}
		q.Wait = d
	}
	return q, nil
}

// IngressLog answers GET /v1/ingress/log: the entries, oldest first, and
// the cursor to follow from.
type IngressLog struct {
	Entries []IngressAccess `json:"entries"`
	// Cursor is, for each node asked, the last Seq it has (the query's
	// After for a node that did not answer): the next query's After.
	Cursor map[string]uint64 `json:"cursor"`
	// Errors say which nodes' entries are missing and why ("node n2: ...").
	Errors []string `json:"errors,omitempty"`
}

// Sort orders the entries by time, then node and Seq.
func (l *IngressLog) Sort() {
	slices.SortStableFunc(l.Entries, func(a, b IngressAccess) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		if c := strings.Compare(a.Node, b.Node); c != 0 {
			return c
		}
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
}

// IngressLog returns the ingress routers' access log entries q selects
// (GET /v1/ingress/log); with q.Wait, a blocking query.
func (c *HTTPClient) IngressLog(ctx context.Context, q IngressLogQuery) (IngressLog, error) {
	var r IngressLog
	hc := c.hc
	if q.Wait > 0 {
		hc = c.stream // no client timeout: the server answers within wait
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, q.Wait+30*time.Second)
		defer cancel()
	}
	_, err := c.do(ctx, hc, http.MethodGet, "/v1/ingress/log?"+q.Values().Encode(), nil, &r)
	return r, err
}
