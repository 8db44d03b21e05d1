package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/devhq/dev/cluster/pki"
)

var caLine = regexp.MustCompile(`cluster CA\s+(sha256:[0-9a-f]{64})`)

// TestCARotation moves a 3-node cluster (one manager, two workers) to a
// new CA with `dev ca rotate` while a worker is down: the rotation waits
// for it, the worker comes back with its old certificate and only the old
// CA (it takes the cross-signed chain), moves, and the old CA is dropped.
// Nothing restarts and no container is replaced for it; the old join
// token stops working; a client bundle used during the rotation renewed
// itself and works, one not used is refused and told why.
func TestCARotation(t *testing.T) {
	hosts := newHosts(t, 3)
	ms := newMultiClusterWith(t, hosts, nil, func(h *testHost) []string { return agentArgs(h, h.Name) }, "h2", "h3")
	compose := writeTemp(t, "name: e2eca\nservices:\n  web:\n    image: "+testImage+"\n    command: [\"serve\"]\n    deploy:\n      replicas: 3\n")
	ms[0].mustDev(t, "up", "-d", "-f", compose)
	eventually(t, 60*time.Second, "3 web pods running", func() error {
		if n := sum(runningOn(t, hosts, "e2eca", "web")); n != 3 {
			return fmt.Errorf("%d running", n)
		}
		return nil
	})
	before := projectContainers(t, hosts[:2], "e2eca")
	fingerprint := func() string {
		t.Helper()
		m := caLine.FindStringSubmatch(ms[0].mustDev(t, "ca", "status"))
		if m == nil {
			t.Fatal("dev ca status prints no cluster CA")
		}
		return m[1]
	}
	oldFP := fingerprint()
	dir := t.TempDir()
	used, unused := filepath.Join(dir, "used.pem"), filepath.Join(dir, "unused.pem")
	ms[0].mustDev(t, "token", "--client", "used", "--read", "-o", used)
	ms[0].mustDev(t, "token", "--client", "unused", "--read", "-o", unused)
	remote := func(bundle string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := hosts[1].CommandContext(ctx, nil, devBin, append([]string{"--host", "tcp://" + hosts[0].IP + ":7948", "--tls-bundle", bundle}, args...)...).CombinedOutput()
		return string(out), err
	}

	ms[2].stop()
	out := ms[0].mustDev(t, "ca", "rotate", "-d")
	if !strings.Contains(out, "rotating the cluster CA from "+oldFP) {
		t.Fatalf("dev ca rotate -d:\n%s", out)
	}
	if out, err := remote(used, "ps", "-p", "e2eca"); err != nil || !strings.Contains(out, "renewed client bundle") {
		t.Errorf("a remote CLI during the rotation: %v\n%s\nwant it to renew its bundle", err, out)
	}
	eventually(t, 30*time.Second, "h1 and h2 moved, the rotation waiting for h3", func() error {
		out := ms[0].mustDev(t, "ca", "status")
		if !strings.Contains(out, "2 of 3 nodes moved, waiting for h3") {
			return errors.New(out)
		}
		return nil
	})
	if fp := fingerprint(); fp != oldFP {
		t.Fatalf("the cluster CA changed to %s while h3 holds none of its certificates", fp)
	}

	// h3 comes back with the old CA alone in its ca.crt.
	startMemberAgent(t, ms[2], agentArgs(hosts[2], "h3"), "nodes")
	var newFP string
	eventually(t, 90*time.Second, "the rotation done", func() error {
		out := ms[0].mustDev(t, "ca", "status")
		if strings.Contains(out, "rotating") {
			return errors.New(out)
		}
		newFP = fingerprint()
		return nil
	})
	if newFP == oldFP {
		t.Fatal("the rotation ended on the old CA")
	}
	for _, m := range ms {
		id, err := pki.LoadIdentity(filepath.Join(m.dir, "pki"))
		if err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		roots := id.Roots()
		if len(roots) != 1 || pki.Fingerprint(roots[0]) != newFP {
			t.Errorf("%s trusts %d CAs (%v), want the new one alone", m.name, len(roots), roots)
			continue
		}
		if !pki.SignedBy(id.Certificate().Leaf, roots[0]) {
			t.Errorf("%s's certificate is not of the new CA", m.name)
		}
	}
	eventually(t, 60*time.Second, "every node ready", func() error {
		for name, n := range ms[0].nodes(t) {
			if n.Status != "ready" {
				return fmt.Errorf("%s is %s", name, n.Status)
			}
		}
		return nil
	})
	// Writes and scheduling go on; no container was replaced for the
	// rotation, and every one keeps the cluster's label.
	ms[0].mustDev(t, "scale", "-p", "e2eca", "web=4")
	eventually(t, 60*time.Second, "4 web pods running", func() error {
		if n := sum(runningOn(t, hosts, "e2eca", "web")); n != 4 {
			return fmt.Errorf("%d running", n)
		}
		return nil
	})
	after := projectContainers(t, hosts, "e2eca")
	var label string
	for id, l := range before {
		label = l
		if _, ok := after[id]; !ok {
			t.Errorf("container %.12s of h1 or h2 was replaced", id)
		}
	}
	for id, l := range after {
		if l != label || l == "" {
			t.Errorf("container %.12s carries cluster label %q, want %q", id, l, label)
		}
	}

	// The old join token pins the old CA: no node answers to it now.
	if err := pinnedDial(hosts[0].IP, oldFP); err == nil {
		t.Error("a join with the old token's CA fingerprint reached h1")
	}
	if err := pinnedDial(hosts[0].IP, newFP); err != nil {
		t.Errorf("a join with the new CA's fingerprint: %v", err)
	}
	if tok := ms[0].mustDev(t, "token"); !strings.Contains(tok, strings.TrimPrefix(newFP, "sha256:")) {
		t.Errorf("dev token does not pin the new CA:\n%s", tok)
	}

	if out, err := remote(used, "ps", "-p", "e2eca"); err != nil {
		t.Errorf("the bundle renewed during the rotation: %v\n%s", err, out)
	}
	if out, err := remote(unused, "ps", "-p", "e2eca"); err == nil || !strings.Contains(out, "dev ca rotate") {
		t.Errorf("the bundle not used during the rotation: %v\n%s\nwant refused, naming dev ca rotate", err, out)
	}
	b, err := os.ReadFile(used)
	if err != nil || !bytes.Contains(b, []byte(newFP)) {
		t.Errorf("the renewed bundle does not name the new CA (%v)", err)
	}
}

// projectContainers maps the IDs of a project's containers on hosts to
// their cluster label.
func projectContainers(t *testing.T, hosts []*testHost, project string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, h := range hosts {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cs, err := h.Docker.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "dev.project="+project))})
		cancel()
		if err != nil {
			t.Fatalf("list containers on %s: %v", h.Name, err)
		}
		for _, c := range cs {
			out[c.ID] = c.Labels["dev.cluster"]
		}
	}
	return out
}

// pinnedDial is the first step of `dev join` with a token that pins the CA
// of fingerprint: a TLS handshake with the node's API at ip.
func pinnedDial(ip, fingerprint string) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", net.JoinHostPort(ip, "7948"), pki.PinnedTLS(fingerprint))
	if err != nil {
		return err
	}
	return conn.Close()
}
