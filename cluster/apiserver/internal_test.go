package apiserver

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/manager"
	"github.com/devhq/dev/cluster/peers"
	"github.com/devhq/dev/cluster/raftstore/rafttest"
	"github.com/devhq/dev/cluster/state"
)

// TestInternalApply: the leader applies a forwarded write only from a node,
// and only what that node may write: its users' writes (validated again),
// its own pods' status and its own record; never what the leader's loops
// write, nor another node's records. Clients of every role get 403 on every
// node-only route, before any route is matched.
func TestInternalApply(t *testing.T) {
	st := state.New()
	r := rafttest.New(st)
	for _, cmd := range []state.Command{
		&state.PutNode{Node: api.Node{Name: "n1", Status: api.NodeReady}},
		&state.PutNode{Node: api.Node{Name: "n2", Status: api.NodeReady}},
		&state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{{Project: "shop", Name: "web", Image: "x", Replicas: 1}}}},
		&state.CreatePods{Pods: []api.Pod{{Name: "shop-web-1", Project: "shop", Service: "web", Labels: map[string]string{}}}},
		&state.AssignPods{Nodes: map[string]string{"shop-web-1": "n1"}},
	} {
		if _, err := r.Apply(t.Context(), cmd); err != nil {
			t.Fatal(err)
		}
	}
	srv := New(r, manager.New(r, manager.Options{Node: "n1"}, slog.New(slog.DiscardHandler)), nil, Options{Node: "n1"})
	h := srv.Routes()
	node := func(name string) Caller { return Caller{Name: name, Role: roleNode} }
	project := func(replicas int) *state.ApplyProject {
		return &state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{
			{Project: "shop", Name: "web", Image: "x", Replicas: replicas}}}}
	}
	tests := []struct {
		name   string
		caller Caller
		cmd    state.Command
		want   int
	}{
		{"a node's own pod status", node("n1"), &state.PodStatus{Name: "shop-web-1", Node: "n1", Status: api.PodStatus{State: api.PodRunning}}, 200},
		{"status reported for another node", node("n2"), &state.PodStatus{Name: "shop-web-1", Node: "n1"}, 403},
		{"its own record", node("n2"), &state.PutNode{Node: api.Node{Name: "n2", Status: api.NodeReady}}, 200},
		{"another node's record", node("n2"), &state.PutNode{Node: api.Node{Name: "n1", Status: api.NodeDown}}, 403},
		{"forget another node's pod", node("n2"), &state.DeletePods{Names: []string{"shop-web-1"}}, 403},
		{"a user's scale, relayed", node("n2"), &state.Scale{Project: "shop", Replicas: map[string]int{"web": 2}}, 200},
		{"a user's apply, validated again", node("n2"), project(-1), 400},
		{"placements are the leader's", node("n2"), &state.AssignPods{Nodes: map[string]string{"shop-web-1": "n2"}}, 403},
		{"node removal is the leader's", node("n2"), &state.DeleteNode{Name: "n1"}, 403},
		{"admin client", Caller{Name: "ci", Role: roleAdmin}, &state.Scale{Project: "shop", Replicas: map[string]int{"web": 3}}, 403},
		{"read client", Caller{Name: "ro", Role: roleRead}, &state.Scale{Project: "shop", Replicas: map[string]int{"web": 3}}, 403},
	}
	forward := func(t *testing.T, caller Caller, cmd state.Command) *httptest.ResponseRecorder {
		t.Helper()
		entry, err := state.Encode(cmd)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(peers.ApplyRequest{Entry: entry})
		req := httptest.NewRequest(http.MethodPost, peers.PathApply, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		AsCaller(h, caller).ServeHTTP(rec, req)
		return rec
	}
	t.Run("a relayed revocation takes the leader's time", func(t *testing.T) {
		skewed := time.Now().UTC().Add(time.Hour) // the follower's clock runs an hour ahead
		rec := forward(t, node("n2"), &state.Revoke{Revocation: api.Revocation{Kind: api.CertClient, Name: "ops", At: skewed}})
		if rec.Code != 200 {
			t.Fatalf("%d %s", rec.Code, rec.Body.String())
		}
		at, ok := st.RevokedUntil(api.CertClient, "ops")
		if !ok || at.After(time.Now().Add(time.Minute)) {
			t.Errorf("revocation time %v, %v; want the leader's now, not the follower's %v", at, ok, skewed)
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := st.Index()
			rec := forward(t, tt.caller, tt.cmd)
			if rec.Code != tt.want {
				t.Fatalf("%d %s, want %d", rec.Code, rec.Body.String(), tt.want)
			}
			if applied := st.Index() > before; applied != (tt.want == 200) {
				t.Errorf("applied: %v, want %v", applied, tt.want == 200)
			}
		})
	}
	if n, _ := st.Node("n1"); n.Status != api.NodeReady {
		t.Errorf("n1 is %s: another node's write went through", n.Status)
	}

	// Every node-only route refuses clients, whatever the path.
	for _, role := range []string{roleAdmin, roleRead, ""} {
		for _, path := range []string{peers.PathRegister, peers.PathImage + "?ref=x", peers.PathVolumes + "shop", "/v1/internal/nope"} {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			rec := httptest.NewRecorder()
			AsCaller(h, Caller{Name: "c", Role: role}).ServeHTTP(rec, req)
			if rec.Code != http.StatusForbidden {
				t.Errorf("GET %s as %q: %d, want 403", path, role, rec.Code)
			}
		}
	}
}

func withSecret(m api.SecretMount) *state.ApplyProject {
	return &state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{
		{Project: "shop", Name: "web", Image: "x", Replicas: 1, Secrets: []api.SecretMount{m}}}}}
}

// TestMayForwardWorkersAndManagers: in a cluster whose secrets are sealed,
// a worker forwards only its own writes and its own revocation (dev
// leave), never a user's; a manager may forward a rotation of the sealed
// secrets, a worker may not; nobody may write a join secret in the clear.
func TestMayForwardWorkersAndManagers(t *testing.T) {
	st := state.New()
	r := rafttest.New(st)
	for _, cmd := range []state.Command{
		&state.SetCluster{Cluster: state.ClusterInfo{ID: "c", Sealed: []byte{1}}, Founder: "m1"},
		&state.PutNode{Node: api.Node{Name: "m1", Status: api.NodeReady}},
		&state.Admit{Name: "w1", At: time.Now()},
	} {
		if _, err := r.Apply(t.Context(), cmd); err != nil {
			t.Fatal(err)
		}
	}
	if !st.IsWorker("w1") || st.IsWorker("m1") {
		t.Fatalf("IsWorker: w1 %v, m1 %v; want true, false", st.IsWorker("w1"), st.IsWorker("m1"))
	}
	worker, mgr := Caller{Name: "w1", Role: roleWorker}, Caller{Name: "m1", Role: roleNode}
	tests := []struct {
		name   string
		caller Caller
		cmd    state.Command
		ok     bool
	}{
		{"a worker's own record", worker, &state.PutNode{Node: api.Node{Name: "w1"}}, true},
		{"a worker's own revocation (dev leave)", worker, &state.Revoke{Revocation: api.Revocation{Kind: api.CertNode, Name: "w1"}}, true},
		{"a worker revokes another node", worker, &state.Revoke{Revocation: api.Revocation{Kind: api.CertNode, Name: "m1"}}, false},
		{"a worker relays a scale", worker, &state.Scale{Project: "shop", Replicas: map[string]int{"web": 9}}, false},
		{"a worker labels a node", worker, &state.LabelNode{Name: "m1", Labels: map[string]string{"a": "b"}}, false},
		{"a worker rotates the secrets", worker, &state.SealClusterSecrets{Sealed: []byte{2}, Prev: []byte{1}}, false},
		{"a manager relays a scale", mgr, &state.Scale{Project: "shop", Replicas: map[string]int{"web": 9}}, true},
		{"a manager rotates the secrets", mgr, &state.SealClusterSecrets{Sealed: []byte{2}, Prev: []byte{1}}, true},
		{"a worker records its own move to a new CA", worker, &state.MoveToCA{ID: "x", Node: "w1"}, true},
		{"a node records another's move to a new CA", mgr, &state.MoveToCA{ID: "x", Node: "w1"}, false},
		{"a worker starts a CA rotation", worker, &state.StartCARotation{}, false},
		{"a manager starts a CA rotation", mgr, &state.StartCARotation{}, true},
		{"a node finishes a CA rotation (the leader's own write)", mgr, &state.FinishCARotation{ID: "x"}, false},
		{"a join secret in the clear", mgr, &state.RotateJoinSecret{Secret: "s"}, false},
		{"a project with a secret in the clear", mgr, withSecret(api.SecretMount{Name: "t", Content: []byte("x")}), false},
		{"a project with a sealed secret", mgr, withSecret(api.SecretMount{Name: "t", Sealed: []byte{1}, Digest: "hmac-sha256:00"}), true},
	}
	for _, tt := range tests {
		if err := mayForward(st, tt.caller, tt.cmd); (err == nil) != tt.ok {
			t.Errorf("%s: %v, want allowed %v", tt.name, err, tt.ok)
		}
	}
}
