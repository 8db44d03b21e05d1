package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
)

// sess runs the CLI on m's host against m's agent, with stdin.
func (m *member) sess(t *testing.T, stdin string, args ...string) sessResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return sessRun(t, m.h.CommandContext(ctx, m.env(), devBin, args...), stdin)
}

// TestMultiHostExec: exec, run and stop/start reach pods on any node from
// any node (relayed over the nodes' mutual-TLS API).
func TestMultiHostExec(t *testing.T) {
	hosts := newHosts(t, 2)
	ms := newReadyMultiCluster(t, hosts)
	file := writeTemp(t, `name: e2emexec
services:
  web:
    image: dev-testapp:e2e
    command: ["serve"]
    deploy:
      replicas: 2
  pinned:
    image: dev-testapp:e2e
    command: ["serve"]
    deploy:
      placement:
        constraints: ["node.hostname==h2"]
`)
	ms[0].mustDev(t, "up", "-d", "-f", file)
	var web []podRow
	eventually(t, 60*time.Second, "a web pod on each node", func() error {
		web = running(ms[0].pods(t, "e2emexec"), "web")
		if len(web) != 2 || web[0].Node == web[1].Node {
			return fmt.Errorf("web pods %+v", web)
		}
		return nil
	})

	t.Run("exec from every node into every pod", func(t *testing.T) {
		for _, m := range ms {
			for _, p := range web {
				res := m.sess(t, "", "exec", "-p", "e2emexec", p.Name, "/app", "cat", "/etc/hostname")
				if res.code != 0 || strings.TrimSpace(res.stdout) != p.Name {
					t.Errorf("exec from %s into %s (on %s): %s", m.name, p.Name, p.Node, res)
				}
				res = m.sess(t, "", "exec", "-p", "e2emexec", p.Name, "/app", "exit", "7")
				if res.code != 7 {
					t.Errorf("exec exit 7 from %s into %s (on %s): %s", m.name, p.Name, p.Node, res)
				}
			}
		}
	})

	// The pod on the other node than h1.
	remote := web[0]
	if remote.Node == "h1" {
		remote = web[1]
	}
	t.Run("stdin and a tty across nodes", func(t *testing.T) {
		res := ms[0].sess(t, "across\n", "exec", "-i", "-p", "e2emexec", remote.Name, "/app", "cat", "/dev/stdin")
		if res.code != 0 || res.stdout != "across\n" {
			t.Errorf("exec -i from h1 into %s on %s: %s", remote.Name, remote.Node, res)
		}
		res = ms[0].sess(t, "", "exec", "-t", "-p", "e2emexec", remote.Name, "/app", "exit", "0")
		if res.code != 0 || !strings.Contains(res.stdout, "testapp: exit 0\r\n") {
			t.Errorf("exec -t from h1 into %s on %s: %s", remote.Name, remote.Node, res)
		}
	})

	t.Run("stop and start a pod on another node", func(t *testing.T) {
		ms[0].mustDev(t, "stop", "-p", "e2emexec", "-t", "1", "web")
		for _, p := range ms[0].pods(t, "e2emexec") {
			if p.Service == "web" && (p.State != "exited" || p.Message != "stopped (dev stop)") {
				t.Fatalf("after stop from h1: %s on %s is %s %q", p.Name, p.Node, p.State, p.Message)
			}
		}
		ms[0].mustDev(t, "start", "-p", "e2emexec", "web")
		if n := len(running(ms[0].pods(t, "e2emexec"), "web")); n != 2 {
			t.Fatalf("after start from h1: %d web pods running, want 2", n)
		}
	})

	t.Run("run where the placement says, attached from another node", func(t *testing.T) {
		res := ms[0].sess(t, "", "run", "-p", "e2emexec", "pinned", "exit", "9")
		if res.code != 9 || !strings.Contains(res.stdout, "testapp: exit 9") {
			t.Fatalf("run pinned exit 9 from h1: %s", res)
		}
		res = ms[0].sess(t, "", "run", "-p", "e2emexec", "--rm=false", "pinned", "cat", "/etc/hostname")
		if res.code != 0 || !strings.HasPrefix(res.stdout, "e2emexec-pinned-run-") {
			t.Fatalf("run --rm=false pinned from h1: %s", res)
		}
		name := strings.TrimSpace(res.stdout)
		for _, h := range hosts {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			cs, err := h.Docker.ContainerList(ctx, container.ListOptions{All: true,
				Filters: filters.NewArgs(filters.Arg("label", "dev.oneoff=true"))})
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			if h.Name == "h2" {
				want = 1
			}
			if len(cs) != want || (want == 1 && cs[0].Names[0] != "/"+name) {
				t.Errorf("one-off containers on %s: %d, want %d (%s)", h.Name, len(cs), want, name)
			}
		}
	})
}
