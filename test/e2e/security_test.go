package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/pki"
)

// TestRevocation on two hosts: a revoked client bundle is refused while a
// new one of the same name works; after dev token --rotate the old join
// token admits no one; `dev node rm` refuses a ready node
// without --force, and with it the node is forgotten and its certificate
// refused on the raft and API ports of the other node, at the handshake.
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
	ms[0].mustDev(t, "token", "--revoke", "ops")
	eventually(t, 10*time.Second, "the revoked bundle refused", func() error {
		if out, err := remote(old); err == nil {
			return fmt.Errorf("dev nodes with a revoked bundle worked:\n%s", out)
		}
		return nil
	})
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
		body := `{"name":"h9","secret":"` + tok.Secret + `"}`
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
