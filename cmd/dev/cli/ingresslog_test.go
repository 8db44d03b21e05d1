package cli

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
)

// fakeIngressLog answers its pages in turn, then fails as an agent that
// went away; it records the queries.
type fakeIngressLog struct {
	pages   []api.IngressLog
	queries []api.IngressLogQuery
}

func (f *fakeIngressLog) Services(context.Context, string) ([]api.ServiceInfo, error) {
	return []api.ServiceInfo{{Name: "web", Ingress: []api.IngressRoute{{Host: "web.shop.test"}}}, {Name: "db"}}, nil
}

func (f *fakeIngressLog) IngressLog(_ context.Context, q api.IngressLogQuery) (api.IngressLog, error) {
	f.queries = append(f.queries, q)
	if len(f.queries) > len(f.pages) {
		return api.IngressLog{}, errors.New("connection refused")
	}
	return f.pages[len(f.queries)-1], nil
}

// TestStreamIngressLog: dev logs --ingress prints each entry after its
// service, warns once about a node that did not answer, and follows with
// blocking queries from the cursor of the last answer.
func TestStreamIngressLog(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	entry := func(node, path string, status int) api.IngressAccess {
		return api.IngressAccess{Time: at, Node: node, Client: "192.0.2.1", Host: "web.shop.test", Path: path, Method: "GET", Proto: "HTTP/1.1",
			Status: status, Bytes: 12, Duration: 1500 * time.Microsecond, Project: "shop", Service: "web", Pod: "shop-web-1"}
	}
	f := &fakeIngressLog{pages: []api.IngressLog{
		{Entries: []api.IngressAccess{entry("n1", "/a", 200)}, Cursor: map[string]uint64{"n1": 10, "n2": 20}, Errors: []string{"node n3: the node is down"}},
		{Entries: []api.IngressAccess{entry("n2", "/b", 404)}, Cursor: map[string]uint64{"n1": 10, "n2": 21}, Errors: []string{"node n3: the node is down"}},
	}}
	var out, errOut bytes.Buffer
	err := streamIngressLog(context.Background(), f, "shop", []string{"web"}, true, 5, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("streamIngressLog = %v, want the failed query's error", err)
	}
	want := `web      | 2025-01-02T03:04:05.000Z n1 192.0.2.1 "GET web.shop.test/a HTTP/1.1" 200 12 1.5ms shop-web-1
web      | 2025-01-02T03:04:05.000Z n2 192.0.2.1 "GET web.shop.test/b HTTP/1.1" 404 12 1.5ms shop-web-1
`
	if out.String() != want {
		t.Errorf("printed\n%s\nwant\n%s", out.String(), want)
	}
	if errOut.String() != "warning: no access log from node n3: the node is down\n" {
		t.Errorf("stderr %q, want one warning about n3", errOut.String())
	}
	if q := f.queries[0]; q.Tail != 5 || q.Wait != 0 || q.After != nil || q.Project != "shop" {
		t.Errorf("first query %+v, want the last 5, no wait", q)
	}
	for i, q := range f.queries[1:] {
		if q.Tail != -1 || q.Wait != ingressLogWait || !maps.Equal(q.After, f.pages[i].Cursor) {
			t.Errorf("query %d: %+v, want a blocking one from cursor %v", i+2, q, f.pages[i].Cursor)
		}
	}
}

// TestStreamIngressLogServices: a SERVICE that does not exist or has no
// route is refused with what to do.
func TestStreamIngressLogServices(t *testing.T) {
	for svc, want := range map[string]string{"nope": "no service nope in project shop", "db": "has no ingress route: declare one with x-ingress"} {
		err := streamIngressLog(context.Background(), &fakeIngressLog{}, "shop", []string{svc}, false, -1, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", svc, err, want)
		}
	}
}
