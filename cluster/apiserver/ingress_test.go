package apiserver

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/manager"
	"github.com/devhq/dev/cluster/pki"
	"github.com/devhq/dev/cluster/raftstore/rafttest"
	"github.com/devhq/dev/cluster/state"
)

// TestIngressCert: a manager signs a local HTTPS certificate for a node,
// for a host a tls: local route names and no other, with the local CA it
// makes and records in a cluster from before it (one CA, the same the next
// time, the one GET /v1/ca/local gives); a worker signs none.
func TestIngressCert(t *testing.T) {
	key, err := pki.NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	st := state.New()
	r := rafttest.New(st)
	web := api.ServiceSpec{Project: "shop", Name: "web", Image: "x", Replicas: 1, Ingress: []api.IngressRoute{
		{Host: "web.shop.localhost", Path: "/", Port: 80, TLS: api.IngressTLSLocal},
		{Host: "shop.example.com", Path: "/", Port: 80, TLS: api.IngressTLSAuto},
	}}
	for _, cmd := range []state.Command{
		&state.SetCluster{Cluster: state.ClusterInfo{ID: "c1", GossipKey: []byte("g"), Sealed: []byte{1}}, Founder: "n1"},
		&state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{web}}},
	} {
		if _, err := r.Apply(t.Context(), cmd); err != nil {
			t.Fatal(err)
		}
	}
	newServer := func(node string, k *pki.DataKey) *Server {
		return New(r, manager.New(r, manager.Options{Node: node}, slog.New(slog.DiscardHandler)), nil, Options{Node: node, DataKey: k})
	}
	mgr, worker := newServer("n1", key), newServer("n2", nil)
	ask := func(srv *Server, host string) (int, api.IngressCertResponse, string) {
		t.Helper()
		_, csr, err := pki.NewKeyAndCSR(host)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(api.IngressCertRequest{Host: host, CSR: csr})
		req := httptest.NewRequest(http.MethodPost, "/v1/internal/ingress-cert", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		AsCaller(srv.Routes(), Caller{Name: "n3", Role: roleNode}).ServeHTTP(rec, req)
		var res api.IngressCertResponse
		_ = json.Unmarshal(rec.Body.Bytes(), &res)
		return rec.Code, res, rec.Body.String()
	}
	code, res, body := ask(mgr, "web.shop.localhost")
	if code != http.StatusOK {
		t.Fatalf("a tls: local route's host: %d %s", code, body)
	}
	ci, _ := st.Cluster()
	if len(ci.LocalCACertPEM) == 0 || !bytes.Equal(ci.LocalCACertPEM, res.CA) || bytes.Contains(ci.LocalCASealed, []byte("PRIVATE KEY")) {
		t.Fatal("the local CA was not recorded (sealed) in the state, or is not the one that signed")
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(res.CA)
	block, _ := pem.Decode(res.Cert)
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "web.shop.localhost"}); err != nil {
		t.Errorf("the certificate does not verify for its host: %v", err)
	}
	if _, res2, _ := ask(mgr, "web.shop.localhost"); !bytes.Equal(res2.CA, res.CA) {
		t.Error("a second certificate came from another CA")
	}
	for _, host := range []string{"shop.example.com", "evil.example.com", "other.localhost"} {
		if code, _, body := ask(mgr, host); code != http.StatusForbidden {
			t.Errorf("certificate for %s (no tls: local route): %d %s, want 403", host, code, body)
		}
	}
	if code, _, body := ask(worker, "web.shop.localhost"); code != http.StatusForbidden || !strings.Contains(body, "is a worker") {
		t.Errorf("on a worker: %d %s, want 403", code, body)
	}
	req := httptest.NewRequest(http.MethodGet, "/v1/ca/local", nil)
	rec := httptest.NewRecorder()
	AsCaller(worker.Routes(), Caller{Name: "viewer", Role: roleRead}).ServeHTTP(rec, req)
	// (A cluster from before the local CA gets it from dev ca export on a
	// manager, TestLocalCAExportMakesIt.)
	var ca api.LocalCAResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &ca); err != nil || rec.Code != 200 || !bytes.Equal(ca.CertPEM, res.CA) {
		t.Errorf("GET /v1/ca/local as read: %d %s", rec.Code, rec.Body)
	}
}

// TestLocalCAExportMakesIt: in a cluster made before the local CA, dev ca
// export on a manager makes and records it; on a worker it says where to
// run it.
func TestLocalCAExportMakesIt(t *testing.T) {
	key, err := pki.NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	st := state.New()
	r := rafttest.New(st)
	if _, err := r.Apply(t.Context(), &state.SetCluster{Cluster: state.ClusterInfo{ID: "c1", GossipKey: []byte("g"), Sealed: []byte{1}}, Founder: "n1"}); err != nil {
		t.Fatal(err)
	}
	get := func(k *pki.DataKey) (int, []byte) {
		srv := New(r, manager.New(r, manager.Options{Node: "n"}, slog.New(slog.DiscardHandler)), nil, Options{Node: "n", DataKey: k})
		rec := httptest.NewRecorder()
		AsCaller(srv.Routes(), Caller{Name: "viewer", Role: roleRead}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/ca/local", nil))
		var res api.LocalCAResponse
		_ = json.Unmarshal(rec.Body.Bytes(), &res)
		return rec.Code, res.CertPEM
	}
	if code, _ := get(nil); code != http.StatusNotFound {
		t.Errorf("on a worker, with no local CA: %d, want 404", code)
	}
	code, made := get(key)
	ci, _ := st.Cluster()
	if code != http.StatusOK || len(made) == 0 || !bytes.Equal(made, ci.LocalCACertPEM) {
		t.Fatalf("on a manager: %d; the CA answered is the one recorded: %v", code, bytes.Equal(made, ci.LocalCACertPEM))
	}
	if _, again := get(nil); !bytes.Equal(again, made) {
		t.Error("the worker does not answer the recorded CA")
	}
}

// TestACMEKey: a manager opens a tls: auto certificate's key for a node's
// router; never an ACME account's key, never for a client, never on a
// worker.
func TestACMEKey(t *testing.T) {
	key, err := pki.NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	st := state.New()
	r := rafttest.New(st)
	const certKey, accountKey = "certificates/ca/shop.example/shop.example.key", "acme/ca/users/x/x.key"
	for _, cmd := range []state.Command{
		&state.SetCluster{Cluster: state.ClusterInfo{ID: "c1", GossipKey: []byte("g"), Sealed: []byte{1}}, Founder: "n1"},
		&state.PutACME{Key: certKey, Entry: state.ACMEEntry{Value: key.SealACME(certKey, []byte("cert key")), Sealed: true}},
		&state.PutACME{Key: accountKey, Entry: state.ACMEEntry{Value: key.SealACME(accountKey, []byte("account key")), Sealed: true}},
	} {
		if _, err := r.Apply(t.Context(), cmd); err != nil {
			t.Fatal(err)
		}
	}
	newServer := func(node string, k *pki.DataKey) *Server {
		return New(r, manager.New(r, manager.Options{Node: node}, slog.New(slog.DiscardHandler)), nil, Options{Node: node, DataKey: k})
	}
	mgr, worker := newServer("n1", key), newServer("n2", nil)
	ask := func(srv *Server, c Caller, k string) (int, string) {
		t.Helper()
		body, _ := json.Marshal(api.ACMEKeyRequest{Key: k})
		req := httptest.NewRequest(http.MethodPost, "/v1/internal/acme-key", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		AsCaller(srv.Routes(), c).ServeHTTP(rec, req)
		var res api.ACMEKeyResponse
		_ = json.Unmarshal(rec.Body.Bytes(), &res)
		return rec.Code, string(res.KeyPEM) + rec.Body.String()
	}
	node := Caller{Name: "n3", Role: roleNode}
	if code, got := ask(mgr, node, certKey); code != http.StatusOK || !strings.Contains(got, "cert key") {
		t.Errorf("a certificate's key for a node: %d %s", code, got)
	}
	for name, tc := range map[string]struct {
		srv *Server
		c   Caller
		key string
	}{
		"the account key":             {mgr, node, accountKey},
		"a path out of certificates/": {mgr, node, "certificates/../acme/ca/users/x/x.key"},
		"a client, not a node":        {mgr, Caller{Name: "ops", Role: roleAdmin}, certKey},
		"a worker holds no data key":  {worker, node, certKey},
	} {
		if code, got := ask(tc.srv, tc.c, tc.key); code == http.StatusOK || strings.Contains(got, "key") && strings.Contains(got, "account key") {
			t.Errorf("%s: %d %s, want refused", name, code, got)
		}
	}
}
