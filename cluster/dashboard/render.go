package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/devhq/dev/cluster/api"
)

// sections are the parts of the page that /live re-renders; each is a
// template of the same name and an element id="sec-<name>".
var sections = []string{"summary", "nodes", "services", "placement", "events"}

// maxEvents is how many recent events the page lists.
const maxEvents = 60

type pageTemplates struct{ t *template.Template }

func parseTemplates() (*pageTemplates, error) {
	t, err := template.New("").Funcs(template.FuncMap{
		"ports":      formatPorts,
		"cpus":       func(nano int64) string { return strconv.FormatFloat(float64(nano)/1e9, 'f', -1, 64) },
		"loadPct":    loadPercent,
		"clock":      func(t time.Time) string { return t.Local().Format("15:04:05") },
		"podState":   podState,
		"ready":      func(p api.Pod) string { return p.ReadyColumn() },
		"containers": podContainers,
	}).ParseFS(webFS, "web/*.html")
	if err != nil {
		return nil, fmt.Errorf("parse dashboard templates: %w", err)
	}
	return &pageTemplates{t: t}, nil
}

// view is what the templates render.
type view struct {
	Snapshot
	Ready, Down int // nodes
	Columns     []column
	Events      []api.Event // newest first
}

// column is one node of the placement grid with the pods bound to it.
type column struct {
	Node    string
	Status  string
	Pending bool // the column of pods no node took yet
	Pods    []api.Pod
}

func (s *Server) view() view {
	snap := s.src.Snapshot()
	v := view{Snapshot: snap}
	byNode := map[string]int{}
	for _, n := range snap.Nodes {
		if n.Status == api.NodeReady {
			v.Ready++
		} else {
			v.Down++
		}
		byNode[n.Name] = len(v.Columns)
		v.Columns = append(v.Columns, column{Node: n.Name, Status: n.Status})
	}
	var pending column
	pending.Pending, pending.Node = true, "not placed"
	for _, p := range snap.Pods {
		if i, ok := byNode[p.Node]; ok {
			v.Columns[i].Pods = append(v.Columns[i].Pods, p)
		} else {
			pending.Pods = append(pending.Pods, p)
		}
	}
	if len(pending.Pods) > 0 {
		v.Columns = append(v.Columns, pending)
	}
	for _, c := range v.Columns {
		sort.Slice(c.Pods, func(i, j int) bool { return c.Pods[i].Name < c.Pods[j].Name })
	}
	evs := s.src.Events(0).Events
	for i := len(evs) - 1; i >= 0 && len(v.Events) < maxEvents; i-- {
		v.Events = append(v.Events, evs[i])
	}
	return v
}

func (s *Server) handlePage(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	if err := s.page.t.ExecuteTemplate(&buf, "page.html", s.view()); err != nil {
		s.log.Warn("render dashboard", "err", err)
		http.Error(w, "render dashboard: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}

// liveUpdate answers GET /live: the re-rendered sections as of Index.
type liveUpdate struct {
	Index    uint64            `json:"index"`
	Sections map[string]string `json:"sections"`
}

// handleLive is the page's watch: GET /live?index=N&wait=25s returns once
// the cluster state passes index N (a blocking query, as the API's watch),
// with every section rendered anew.
func (s *Server) handleLive(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if is := q.Get("index"); is != "" {
		after, err := strconv.ParseUint(is, 10, 64)
		if err != nil {
			http.Error(w, "index: want a number", http.StatusBadRequest)
			return
		}
		wait := 25 * time.Second
		if ws := q.Get("wait"); ws != "" {
			if wait, err = time.ParseDuration(ws); err != nil {
				http.Error(w, "wait: want a duration like 25s", http.StatusBadRequest)
				return
			}
		}
		ctx, cancel := context.WithTimeout(r.Context(), min(wait, time.Minute))
		if s.src.WaitIndex(ctx, after) > after {
			// Let a burst of changes (a scale, a rolling update, heartbeats
			// of many nodes) settle into one answer: at least 100ms, and 4x
			// what a render costs, so that an open page takes at most a
			// fifth of a core however large the cluster (BenchmarkLive).
			settle := max(100*time.Millisecond, 4*time.Duration(s.renderCost.Load()))
			select {
			case <-ctx.Done():
			case <-time.After(settle):
			}
		}
		cancel()
	}
	start := time.Now()
	defer func() { s.renderCost.Store(int64(time.Since(start))) }()
	v := s.view()
	up := liveUpdate{Index: v.Index, Sections: map[string]string{}}
	for _, name := range sections {
		var buf bytes.Buffer
		if err := s.page.t.ExecuteTemplate(&buf, name, v); err != nil {
			http.Error(w, "render "+name+": "+err.Error(), http.StatusInternalServerError)
			return
		}
		up.Sections[name] = buf.String()
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(up)
}

// formatPorts renders ports as compose writes them: "8080:80/tcp" for
// published ports, "80/tcp" for service ports.
func formatPorts(ps []api.PortSpec) string {
	parts := make([]string, 0, len(ps))
	for _, p := range ps {
		s := strconv.Itoa(int(p.Target))
		if p.Published != 0 {
			s = strconv.Itoa(int(p.Published)) + ":" + s
		}
		if p.Protocol != "" && p.Protocol != "tcp" {
			s += "/" + p.Protocol
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// loadPercent is a node's load average per CPU, in percent (at most 100,
// for the bar's width).
func loadPercent(n api.Node) int {
	cpus := float64(n.Allocatable.NanoCPUs) / 1e9
	if cpus <= 0 {
		cpus = 1
	}
	return min(100, int(n.Load/cpus*100+0.5))
}

// containerView is one container of a pod on the page.
type containerView struct {
	Name     string // the service's name, or the sidecar's
	State    string // as podState words it
	Restarts int
}

// podContainers lists the service's container of p and its sidecars'.
func podContainers(p api.Pod) []containerView {
	out := []containerView{{Name: p.Service, State: podState(p), Restarts: p.Status.Restarts}}
	for _, sc := range p.Status.Sidecars {
		out = append(out, containerView{Name: sc.Name, State: containerState(sc.State, sc.Health), Restarts: sc.Restarts})
	}
	return out
}

// podState is a pod's state as a word for the page and its CSS class.
func podState(p api.Pod) string {
	switch {
	case p.Deleting:
		return "stopping"
	}
	return containerState(p.Status.State, p.Status.Health)
}

// containerState words a container's state and health.
func containerState(state, health string) string {
	switch {
	case state == api.PodRunning && health == api.HealthUnhealthy:
		return "unhealthy"
	case state == api.PodRunning && health == api.HealthStarting:
		return "starting"
	case state == "":
		return api.PodPending
	}
	return state
}
