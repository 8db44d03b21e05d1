package apiserver

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/manager"
	"github.com/devhq/dev/cluster/peers"
	"github.com/devhq/dev/cluster/raftstore/rafttest"
	"github.com/devhq/dev/cluster/state"
)

// fakeStats is a node's engine: it answers every pod it is asked for with
// a memory use of its own, and remembers what it was asked.
type fakeStats struct {
	node   string
	memory uint64
	err    error

	mu    sync.Mutex
	asked [][]string
}

func (f *fakeStats) PodStats(_ context.Context, pods []string, window time.Duration) ([]api.PodStats, error) {
	f.mu.Lock()
	f.asked = append(f.asked, slices.Clone(pods))
	f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	if window <= 0 {
		return nil, errors.New("no window: no CPU %")
	}
	var out []api.PodStats
	for _, p := range pods {
		out = append(out, api.PodStats{Pod: p, Node: f.node, MemoryBytes: f.memory, CPUPercent: 12.5})
	}
	return out, nil
}

// statsState is a cluster of n1, n2 (ready, its API at n2API) and n3
// (down), with pods of shop on each and one of another project on n1.
func statsState(t *testing.T, n2API string) *state.Store {
	t.Helper()
	st := state.New()
	pod := func(project, service string, i int) api.Pod {
		return api.Pod{Name: api.PodName(project, service, i), Project: project, Service: service, Index: i, Labels: map[string]string{}}
	}
	running := func(name, node string) state.Command {
		return &state.PodStatus{Name: name, Node: node, Status: api.PodStatus{State: api.PodRunning}}
	}
	err := st.Update(1, func(tx *state.Txn) error {
		for _, cmd := range []state.Command{
			&state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{
				{Project: "shop", Name: "web", Image: "x", Replicas: 4}, {Project: "shop", Name: "db", Image: "x", Replicas: 1}}}},
			&state.ApplyProject{Project: api.Project{Name: "blog", Services: []api.ServiceSpec{{Project: "blog", Name: "web", Image: "x", Replicas: 1}}}},
			&state.PutNode{Node: api.Node{Name: "n1", Status: api.NodeReady}},
			&state.PutNode{Node: api.Node{Name: "n2", Status: api.NodeReady, APIAddr: n2API}},
			&state.PutNode{Node: api.Node{Name: "n3", Status: api.NodeDown}},
			&state.CreatePods{Pods: []api.Pod{pod("shop", "web", 1), pod("shop", "web", 2), pod("shop", "web", 3), pod("shop", "web", 4),
				pod("shop", "db", 1), pod("blog", "web", 1)}},
			&state.AssignPods{Nodes: map[string]string{"shop-web-1": "n1", "shop-web-2": "n2", "shop-web-3": "n3", "shop-web-4": "n1",
				"shop-db-1": "n1", "blog-web-1": "n1"}},
			running("shop-web-1", "n1"), running("shop-web-2", "n2"), running("shop-web-3", "n3"),
			running("shop-db-1", "n1"), running("blog-web-1", "n1"),
			// shop-web-4 has not started: nothing to read.
		} {
			if err := tx.Apply(cmd); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// servePeer serves node n2's API, with opts (its engine stats, its access
// log...) and opts.Node "n2", over TLS on loopback, called as a node calls
// it, and returns its address and the peers of a node that trusts it.
func servePeer(t *testing.T, opts Options) (string, *peers.Peers) {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	addr := ts.Listener.Addr().String()
	r := rafttest.New(statsState(t, addr))
	opts.Node = "n2"
	srv := New(r, manager.New(r, manager.Options{Node: "n2"}, slog.New(slog.DiscardHandler)), nil, opts)
	ts.Config.Handler = AsCaller(srv.Routes(), Caller{Name: "n1", Role: roleNode})
	return addr, peers.New(ts.Client().Transport.(*http.Transport).TLSClientConfig)
}

// TestStats: GET /v1/stats gathers the running pods the query selects from
// every node that runs one, this node's from its engine and the others'
// from theirs, and says which nodes' pods are missing; ?local=1 is this
// node's only.
func TestStats(t *testing.T) {
	n1 := &fakeStats{node: "n1", memory: 100}
	n2 := &fakeStats{node: "n2", memory: 200}
	n2API, pr := servePeer(t, Options{Stats: n2})
	st := statsState(t, n2API)
	c := serveTestAPIWith(t, st, nil, Options{Node: "n1", Stats: n1, Peers: pr})
	ctx := context.Background()

	tests := []struct {
		name       string
		q          api.StatsQuery
		want       []string // pod@node
		wantErrors []string
		n1Asked    []string
		n2Asked    []string
	}{
		{
			name: "a project, on every node", q: api.StatsQuery{Project: "shop"},
			want:       []string{"shop-db-1@n1", "shop-web-1@n1", "shop-web-2@n2"},
			wantErrors: []string{"node n3: the node is down"},
			n1Asked:    []string{"shop-db-1", "shop-web-1"}, n2Asked: []string{"shop-web-2"},
		},
		{
			name: "services", q: api.StatsQuery{Project: "shop", Services: []string{"db"}},
			want: []string{"shop-db-1@n1"}, n1Asked: []string{"shop-db-1"},
		},
		{
			name: "every project", q: api.StatsQuery{Services: []string{"web"}},
			want:       []string{"blog-web-1@n1", "shop-web-1@n1", "shop-web-2@n2"},
			wantErrors: []string{"node n3: the node is down"},
			n1Asked:    []string{"blog-web-1", "shop-web-1"}, n2Asked: []string{"shop-web-2"},
		},
		{
			name: "this node's only", q: api.StatsQuery{Project: "shop", Local: true},
			want: []string{"shop-db-1@n1", "shop-web-1@n1"}, n1Asked: []string{"shop-db-1", "shop-web-1"},
		},
		{name: "no pod", q: api.StatsQuery{Project: "none"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n1.asked, n2.asked = nil, nil
			got, err := c.Stats(ctx, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(podNames(got), tt.want) || !slices.Equal(got.Errors, tt.wantErrors) {
				t.Errorf("got pods %v, errors %q; want %v, %q", podNames(got), got.Errors, tt.want, tt.wantErrors)
			}
			for _, asked := range []struct {
				f    *fakeStats
				want []string
			}{{n1, tt.n1Asked}, {n2, tt.n2Asked}} {
				if len(asked.want) == 0 && len(asked.f.asked) == 0 {
					continue
				}
				if len(asked.f.asked) != 1 || !slices.Equal(asked.f.asked[0], asked.want) {
					t.Errorf("%s's engine was asked for %v, want once for %v", asked.f.node, asked.f.asked, asked.want)
				}
			}
		})
	}

	t.Run("an engine that fails leaves its node's pods out", func(t *testing.T) {
		n2.err = errors.New("docker: connection refused")
		defer func() { n2.err = nil }()
		got, err := c.Stats(ctx, api.StatsQuery{Project: "shop", Services: []string{"web"}})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(podNames(got), []string{"shop-web-1@n1"}) ||
			!slices.Equal(got.Errors, []string{"node n2: read stats: docker: connection refused", "node n3: the node is down"}) {
			t.Errorf("got pods %v, errors %q", podNames(got), got.Errors)
		}
	})
	t.Run("a node whose engine does not answer is not asked", func(t *testing.T) {
		put := func(unreachable bool) {
			t.Helper()
			err := st.Update(st.Index()+1, func(tx *state.Txn) error {
				return tx.Apply(&state.PutNode{Node: api.Node{Name: "n2", Status: api.NodeReady, APIAddr: n2API, EngineUnreachable: unreachable}})
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		put(true)
		defer put(false)
		n2.asked = nil
		got, err := c.Stats(ctx, api.StatsQuery{Project: "shop", Services: []string{"web"}})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(podNames(got), []string{"shop-web-1@n1"}) || len(got.Errors) != 2 ||
			!strings.HasPrefix(got.Errors[0], "node n2: its Docker Engine does not answer") {
			t.Errorf("got pods %v, errors %q", podNames(got), got.Errors)
		}
		if len(n2.asked) != 0 {
			t.Errorf("n2 was asked for %v, want not asked", n2.asked)
		}
	})
	t.Run("a node that reads no stats", func(t *testing.T) {
		c := serveTestAPIWith(t, statsState(t, ""), nil, Options{Node: "n1"})
		got, err := c.Stats(ctx, api.StatsQuery{Project: "shop", Local: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Pods) != 0 || len(got.Errors) != 1 || !strings.Contains(got.Errors[0], "node n1: this node reads no stats") {
			t.Errorf("got %+v", got)
		}
	})
}

func podNames(l api.StatsList) []string {
	var out []string
	for _, p := range l.Pods {
		out = append(out, p.Pod+"@"+p.Node)
	}
	return out
}
