package apiserver

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/manager"
	"github.com/devhq/dev/cluster/peers"
	"github.com/devhq/dev/cluster/pki"
	"github.com/devhq/dev/cluster/raftstore/rafttest"
	"github.com/devhq/dev/cluster/state"
)

// TestSealedFiles: in a cluster whose secrets are sealed, a manager seals
// the content of a project's secrets and configs before the project is
// stored (the state holds no content, and applying it again changes
// nothing); a node gets the opened content of its own pods only, from a
// manager; content sent sealed is refused.
func TestSealedFiles(t *testing.T) {
	key, err := pki.NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	st := state.New()
	r := rafttest.New(st)
	for _, cmd := range []state.Command{
		&state.SetCluster{Cluster: state.ClusterInfo{ID: "c", Sealed: []byte{1}}, Founder: "m1"},
		&state.PutNode{Node: api.Node{Name: "m1", Status: api.NodeReady}},
		&state.PutNode{Node: api.Node{Name: "w1", Status: api.NodeReady}},
		&state.Admit{Name: "w1"},
		&state.PutNode{Node: api.Node{Name: "w2", Status: api.NodeReady}},
		&state.Admit{Name: "w2"},
	} {
		if _, err := r.Apply(t.Context(), cmd); err != nil {
			t.Fatal(err)
		}
	}
	newServer := func(k *pki.DataKey) http.Handler {
		return New(r, manager.New(r, manager.Options{Node: "m1"}, slog.New(slog.DiscardHandler)), nil, Options{Node: "m1", DataKey: k}).Routes()
	}
	mgr := newServer(key)
	call := func(h http.Handler, c Caller, method, path string, body any) *httptest.ResponseRecorder {
		b, _ := json.Marshal(body)
		req := httptest.NewRequest(method, path, bytes.NewReader(b))
		if body == nil {
			req = httptest.NewRequest(method, path, nil)
		}
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		AsCaller(h, c).ServeHTTP(rec, req)
		return rec
	}
	admin := Caller{Name: "local", Role: roleAdmin}
	project := api.Project{Name: "shop", Services: []api.ServiceSpec{{Project: "shop", Name: "web", Image: "x", Replicas: 1,
		Secrets: []api.SecretMount{{Name: "token", Target: "/run/secrets/token", Content: []byte("s3cret-value")}},
		Configs: []api.SecretMount{{Name: "conf", Target: "/conf", Content: []byte("config-value")}},
	}}}
	rec := call(mgr, admin, "PUT", "/v1/projects/shop", project)
	if rec.Code != 200 {
		t.Fatalf("apply: %d %s", rec.Code, rec.Body.String())
	}
	rc, _ := st.RC(api.RCKey("shop", "web"))
	var applied api.ApplyResult
	if err := json.Unmarshal(rec.Body.Bytes(), &applied); err != nil || applied.Hashes["web"] != rc.SpecHash {
		t.Errorf("the apply answers hashes %v, want web's stored %s (what dev up waits for)", applied.Hashes, rc.SpecHash)
	}
	if m := rc.Template.Secrets[0]; m.Content != nil || m.Sealed == nil || m.Digest != key.Digest([]byte("s3cret-value")) {
		t.Errorf("stored secret %+v; want no content, sealed, with the content's keyed digest", m)
	}
	snap, _ := st.MarshalSnapshot()
	sum := sha256.Sum256([]byte("s3cret-value"))
	if bytes.Contains(snap, []byte(hex.EncodeToString(sum[:]))) {
		t.Errorf("the replicated state holds the secret's plain SHA-256 (a worker could test guesses against it)")
	}
	for _, v := range []string{"s3cret-value", "config-value"} {
		if bytes.Contains(snap, []byte(v)) || bytes.Contains(snap, []byte(base64.StdEncoding.EncodeToString([]byte(v)))) {
			t.Errorf("the replicated state holds %q", v)
		}
	}
	var res api.ApplyResult
	rec = call(mgr, admin, "PUT", "/v1/projects/shop", project)
	if json.Unmarshal(rec.Body.Bytes(), &res); rec.Code != 200 || len(res.Unchanged) != 1 {
		t.Errorf("the same project again: %d %s; want web unchanged (sealing is random, the hash is not)", rec.Code, rec.Body.String())
	}
	sent := project
	sent.Services = []api.ServiceSpec{project.Services[0]}
	sent.Services[0].Secrets = []api.SecretMount{{Name: "token", Target: "/run/secrets/token", Sealed: []byte{9}, Digest: "sha256:00"}}
	if rec := call(mgr, admin, "PUT", "/v1/projects/shop", sent); rec.Code != 400 {
		t.Errorf("a project with sealed content: %d %s; want 400", rec.Code, rec.Body.String())
	}

	pod := api.PodName("shop", "web", 1)
	for _, cmd := range []state.Command{
		&state.CreatePods{Pods: []api.Pod{{Name: pod, Project: "shop", Service: "web", Index: 1, SpecHash: rc.SpecHash, Labels: map[string]string{}}}},
		&state.AssignPods{Nodes: map[string]string{pod: "w1"}},
	} {
		if _, err := r.Apply(t.Context(), cmd); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		h      http.Handler
		caller Caller
		query  string
		want   int
	}{
		{"the node that runs the pod", mgr, Caller{Name: "w1", Role: roleWorker}, "pod=" + pod, 200},
		{"another worker", mgr, Caller{Name: "w2", Role: roleWorker}, "pod=" + pod, 403},
		{"a manager that does not run it", mgr, Caller{Name: "m1", Role: roleNode}, "pod=" + pod, 403},
		{"a service's files without a pod", mgr, Caller{Name: "w1", Role: roleWorker}, "project=shop&service=web", 404},
		{"a client", mgr, Caller{Name: "ops", Role: roleAdmin}, "pod=" + pod, 403},
		{"asked of a worker, which has no data key", newServer(nil), Caller{Name: "w1", Role: roleWorker}, "pod=" + pod, 403},
	}
	for _, tt := range tests {
		rec := call(tt.h, tt.caller, "GET", peers.PathFiles+"?"+tt.query, nil)
		if rec.Code != tt.want {
			t.Errorf("%s: %d %s; want %d", tt.name, rec.Code, rec.Body.String(), tt.want)
			continue
		}
		if tt.want != 200 {
			if strings.Contains(rec.Body.String(), "s3cret") {
				t.Errorf("%s: refused, but the answer holds the content", tt.name)
			}
			continue
		}
		var files api.FilesResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &files); err != nil {
			t.Fatal(err)
		}
		if string(files.Files[key.Digest([]byte("s3cret-value"))]) != "s3cret-value" || string(files.Files[key.Digest([]byte("config-value"))]) != "config-value" {
			t.Errorf("%s: files %v; want both contents by digest", tt.name, files.Files)
		}
	}
}
