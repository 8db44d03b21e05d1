package apiserver

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/manager"
	"github.com/devhq/dev/cluster/raftstore/rafttest"
	"github.com/devhq/dev/cluster/state"
)

// TestDrain: dev node drain cordons the node and marks it draining; it is
// refused, saying what to do, while no other node could take its pods, and
// for a node that does not exist.
func TestDrain(t *testing.T) {
	st := state.New()
	r := rafttest.New(st)
	for _, cmd := range []state.Command{
		&state.PutNode{Node: api.Node{Name: "n1", Status: api.NodeReady}},
		&state.PutNode{Node: api.Node{Name: "n2", Status: api.NodeReady}},
		&state.CordonNode{Name: "n2", Cordoned: true},
		&state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{{Project: "shop", Name: "web", Image: "x", Replicas: 1}}}},
		&state.CreatePods{Pods: []api.Pod{{Name: "shop-web-1", Project: "shop", Service: "web", Labels: map[string]string{}}}},
		&state.AssignPods{Nodes: map[string]string{"shop-web-1": "n1"}},
	} {
		if _, err := r.Apply(t.Context(), cmd); err != nil {
			t.Fatal(err)
		}
	}
	h := New(r, manager.New(r, manager.Options{Node: "n1"}, slog.New(slog.DiscardHandler)), nil, Options{Node: "n1"}).Routes()
	drain := func(name string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/v1/nodes/"+name+"/drain", strings.NewReader("{}"))
		req.Header.Set("Content-Type", "application/json")
		AsCaller(h, Caller{Name: "ops", Role: roleAdmin}).ServeHTTP(rec, req)
		return rec
	}

	if rec := drain("n1"); rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), "uncordon one") {
		t.Errorf("drain with no room elsewhere: %d %s, want 409 saying what to do", rec.Code, rec.Body.String())
	}
	if n, _ := st.Node("n1"); n.Cordoned || n.Draining {
		t.Errorf("a refused drain changed n1: %+v", n)
	}
	if rec := drain("nope"); rec.Code != http.StatusNotFound {
		t.Errorf("drain of an unknown node: %d %s", rec.Code, rec.Body.String())
	}
	if _, err := r.Apply(t.Context(), &state.CordonNode{Name: "n2"}); err != nil {
		t.Fatal(err)
	}
	if rec := drain("n1"); rec.Code != http.StatusOK {
		t.Fatalf("drain: %d %s", rec.Code, rec.Body.String())
	}
	if n, _ := st.Node("n1"); !n.Cordoned || !n.Draining {
		t.Errorf("n1 after dev node drain: cordoned %v draining %v", n.Cordoned, n.Draining)
	}
}
