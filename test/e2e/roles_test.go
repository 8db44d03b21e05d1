package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/pki"
)

// TestRoles: every API route has a role, checked from the certificate, on
// the agent's real TLS listener. A read client lists but may not change,
// exec or mint tokens; an admin client may not use node-only routes; a node
// may not register another node; a body that is not JSON is refused.
func TestRoles(t *testing.T) {
	c := newCluster(t)
	dir := t.TempDir()
	admin := filepath.Join(dir, "alice.pem")
	read := filepath.Join(dir, "bob.pem")
	// A just-started cluster records its CA a moment after it answers.
	eventually(t, 30*time.Second, "dev token --client alice", func() error {
		out, err := c.dev("token", "--client", "alice", "-o", admin)
		if err != nil || !strings.Contains(out, "role admin") {
			return fmt.Errorf("%v: %q", err, out)
		}
		return nil
	})
	if out := c.mustDev("token", "--client", "bob", "--read", "-o", read); !strings.Contains(out, "role read") {
		t.Errorf("dev token --client bob --read: %q", out)
	}
	compose := writeTemp(t, "name: e2eroles\nservices:\n  web:\n    image: "+testImage+"\n")
	c.mustDev("up", "-d", "-f", compose)

	remote := func(bundle string, args ...string) (string, error) {
		args = append([]string{"--host", "tcp://" + c.api, "--tls-bundle", bundle}, args...)
		return c.dev(args...)
	}
	// The read client sees everything a user looks at...
	for _, args := range [][]string{{"ps", "-p", "e2eroles"}, {"services"}, {"nodes"}, {"events"}, {"logs", "-p", "e2eroles", "web"}} {
		if out, err := remote(read, args...); err != nil {
			t.Errorf("read client: dev %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// ...and changes nothing.
	for _, args := range [][]string{{"scale", "-p", "e2eroles", "web=2"}, {"exec", "-p", "e2eroles", "web", "/app", "exit", "0"},
		{"token"}, {"down", "-p", "e2eroles"}} {
		out, err := remote(read, args...)
		if err == nil || !strings.Contains(out, "needs the admin role") {
			t.Errorf("read client: dev %s: %v %q, want refused for want of the admin role", strings.Join(args, " "), err, out)
		}
	}
	if rows := c.ps("e2eroles"); len(rows) != 1 {
		t.Errorf("after the read client's attempts: %d pods, want the 1 deployed", len(rows))
	}
	// The admin client may change things (and see the token).
	if out, err := remote(admin, "token"); err != nil {
		t.Errorf("admin client: dev token: %v\n%s", err, out)
	}

	adminHTTP := bundleClient(t, admin)
	// Node-only routes refuse every client role.
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/v1/internal/apply", `{"entry":"AA=="}`},
		{"POST", "/v1/internal/register", `{"name":"evil"}`},
		{"GET", "/v1/internal/image?ref=x", ""},
		{"DELETE", "/v1/internal/volumes/e2eroles", ""},
	} {
		if code, body := call(t, adminHTTP, r.method, "https://"+c.api+r.path, "application/json", r.body); code != http.StatusForbidden {
			t.Errorf("admin client %s %s: %d %s, want 403", r.method, r.path, code, body)
		}
	}
	// A body that is not JSON is refused, whoever sends it.
	if code, body := call(t, adminHTTP, "POST", "https://"+c.api+"/v1/projects/e2eroles/scale", "text/plain", `{"web":2}`); code != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain scale: %d %s, want 415", code, body)
	}

	// The node's own certificate may not register another node.
	nodeHTTP := identityClient(t, filepath.Join(c.dir, "pki"))
	if code, body := call(t, nodeHTTP, "POST", "https://"+c.api+"/v1/internal/register", "application/json", `{"name":"another-node"}`); code != http.StatusForbidden {
		t.Errorf("node registers another node: %d %s, want 403", code, body)
	}
	c.mustDev("down", "-p", "e2eroles")
}

// bundleClient is an HTTPS client presenting a `dev token --client` bundle.
func bundleClient(t *testing.T, path string) *http.Client {
	t.Helper()
	id, err := pki.LoadClientBundle(path)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: id.ClientTLS()}}
}

// identityClient is an HTTPS client presenting a node's own certificate
// (the agent's pki folder).
func identityClient(t *testing.T, dir string) *http.Client {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, pki.NodeCertFile), filepath.Join(dir, pki.NodeKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, pki.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: "localhost"}}}
}

func call(t *testing.T, hc *http.Client, method, url, ctype, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	var e struct{ Message string }
	if json.Unmarshal(b, &e) == nil && e.Message != "" {
		return resp.StatusCode, e.Message
	}
	return resp.StatusCode, fmt.Sprintf("%q", b)
}
