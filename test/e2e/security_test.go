package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/pki"
)

// TestRevocation on two hosts: a revoked client bundle is refused while a
// new one of the same name works; after dev token --rotate the old join
// token admits no one; `dev node rm` refuses a ready node
// without --force, and with it the node is forgotten and its certificate
// refused on the raft and API ports of the other node, at the handshake.
// A revoked bundle's open stream (dev exec) ends with the revocation.
func TestRevocation(t *testing.T) {
	hosts := newHosts(t, 2)
	ms := newMultiCluster(t, hosts, nil)
	dir := t.TempDir()
	remote := func(bundle string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := hosts[1].CommandContext(ctx, nil, devBin, "--host", "tcp://"+hosts[0].IP+":7948", "--tls-bundle", bundle, "nodes").CombinedOutput()
		return string(out), err
	}

	old := filepath.Join(dir, "ops.pem")
	ms[0].mustDev(t, "token", "--client", "ops", "-o", old)
	if out, err := remote(old); err != nil || !strings.Contains(out, "h2") {
		t.Fatalf("dev nodes with a fresh bundle: %v\n%s", err, out)
	}
	// A stream the bundle opened before its revocation (dev exec) ends
	// with it. (Not dev logs -f: it also watches pods, a request of its
	// own that the revocation refuses anyway.)
	compose := writeTemp(t, "name: e2erevoke\nservices:\n  web:\n    image: "+testImage+"\n    command: [\"serve\"]\n")
	ms[0].mustDev(t, "up", "-d", "-f", compose)
	var out lockedBuffer
	stream := hosts[1].Command(nil, devBin, "--host", "tcp://"+hosts[0].IP+":7948", "--tls-bundle", old, "exec", "-p", "e2erevoke", "web", "/app", "sleep", "5m")
	stream.Stdout, stream.Stderr = &out, &out
	if err := stream.Start(); err != nil {
		t.Fatal(err)
	}
	streamed := make(chan error, 1)
	go func() { streamed <- stream.Wait() }()
	t.Cleanup(func() { _ = stream.Process.Kill() })
	eventually(t, 20*time.Second, "dev exec streaming", func() error {
		select {
		case err := <-streamed:
			t.Fatalf("dev exec ended before the revocation: %v\n%s", err, out.String())
		default:
		}
		if !strings.Contains(out.String(), "sleeping") {
			return fmt.Errorf("no output yet: %q", out.String())
		}
		return nil
	})
	ms[0].mustDev(t, "token", "--revoke", "ops")
	eventually(t, 10*time.Second, "the revoked bundle refused", func() error {
		if out, err := remote(old); err == nil {
			return fmt.Errorf("dev nodes with a revoked bundle worked:\n%s", out)
		}
		return nil
	})
	select {
	case <-streamed:
	case <-time.After(15 * time.Second):
		t.Errorf("dev exec with the revoked bundle still streams:\n%s", out.String())
	}
	fresh := filepath.Join(dir, "ops2.pem")
	ms[1].mustDev(t, "token", "--client", "ops", "-o", fresh)
	if out, err := remote(fresh); err != nil {
		t.Errorf("a bundle of the same name issued after the revocation: %v\n%s", err, out)
	}

	// dev token --rotate: the old token's secret no longer admits, the
	// new one's does (this join then fails on its empty CSR instead).
	oldToken := strings.TrimSpace(ms[0].mustDev(t, "token"))
	newToken, _, _ := strings.Cut(ms[0].mustDev(t, "token", "--rotate"), "\n") // then a note on stderr
	if newToken == oldToken || !strings.HasPrefix(newToken, "DEVTKN-") {
		t.Fatalf("dev token --rotate printed %q (was %q)", newToken, oldToken)
	}
	join := func(token string) int {
		tok, err := pki.ParseToken(token)
		if err != nil {
			t.Fatal(err)
		}
		c := hosts[1].HTTPClient(10 * time.Second)
		c.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // no certificate yet, as a joining node
		body := `{"name":"h9","proof":"` + base64.StdEncoding.EncodeToString(pki.JoinProof(tok.Secret, "h9", nil)) + `"}`
		resp, err := c.Post("https://"+hosts[0].IP+":7948/v1/join", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := join(oldToken); code != http.StatusForbidden {
		t.Errorf("a join with the token from before --rotate: %d, want 403", code)
	}
	if code := join(newToken); code != http.StatusBadRequest {
		t.Errorf("a join with the rotated token (and no CSR): %d, want 400 (admitted, then the CSR refused)", code)
	}

	// h2's own certificate, as a thief would hold it.
	id, err := pki.LoadIdentity(filepath.Join(ms[1].dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	refused := func(port string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := hosts[1].DialContext(ctx, "tcp", hosts[0].IP+":"+port)
		if err != nil {
			return err
		}
		defer c.Close()
		tc := tls.Client(c, id.ClientTLS())
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			return nil // refused
		}
		// TLS 1.3: the server's verdict on our certificate comes after.
		if _, err := tc.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		return fmt.Errorf("port %s took h2's certificate", port)
	}
	for _, port := range []string{"7947", "7948"} {
		if err := refused(port); err == nil {
			t.Fatalf("before any removal, port %s refused h2's certificate", port)
		}
	}

	if out, err := ms[0].dev(t, "node", "rm", "h2"); err == nil || !strings.Contains(out, "is ready") {
		t.Errorf("dev node rm of a ready node: %v\n%s\nwant refused (dev leave, or --force)", err, out)
	}
	ms[0].mustDev(t, "node", "rm", "h2", "--force")
	eventually(t, 30*time.Second, "h2 forgotten and refused at the handshake", func() error {
		if _, ok := ms[0].nodes(t)["h2"]; ok {
			return errors.New("h2 is still listed")
		}
		for _, port := range []string{"7947", "7948"} {
			if err := refused(port); err != nil {
				return err
			}
		}
		return nil
	})
	if out := ms[0].mustDev(t, "nodes"); !strings.Contains(out, "h1") || strings.Contains(out, "h2") {
		t.Errorf("dev nodes after dev node rm h2:\n%s", out)
	}
}

// TestCertRenewal on three hosts (a manager, another manager and a
// worker) whose node certificates last 30 s: each
// node renews its own at 2/3 of its life, without a restart, and the
// cluster goes on working for five lifetimes: heartbeats and forwarded
// writes (mutual TLS between the nodes) and a remote CLI's calls to the
// first node (its server certificate). The remote CLI's bundle (read
// role, --valid-for 30s) is renewed by the CLI itself, keeps its name
// and role, and so goes on working too.
func TestCertRenewal(t *testing.T) {
	const lifetime = 30 * time.Second
	hosts := newHosts(t, 3)
	ms := newMultiClusterWith(t, hosts, nil, func(h *testHost) []string {
		return append(agentArgs(h, h.Name), "--cert-lifetime", lifetime.String())
	}, "h3")
	leaf := func(m *member) *x509.Certificate {
		t.Helper()
		id, err := pki.LoadIdentity(filepath.Join(m.dir, "pki"))
		if err != nil {
			t.Fatal(err)
		}
		return id.Certificate().Leaf
	}
	first := map[string]*x509.Certificate{}
	for _, m := range ms {
		first[m.name] = leaf(m)
		if life := first[m.name].NotAfter.Sub(pki.IssuedAt(first[m.name])); life > lifetime+time.Second {
			t.Fatalf("%s's certificate lasts %s, want %s", m.name, life, lifetime)
		}
	}
	bundle := filepath.Join(t.TempDir(), "ops.pem")
	ms[0].mustDev(t, "token", "--client", "ops", "--read", "--valid-for", lifetime.String(), "-o", bundle)
	firstBundle, err := pki.LoadClientBundle(bundle)
	if err != nil {
		t.Fatal(err)
	}
	compose := writeTemp(t, "name: e2erenew\nservices:\n  web:\n    image: "+testImage+"\n    command: [\"serve\"]\n")
	ms[1].mustDev(t, "up", "-d", "-f", compose)

	end := time.Now().Add(5*lifetime + 10*time.Second)
	for time.Now().Before(end) {
		nodes := ms[0].nodes(t)
		if nodes["h1"].Status != "ready" || nodes["h2"].Status != "ready" || nodes["h3"].Status != "ready" {
			t.Fatalf("nodes %v at %s", nodes, time.Now().Format(time.TimeOnly))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := hosts[1].CommandContext(ctx, nil, devBin, "--host", "tcp://"+hosts[0].IP+":7948", "--tls-bundle", bundle, "ps", "-p", "e2erenew").CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("a remote CLI at %s: %v\n%s", time.Now().Format(time.TimeOnly), err, out)
		}
		time.Sleep(5 * time.Second)
	}
	// A forwarded write from the follower, past five lifetimes.
	ms[1].mustDev(t, "scale", "-p", "e2erenew", "web=2")
	renewed, err := pki.LoadClientBundle(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if l := renewed.Certificate().Leaf; renewed.Name != "ops" || renewed.Role != pki.RoleRead ||
		!l.NotAfter.After(firstBundle.Certificate().Leaf.NotAfter.Add(lifetime/2)) {
		t.Errorf("the client bundle after five lifetimes: %s %q until %s (first until %s); want read \"ops\", renewed",
			renewed.Role, renewed.Name, l.NotAfter, firstBundle.Certificate().Leaf.NotAfter)
	}
	if fi, err := os.Stat(bundle); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the renewed bundle file: %v, %v; want mode 0600", fi.Mode(), err)
	}
	for _, m := range ms {
		now := leaf(m)
		if now.SerialNumber.Cmp(first[m.name].SerialNumber) == 0 || !now.NotAfter.After(first[m.name].NotAfter.Add(lifetime/2)) {
			t.Errorf("%s's certificate was not renewed: %s until %s (first until %s)", m.name, now.SerialNumber, now.NotAfter, first[m.name].NotAfter)
		}
	}
}

// TestWorkerHoldsNoClusterSecrets on three hosts: h1 creates the cluster,
// h2 and h3 join with the worker token. They join raft as non-voters
// (were any node allowed to vote, three nodes would make three voters),
// print no token, and hold no data key. Their data dirs (raft log and
// snapshots included) hold the cluster secrets sealed, and neither the CA
// key nor a join secret in any form; no node, the manager included, keeps
// the CA key in the clear; raft files are private.
func TestWorkerHoldsNoClusterSecrets(t *testing.T) {
	hosts := newHosts(t, 3)
	ms := newMultiClusterWith(t, hosts, nil, func(h *testHost) []string { return agentArgs(h, h.Name) }, "h2", "h3")
	eventually(t, 30*time.Second, "h2 and h3 ready raft members", func() error {
		nodes := ms[0].nodes(t)
		for _, n := range []string{"h2", "h3"} {
			if r := nodes[n]; r.Status != "ready" || r.Role == "" {
				return fmt.Errorf("nodes %+v", nodes)
			}
		}
		return nil
	})
	if nodes := ms[0].nodes(t); nodes["h1"].Role != "leader" || nodes["h2"].Role != "worker" || nodes["h3"].Role != "worker" {
		t.Errorf("roles %+v; want h1 leader, h2 and h3 workers", nodes)
	}
	for _, args := range [][]string{{"token"}, {"token", "--manager"}, {"token", "--client", "ops"}} {
		if out, err := ms[1].dev(t, args...); err == nil || !strings.Contains(out, "h2 is a worker") {
			t.Errorf("dev %s on the worker h2: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// A worker makes no user's change: not through its own API (it
	// would relay it) ...
	compose := writeTemp(t, "name: e2eworker\nservices:\n  web:\n    image: "+testImage+"\n")
	for _, args := range [][]string{{"up", "-d", "-f", compose}, {"node", "label", "h1", "owned=yes"}} {
		if out, err := ms[1].dev(t, args...); err == nil || !strings.Contains(out, "h2 is a worker") {
			t.Errorf("dev %s on the worker h2: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// ... nor with its node certificate on a manager's API, where a
	// manager's certificate may relay users' requests: no token, no
	// client bundle, no apply.
	id, err := pki.LoadIdentity(filepath.Join(ms[1].dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	hc := hosts[1].HTTPClient(10 * time.Second)
	hc.Transport.(*http.Transport).TLSClientConfig = id.ClientTLS()
	for _, req := range []struct{ method, path, body string }{
		{"GET", "/v1/token?manager=1", ""}, {"GET", "/v1/token?client=evil", ""},
		{"PUT", "/v1/projects/evil", `{"name":"evil","services":[{"name":"web","image":"x","replicas":1}]}`},
	} {
		r, err := http.NewRequest(req.method, "https://"+hosts[0].IP+":7948"+req.path, strings.NewReader(req.body))
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(r)
		if err != nil {
			t.Fatalf("%s %s with h2's certificate: %v", req.method, req.path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s %s on h1 with the worker h2's certificate: %d %s; want 403", req.method, req.path, resp.StatusCode, b)
		}
	}
	if out := ms[0].mustDev(t, "ls"); strings.Contains(out, "evil") || strings.Contains(out, "e2eworker") {
		t.Errorf("a worker's change went through:\n%s", out)
	}
	key, err := pki.LoadDataKey(filepath.Join(ms[0].dir, "pki"))
	if err != nil {
		t.Fatalf("the founder's data key: %v", err)
	}
	for _, m := range ms[1:] {
		if _, err := os.Stat(filepath.Join(m.dir, "pki", pki.DataKeyFile)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s has a data key file (%v)", m.name, err)
		}
	}

	// The worker's copy of the state holds the secrets sealed: found in
	// its raft files, opened with the founder's key.
	sealedRE := regexp.MustCompile(`"sealed":"([A-Za-z0-9+/=]+)"`)
	var secrets pki.ClusterSecrets
	eventually(t, 30*time.Second, "the sealed cluster secrets in h2's raft data", func() error {
		var found error = errors.New("no sealed blob in any file")
		walkFiles(t, filepath.Join(ms[1].dir, "raft"), func(path string, b []byte) {
			for _, m := range sealedRE.FindAllSubmatch(b, -1) {
				blob, err := base64.StdEncoding.DecodeString(string(m[1]))
				if err != nil {
					continue
				}
				if secrets, err = key.OpenClusterSecrets(blob); err == nil {
					found = nil
				}
			}
		})
		return found
	})
	block, _ := pem.Decode(secrets.CAKeyPEM)
	if block == nil || secrets.WorkerSecret == "" || secrets.ManagerSecret == "" {
		t.Fatalf("opened cluster secrets without a CA key PEM or join secrets: %+v", secrets)
	}
	// What is secret is the private scalar (the rest of a key's encoding is
	// a header every key shares, and the public key): look for it in each
	// form the key could be written in.
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, ok := parsed.(*ecdsa.PrivateKey)
	if !ok {
		t.Fatalf("the CA key is a %T, want ECDSA", parsed)
	}
	d, err := ecKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	derB64 := innerBase64(t, block.Bytes, d)[:16] // short enough to sit within one 64-character PEM line
	forms := map[string][]byte{
		"the CA key (raw scalar)":    d,
		"the CA key (PEM body)":      derB64,                                   // as in a PEM, or a JSON string of one
		"the CA key (PEM as base64)": innerBase64(t, secrets.CAKeyPEM, derB64), // a JSON []byte of a PEM
		"the worker join secret":     []byte(secrets.WorkerSecret),
		"the manager join secret":    []byte(secrets.ManagerSecret),
	}
	for _, m := range ms {
		walkFiles(t, m.dir, func(path string, b []byte) {
			for what, form := range forms {
				if bytes.Contains(b, form) {
					t.Errorf("%s: %s holds %s in the clear", m.name, path, what)
				}
			}
		})
	}
	// A compose secret is sealed in the state too, and only the node that
	// runs a pod using it gets its content (in the pod's secret files).
	value := "v3ry-s3cret-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	secretFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(secretFile, []byte(value), 0o600); err != nil {
		t.Fatal(err)
	}
	app := writeTemp(t, "name: e2esecret\nservices:\n  app:\n    image: "+testImage+"\n    command: [\"serve\"]\n"+
		"    secrets: [token]\n    deploy:\n      placement:\n        constraints: [node.hostname == h2]\n"+
		"secrets:\n  token:\n    file: "+secretFile+"\n")
	ms[0].mustDev(t, "up", "-d", "-f", app)
	var ip string
	eventually(t, 60*time.Second, "the app running on h2", func() error {
		for _, p := range ms[0].pods(t, "e2esecret") {
			if p.Node == "h2" && p.State == "running" && p.IP != "" {
				ip = p.IP
				return nil
			}
		}
		return fmt.Errorf("pods %+v", ms[0].pods(t, "e2esecret"))
	})
	eventually(t, 20*time.Second, "the secret read in the pod", func() error {
		resp, err := hosts[1].HTTPClient(5 * time.Second).Get("http://" + ip + ":8080/file?path=/run/secrets/token")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if strings.TrimSpace(string(b)) != value {
			return fmt.Errorf("read %q", b)
		}
		return nil
	})
	// Every node has the apply in its state (else a node would pass for
	// not having been sent it yet).
	index := func(m *member) uint64 {
		c, err := api.NewClient("unix://"+filepath.Join(m.dir, "dev.sock"), nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := c.Status(ctx)
		if err != nil {
			return 0
		}
		return st.Index
	}
	applied := index(ms[0])
	eventually(t, 20*time.Second, "every node past the apply", func() error {
		for _, m := range ms {
			if got := index(m); got < applied {
				return fmt.Errorf("%s at index %d, want %d", m.name, got, applied)
			}
		}
		return nil
	})
	sum := sha256.Sum256([]byte(value))
	forms = map[string][]byte{"the compose secret": []byte(value), "the compose secret (base64)": innerBase64(t, []byte(value), []byte(value)),
		"the compose secret's SHA-256": []byte(hex.EncodeToString(sum[:]))}
	for _, m := range ms {
		walkFiles(t, m.dir, func(path string, b []byte) {
			rel, _ := filepath.Rel(m.dir, path)
			for what, form := range forms {
				if bytes.Contains(b, form) && (m.name != "h2" || !strings.HasPrefix(rel, "secrets/")) {
					t.Errorf("%s: %s holds %s", m.name, path, what)
				}
			}
		})
	}

	// The manager prints the tokens whose secrets these are.
	if tok, err := pki.ParseToken(strings.TrimSpace(ms[0].mustDev(t, "token", "--manager"))); err != nil || tok.Secret != secrets.ManagerSecret {
		t.Errorf("dev token --manager on h1: %v, %q", err, tok.Secret)
	}
	err = filepath.WalkDir(filepath.Join(ms[1].dir, "raft"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if want := map[bool]os.FileMode{true: 0o700, false: 0o600}[d.IsDir()]; fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// innerBase64 is the part of base64(data) that encodes inner (a part of
// data) alone, whatever data's length: it is in every base64 encoding of
// data.
func innerBase64(t *testing.T, data, inner []byte) []byte {
	t.Helper()
	i := bytes.Index(data, inner)
	if i < 0 {
		t.Fatalf("%q is not in the data", inner)
	}
	start := (i + 2) / 3 * 3 // the first 3-byte group that starts within inner
	n := (i + len(inner) - start) / 3 * 3
	if n < 6 {
		t.Fatalf("%q is too short to find in base64", inner)
	}
	return []byte(base64.StdEncoding.EncodeToString(data[start : start+n]))
}

// walkFiles calls fn with every regular file under dir and its content;
// a file that vanishes meanwhile (a snapshot replaced) is skipped.
func walkFiles(t *testing.T, dir string, fn func(path string, b []byte)) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		fn(path, b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
