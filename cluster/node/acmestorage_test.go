package node

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/devhq/dev/cluster/pki"
	"github.com/devhq/dev/cluster/state"
)

// testACMEStorage is an acmeStorage whose writes apply to st at once, as
// the FSM would.
func testACMEStorage(t *testing.T, st *state.Store, key *pki.DataKey, node string) *acmeStorage {
	t.Helper()
	return &acmeStorage{st: st, key: key, node: node, challengeWait: 200 * time.Millisecond, lockLease: time.Minute,
		apply: func(_ context.Context, cmd state.Command) error {
			return st.Update(st.Index()+1, func(tx *state.Txn) error { return tx.Apply(cmd) })
		}}
}

func TestACMEStorage(t *testing.T) {
	ctx := context.Background()
	st := state.New()
	key, err := pki.NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	s := testACMEStorage(t, st, key, "n1")
	for k, v := range map[string]string{
		"certificates/ca/a.example/a.example.crt":  "cert",
		"certificates/ca/a.example/a.example.key":  "secret key",
		"certificates/ca/a.example/a.example.json": "{}",
		"acme/ca/users/x/x.key":                    "account key",
	} {
		if err := s.Store(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	if e, _ := st.ACME("certificates/ca/a.example/a.example.key"); !e.Sealed || string(e.Value) == "secret key" {
		t.Error("a private key is stored in the clear")
	}
	if b, err := s.Load(ctx, "certificates/ca/a.example/a.example.key"); err != nil || string(b) != "secret key" {
		t.Errorf("Load(key) = %q, %v", b, err)
	}
	if _, err := s.Load(ctx, "certificates/ca/none.crt"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(absent) = %v, want fs.ErrNotExist", err)
	}
	if got, err := s.List(ctx, "certificates", false); err != nil || !slices.Equal(got, []string{"certificates/ca"}) {
		t.Errorf("List(certificates) = %v, %v", got, err)
	}
	if got, _ := s.List(ctx, "certificates/ca/a.example", true); len(got) != 3 {
		t.Errorf("List(recursive) = %v", got)
	}
	if ki, err := s.Stat(ctx, "certificates/ca"); err != nil || ki.IsTerminal {
		t.Errorf("Stat(dir) = %+v, %v", ki, err)
	}
	if !s.Exists(ctx, "certificates/ca/a.example/a.example.crt") || s.Exists(ctx, "certificates/cb") {
		t.Error("Exists is wrong")
	}

	// A worker reads the certificate's key through a manager, never an
	// account key, and stores no key.
	w := testACMEStorage(t, st, nil, "n2")
	w.openKey = func(_ context.Context, k string) ([]byte, error) { return s.Load(ctx, k) }
	if b, err := w.Load(ctx, "certificates/ca/a.example/a.example.key"); err != nil || string(b) != "secret key" {
		t.Errorf("worker Load(cert key) = %q, %v", b, err)
	}
	if _, err := w.Load(ctx, "acme/ca/users/x/x.key"); err == nil {
		t.Error("a worker got the ACME account key")
	}
	if err := w.Store(ctx, "certificates/ca/b/b.key", []byte("k")); err == nil {
		t.Error("a worker stored a private key it cannot seal")
	}

	// A challenge that reaches this node's state a moment late is waited for.
	go func() {
		time.Sleep(50 * time.Millisecond)
		_ = s.Store(ctx, "acme/ca/challenge_tokens/a.example.json", []byte("{}"))
	}()
	if _, err := w.Load(ctx, "acme/ca/challenge_tokens/a.example.json"); err != nil {
		t.Errorf("a late challenge: %v", err)
	}

	// The lock: one holder at a time.
	if err := s.Lock(ctx, "issue_cert_a.example"); err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	if err := w.Lock(lctx, "issue_cert_a.example"); err == nil {
		t.Error("n2 took the lock n1 holds")
	}
	if err := s.Unlock(ctx, "issue_cert_a.example"); err != nil {
		t.Fatal(err)
	}
	if err := w.Lock(ctx, "issue_cert_a.example"); err != nil {
		t.Errorf("n2 after n1's unlock: %v", err)
	}
}

// TestACMECerts: a node serves the certificate the state holds for a
// host, the new one once a renewal rewrote it, and says which it is.
func TestACMECerts(t *testing.T) {
	ctx := context.Background()
	st := state.New()
	key, err := pki.NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	s := testACMEStorage(t, st, key, "n1")
	a, err := newACMECerts(s, "", "", "", 80, 443, true, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.stop()
	const host = "shop.example"
	if a.answering() != nil || !strings.Contains(a.State(host), "--acme-email") {
		t.Fatalf("no CA configured: answering %v, State %q; want none, and what to configure", a.answering(), a.State(host))
	}
	a.flags = acmeConfig{CA: "https://acme.example/dir"}
	ans := a.answering()
	if a.Has(host) || a.State(host) != "pending" {
		t.Fatalf("before any certificate: Has %v, State %q", a.Has(host), a.State(host))
	}
	if _, err := a.certificate(ctx, ans, host); err == nil {
		t.Fatal("a certificate before the CA issued one")
	}
	ca, err := pki.NewLocalCA("test") // any CA: the router does not check who issued it
	if err != nil {
		t.Fatal(err)
	}
	issue := func() []byte {
		keyPEM, csrPEM, err := pki.NewKeyAndCSR(host)
		if err != nil {
			t.Fatal(err)
		}
		certPEM, err := ca.SignServer(csrPEM, []string{host + ".localhost"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		iss := ans.iss.IssuerKey()
		if err := s.Store(ctx, certmagic.StorageKeys.SitePrivateKey(iss, host), keyPEM); err != nil {
			t.Fatal(err)
		}
		if err := s.Store(ctx, certmagic.StorageKeys.SiteCert(iss, host), certPEM); err != nil {
			t.Fatal(err)
		}
		return certPEM
	}
	issue()
	first, err := a.certificate(ctx, ans, host)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Has(host) || !strings.HasPrefix(a.State(host), "valid until ") {
		t.Errorf("after issuance: Has %v, State %q", a.Has(host), a.State(host))
	}
	issue()
	second, err := a.certificate(ctx, ans, host)
	if err != nil {
		t.Fatal(err)
	}
	if second.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0 {
		t.Error("the renewed certificate is not served")
	}
}
