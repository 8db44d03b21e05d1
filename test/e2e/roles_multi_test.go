package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/peers"
	"github.com/devhq/dev/cluster/state"
)

// TestRolesMultiHost: roles hold across nodes. On three hosts, a read
// client talking to a follower lists but gets 403 on scale, exec and token;
// an admin client's write through a follower reaches the leader, but every
// node-only route refuses it; a text/plain POST is refused; and a node's
// own certificate can neither register another node nor forward a write of
// another node's record, or a write only the leader's loops make.
func TestRolesMultiHost(t *testing.T) {
	hosts := newHosts(t, 3)
	ms := newMultiCluster(t, hosts, nil)
	dir := t.TempDir()
	admin, read := filepath.Join(dir, "alice.pem"), filepath.Join(dir, "bob.pem")
	ms[0].mustDev(t, "token", "--client", "alice", "-o", admin)
	ms[0].mustDev(t, "token", "--client", "bob", "--read", "-o", read)
	compose := writeTemp(t, "name: e2eroles3\nservices:\n  web:\n    image: "+testImage+"\n")
	ms[0].mustDev(t, "up", "-d", "-f", compose)

	var leader *member
	var followers []*member
	eventually(t, 30*time.Second, "a leader and two followers", func() error {
		nodes := ms[0].nodes(t)
		leader, followers = nil, nil
		for _, m := range ms {
			if nodes[m.name].Role == "leader" {
				leader = m
			} else if nodes[m.name].Status == api.NodeReady {
				followers = append(followers, m)
			}
		}
		if leader == nil || len(followers) != 2 {
			return fmt.Errorf("nodes %v", nodes)
		}
		return nil
	})
	f, other := followers[0], followers[1]
	apiOf := func(m *member) string { return m.h.IP + ":7948" }
	remote := func(m *member, bundle string, args ...string) (string, error) {
		return f.dev(t, append([]string{"--host", "tcp://" + apiOf(m), "--tls-bundle", bundle}, args...)...)
	}

	// A read client on a follower: looks, changes nothing.
	for _, args := range [][]string{{"ps", "-p", "e2eroles3"}, {"services"}, {"nodes"}} {
		if out, err := remote(f, read, args...); err != nil {
			t.Errorf("read client on %s: dev %s: %v\n%s", f.name, strings.Join(args, " "), err, out)
		}
	}
	for _, args := range [][]string{{"scale", "-p", "e2eroles3", "web=2"}, {"exec", "-p", "e2eroles3", "web", "/app", "exit", "0"}, {"token"}} {
		if out, err := remote(f, read, args...); err == nil || !strings.Contains(out, "needs the admin role") {
			t.Errorf("read client on %s: dev %s: %v %q, want refused for want of the admin role", f.name, strings.Join(args, " "), err, out)
		}
	}
	// An admin client's write through a follower is forwarded to the leader.
	if out, err := remote(f, admin, "scale", "-p", "e2eroles3", "web=2", "-d"); err != nil {
		t.Fatalf("admin client on %s: dev scale: %v\n%s", f.name, err, out)
	}
	eventually(t, 60*time.Second, "web at 2", func() error {
		if n := len(running(ms[0].pods(t, "e2eroles3"), "web")); n != 2 {
			return fmt.Errorf("%d running", n)
		}
		return nil
	})

	adminHTTP := bundleClient(t, admin)
	for _, m := range []*member{leader, f} {
		for _, r := range []struct{ method, path, body string }{
			{"POST", peers.PathApply, `{"entry":"AA=="}`},
			{"POST", peers.PathRegister, `{"name":"evil"}`},
			{"GET", peers.PathImage + "?ref=x", ""},
			{"DELETE", peers.PathVolumes + "e2eroles3", ""},
		} {
			if code, body := call(t, adminHTTP, r.method, "https://"+apiOf(m)+r.path, "application/json", r.body); code != http.StatusForbidden {
				t.Errorf("admin client %s %s on %s: %d %s, want 403", r.method, r.path, m.name, code, body)
			}
		}
		if code, body := call(t, adminHTTP, "POST", "https://"+apiOf(m)+"/v1/projects/e2eroles3/scale", "text/plain", `{"replicas":{"web":3}}`); code != http.StatusUnsupportedMediaType {
			t.Errorf("text/plain scale on %s: %d %s, want 415", m.name, code, body)
		}
	}

	// A follower's own certificate, against the leader.
	nodeHTTP := identityClient(t, filepath.Join(f.dir, "pki"))
	leaderURL := "https://" + apiOf(leader)
	if code, body := call(t, nodeHTTP, "POST", leaderURL+peers.PathRegister, "application/json", `{"name":"`+other.name+`"}`); code != http.StatusForbidden {
		t.Errorf("%s registers %s: %d %s, want 403", f.name, other.name, code, body)
	}
	forward := func(cmd state.Command) (int, string) {
		entry, err := state.Encode(cmd)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(peers.ApplyRequest{Entry: entry})
		return call(t, nodeHTTP, "POST", leaderURL+peers.PathApply, "application/json", string(b))
	}
	for name, cmd := range map[string]state.Command{
		"another node's record": &state.PutNode{Node: api.Node{Name: other.name, Status: api.NodeDown, Address: other.h.IP}},
		"a node removal":        &state.DeleteNode{Name: other.name},
		"a placement":           &state.AssignPods{Nodes: map[string]string{"e2eroles3-web-1": f.name}},
	} {
		if code, body := forward(cmd); code != http.StatusForbidden {
			t.Errorf("%s forwards %s: %d %s, want 403", f.name, name, code, body)
		}
	}
	if n := ms[0].nodes(t)[other.name]; n.Status != api.NodeReady {
		t.Errorf("%s is %s after the refused writes, want ready", other.name, n.Status)
	}
	ms[0].mustDev(t, "down", "-p", "e2eroles3")
}
