package apiserver

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/proxy"
)

// accessLines are the entries as "node project/service path", in order.
func accessLines(l api.IngressLog) []string {
	var out []string
	for _, e := range l.Entries {
		out = append(out, e.Node+" "+e.Project+"/"+e.Service+" "+e.Path)
	}
	return out
}

// TestIngressLog: GET /v1/ingress/log gathers the access log entries of
// the routes the query selects from every node's router, in time order,
// and says which node could not answer (n3 is down); a follow (a cursor
// and a wait) answers as soon as any node has a new entry, and with
// nothing new when the wait passes.
func TestIngressLog(t *testing.T) {
	n1, n2 := proxy.NewAccessLog(16), proxy.NewAccessLog(16)
	n2API, pr := servePeer(t, Options{IngressLog: n2})
	c := serveTestAPIWith(t, statsState(t, n2API), nil, Options{Node: "n1", IngressLog: n1, Peers: pr})
	ctx := context.Background()
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	add := func(l *proxy.AccessLog, node, project, service, path string, at int) {
		l.Add(api.IngressAccess{Time: t0.Add(time.Duration(at) * time.Second), Node: node, Project: project, Service: service, Path: path, Status: 200})
	}
	add(n1, "n1", "shop", "web", "/a", 1)
	add(n2, "n2", "shop", "web", "/b", 2)
	add(n1, "n1", "blog", "web", "/c", 3)
	add(n2, "n2", "shop", "api", "/d", 4)
	add(n1, "n1", "shop", "web", "/e", 5)

	tests := []struct {
		name string
		q    api.IngressLogQuery
		want []string
	}{
		{"a project, every node", api.IngressLogQuery{Project: "shop", Tail: -1}, []string{"n1 shop/web /a", "n2 shop/web /b", "n2 shop/api /d", "n1 shop/web /e"}},
		{"a service", api.IngressLogQuery{Project: "shop", Services: []string{"api"}, Tail: -1}, []string{"n2 shop/api /d"}},
		{"every project", api.IngressLogQuery{Services: []string{"web"}, Tail: -1}, []string{"n1 shop/web /a", "n2 shop/web /b", "n1 blog/web /c", "n1 shop/web /e"}},
		{"the last two", api.IngressLogQuery{Project: "shop", Tail: 2}, []string{"n2 shop/api /d", "n1 shop/web /e"}},
		{"this node's only", api.IngressLogQuery{Project: "shop", Tail: -1, Local: true}, []string{"n1 shop/web /a", "n1 shop/web /e"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.IngressLog(ctx, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			wantErrors := []string{"node n3: the node is down"}
			if tt.q.Local {
				wantErrors = nil
			}
			if !slices.Equal(accessLines(got), tt.want) || !slices.Equal(got.Errors, wantErrors) {
				t.Errorf("got %q, errors %q; want %q, %q", accessLines(got), got.Errors, tt.want, wantErrors)
			}
		})
	}

	t.Run("follow", func(t *testing.T) {
		first, err := c.IngressLog(ctx, api.IngressLogQuery{Project: "shop", Tail: 0})
		if err != nil {
			t.Fatal(err)
		}
		if len(first.Entries) != 0 || len(first.Cursor) != 2 {
			t.Fatalf("tail 0: %q, cursor %v; want no entry and the cursor of n1 and n2", accessLines(first), first.Cursor)
		}
		// Nothing new: the answer comes when the wait passes, empty.
		got, err := c.IngressLog(ctx, api.IngressLogQuery{Project: "shop", Tail: -1, After: first.Cursor, Wait: 50 * time.Millisecond})
		if err != nil || len(got.Entries) != 0 || !maps.Equal(got.Cursor, first.Cursor) {
			t.Fatalf("nothing new: %q, cursor %v, %v; want nothing and the same cursor %v", accessLines(got), got.Cursor, err, first.Cursor)
		}
		// Another project's request does not end the wait; n2's next one
		// does, long before the wait passes, though n1 has none.
		done := make(chan api.IngressLog, 1)
		start := time.Now()
		go func() {
			got, err := c.IngressLog(ctx, api.IngressLogQuery{Project: "shop", Tail: -1, After: first.Cursor, Wait: time.Minute})
			if err != nil {
				t.Error(err)
			}
			done <- got
		}()
		add(n1, "n1", "blog", "web", "/f", 6)
		add(n2, "n2", "shop", "web", "/g", 7)
		got = <-done
		if !slices.Equal(accessLines(got), []string{"n2 shop/web /g"}) || time.Since(start) > 30*time.Second {
			t.Fatalf("follow: %q after %s; want n2's new entry at once", accessLines(got), time.Since(start))
		}
		if got.Cursor["n1"] != first.Cursor["n1"] && got.Cursor["n1"] != first.Cursor["n1"]+1 || got.Cursor["n2"] != first.Cursor["n2"]+1 {
			t.Errorf("cursor %v after %v: want n2's moved by one", got.Cursor, first.Cursor)
		}
	})
}
