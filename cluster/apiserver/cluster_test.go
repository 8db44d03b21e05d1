package apiserver

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
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

// TestJoinTokens: a manager prints a worker and a manager token; a worker
// prints none and signs nothing (it cannot open the sealed secrets); a
// node that joins with the manager token gets the data key and may vote,
// one that joins with the worker token gets neither; rotating one token
// refuses its old secret and leaves the other token working. The state
// every node holds never has the CA key or a join secret in the clear.
func TestJoinTokens(t *testing.T) {
	ca, err := pki.NewCA("c1")
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	secrets := pki.ClusterSecrets{CAKeyPEM: caKey, WorkerSecret: mustSecret(t), ManagerSecret: mustSecret(t)}
	sealed, err := key.SealClusterSecrets(secrets)
	if err != nil {
		t.Fatal(err)
	}
	st := state.New()
	r := rafttest.New(st)
	for _, cmd := range []state.Command{
		&state.SetCluster{Cluster: state.ClusterInfo{ID: "c1", CACertPEM: ca.CertPEM, GossipKey: []byte("g"), Sealed: sealed}, Founder: "n1"},
		&state.PutNode{Node: api.Node{Name: "n1", Status: api.NodeReady}}, // the founder's own record
	} {
		if _, err := r.Apply(t.Context(), cmd); err != nil {
			t.Fatal(err)
		}
	}
	newServer := func(node string, k *pki.DataKey) *Server {
		return New(r, manager.New(r, manager.Options{Node: node}, slog.New(slog.DiscardHandler)), nil, Options{Node: node, DataKey: k})
	}
	mgr, worker := newServer("n1", key), newServer("n2", nil)
	call := func(t *testing.T, srv *Server, method, path, body string) (int, api.TokenResponse, string) {
		t.Helper()
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		rec := httptest.NewRecorder()
		AsCaller(srv.Routes(), Caller{Name: "admin", Role: roleAdmin}).ServeHTTP(rec, req)
		var res api.TokenResponse
		_ = json.Unmarshal(rec.Body.Bytes(), &res)
		return rec.Code, res, rec.Body.String()
	}
	secretOf := func(t *testing.T, token string) string {
		t.Helper()
		tok, err := pki.ParseToken(token)
		if err != nil {
			t.Fatal(err)
		}
		return tok.Secret
	}
	var lastKey []byte // the key of the last join's CSR
	join := func(t *testing.T, name, secret string) (api.JoinResponse, error) {
		t.Helper()
		keyPEM, csr, err := pki.NewKeyAndCSR(name)
		if err != nil {
			t.Fatal(err)
		}
		lastKey = keyPEM
		return mgr.admit(t.Context(), api.JoinRequest{Name: name, Proof: pki.JoinProof(secret, name, csr), CSR: csr, IPs: []string{"127.0.0.1"}})
	}

	code, workerTok, body := call(t, mgr, "GET", "/v1/token", "")
	if code != 200 || secretOf(t, workerTok.Token) != secrets.WorkerSecret || workerTok.Manager {
		t.Fatalf("GET /v1/token on a manager: %d %s", code, body)
	}
	code, managerTok, body := call(t, mgr, "GET", "/v1/token?manager=1", "")
	if code != 200 || secretOf(t, managerTok.Token) != secrets.ManagerSecret || !managerTok.Manager {
		t.Fatalf("GET /v1/token?manager=1 on a manager: %d %s", code, body)
	}
	for _, path := range []string{"/v1/token", "/v1/token?manager=1", "/v1/token?client=ops"} {
		if code, _, body := call(t, worker, "GET", path, ""); code != http.StatusForbidden || !strings.Contains(body, "n2 is a worker") {
			t.Errorf("GET %s on a worker: %d %s; want 403 saying it is a worker", path, code, body)
		}
	}

	res, err := join(t, "w1", secrets.WorkerSecret)
	if err != nil || len(res.Cert) == 0 || res.DataKey != nil {
		t.Fatalf("join with the worker token: %v, data key %v; want a certificate and no data key", err, res.DataKey != nil)
	}
	res, err = join(t, "m2", secrets.ManagerSecret)
	if err != nil || len(res.DataKey) == 0 {
		t.Fatalf("join with the manager token: %v; want the data key", err)
	}
	if bytes.Contains(res.DataKey, key.Bytes()) {
		t.Error("the join answer carries the data key in the clear (a relaying node would read it)")
	}
	if raw, err := pki.OpenWithKey(lastKey, res.DataKey); err != nil || !bytes.Equal(raw, key.Bytes()) {
		t.Errorf("the joiner's key opens the sealed data key: %v", err)
	}
	// A node that relayed that join holds its proof, bound to the
	// joiner's CSR: it gets nothing with it for a key of its own.
	_, relayCSR, err := pki.NewKeyAndCSR("m2")
	if err != nil {
		t.Fatal(err)
	}
	proof := pki.JoinProof(secrets.ManagerSecret, "relay", relayCSR)
	if _, err := mgr.admit(t.Context(), api.JoinRequest{Name: "relay", Proof: proof, CSR: relayCSR}); err != nil {
		t.Fatalf("control: a proof made with the secret is admitted: %v", err)
	}
	_, otherCSR, _ := pki.NewKeyAndCSR("relay")
	if _, err := mgr.admit(t.Context(), api.JoinRequest{Name: "relay", Proof: proof, CSR: otherCSR}); err == nil || !strings.Contains(err.Error(), "secret is wrong") {
		t.Error("a join proof was accepted with another CSR than the one it was made for")
	}
	if st.MayVote("w1") || !st.MayVote("m2") || !st.MayVote("n1") {
		t.Errorf("may vote: worker %v, manager %v, founder %v; want false, true, true", st.MayVote("w1"), st.MayVote("m2"), st.MayVote("n1"))
	}
	if _, err := join(t, "x", "not-the-secret"); err == nil {
		t.Error("a join with a wrong secret was admitted")
	}

	code, rotated, body := call(t, mgr, "POST", "/v1/token/rotate", `{"manager":true}`)
	if code != 200 || !rotated.Manager || secretOf(t, rotated.Token) == secrets.ManagerSecret {
		t.Fatalf("rotate the manager token: %d %s", code, body)
	}
	if _, err := join(t, "m3", secrets.ManagerSecret); err == nil {
		t.Error("the manager token from before the rotation still admits")
	}
	if res, err := join(t, "m3", secretOf(t, rotated.Token)); err != nil || res.DataKey == nil {
		t.Errorf("the rotated manager token: %v", err)
	}
	if _, err := join(t, "w2", secrets.WorkerSecret); err != nil {
		t.Errorf("rotating the manager token broke the worker token: %v", err)
	}
	if code, _, body := call(t, worker, "POST", "/v1/token/rotate", `{}`); code != http.StatusForbidden {
		t.Errorf("rotate on a worker: %d %s; want 403", code, body)
	}

	snap, err := st.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	der := strings.Join(strings.Split(strings.TrimSpace(string(caKey)), "\n")[1:], "") // the PEM's base64 body
	for what, s := range map[string]string{
		"the CA key (PEM, base64)": base64.StdEncoding.EncodeToString(caKey),
		"the CA key (DER, base64)": der[:40],
		"the worker secret":        secrets.WorkerSecret,
		"the manager secret":       secretOf(t, rotated.Token),
	} {
		if bytes.Contains(snap, []byte(s)) {
			t.Errorf("the replicated state holds %s in the clear", what)
		}
	}
}

func mustSecret(t *testing.T) string {
	t.Helper()
	s, err := pki.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
