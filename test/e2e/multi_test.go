package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/devhq/dev/cluster/agent/docker"
)

// member is one cluster node: a test host running `dev agent`.
type member struct {
	h    *testHost
	dir  string
	pid  int
	name string
}

func (m *member) env() []string {
	return []string{"DEV_DATA_DIR=" + m.dir, "DEV_HOST=unix://" + filepath.Join(m.dir, "dev.sock")}
}

// dev runs the CLI against this member's agent (from inside its host).
func (m *member) dev(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := m.h.CommandContext(ctx, m.env(), devBin, args...).CombinedOutput()
	return string(out), err
}

func (m *member) mustDev(t *testing.T, args ...string) string {
	t.Helper()
	out, err := m.dev(t, args...)
	if err != nil {
		t.Fatalf("dev %s on %s: %v\n%s", strings.Join(args, " "), m.name, err, out)
	}
	return out
}

type nodeRow struct {
	Name   string            `json:"name"`
	Status string            `json:"status"`
	Role   string            `json:"role"`
	Labels map[string]string `json:"labels"`
}

func (m *member) nodes(t *testing.T) map[string]nodeRow {
	t.Helper()
	out, err := m.dev(t, "nodes", "-o", "json")
	if err != nil {
		return nil
	}
	var rows []nodeRow
	if json.Unmarshal([]byte(out), &rows) != nil {
		return nil
	}
	res := map[string]nodeRow{}
	for _, r := range rows {
		res[r.Name] = r
	}
	return res
}

func (m *member) pods(t *testing.T, project string) []podRow {
	t.Helper()
	out, err := m.dev(t, "ps", "-p", project, "-o", "json")
	if err != nil {
		return nil
	}
	var rows []podRow
	_ = json.Unmarshal([]byte(out), &rows)
	return rows
}

func (m *member) stop() {
	if m.pid > 0 {
		_ = syscall.Kill(m.pid, syscall.SIGTERM)
		for i := 0; i < 100 && syscall.Kill(m.pid, 0) == nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
		_ = syscall.Kill(m.pid, syscall.SIGKILL)
		m.pid = 0
	}
}

// startMemberAgent starts m's agent in the background (`dev agent` in its
// host, with its data dir and args, logging to agent.log there, appended)
// and waits until `dev ready...` succeeds there.
func startMemberAgent(t *testing.T, m *member, args []string, ready ...string) {
	t.Helper()
	cmd := m.h.Command(m.env(), devBin, append([]string{"agent", "--data-dir", m.dir}, args...)...)
	logf, err := os.OpenFile(filepath.Join(m.dir, "agent.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	m.pid = cmd.Process.Pid
	go func() { _ = cmd.Wait() }()
	eventually(t, 30*time.Second, m.name+"'s agent answers dev "+strings.Join(ready, " "), func() error {
		_, err := m.dev(t, ready...)
		return err
	})
}

var startedPid = regexp.MustCompile(`started dev agent \(pid (\d+)`)

// agentArgs are the flags every test agent gets.
func agentArgs(h *testHost, name string) []string {
	return []string{"--node-name", name, "--advertise-addr", h.IP, "--fast", "--node-grace", "10s"}
}

// newCluster3 starts an agent on h[0] (bootstrap) and joins the others with
// `dev join`, as a user would.
func newMultiCluster(t *testing.T, hosts []*testHost, labels map[string]string) []*member {
	t.Helper()
	return newMultiClusterWith(t, hosts, labels, func(h *testHost) []string { return agentArgs(h, h.Name) })
}

// newReadyMultiCluster is newMultiCluster that returns once every host is
// a ready node, as the last one to join sees it.
func newReadyMultiCluster(t *testing.T, hosts []*testHost) []*member {
	t.Helper()
	ms := newMultiCluster(t, hosts, nil)
	eventually(t, 30*time.Second, fmt.Sprintf("%d ready nodes", len(hosts)), func() error {
		nodes := ms[len(ms)-1].nodes(t)
		if len(nodes) != len(hosts) {
			return fmt.Errorf("nodes %v", nodes)
		}
		for _, h := range hosts {
			if nodes[h.Name].Status != "ready" {
				return fmt.Errorf("nodes %v", nodes)
			}
		}
		return nil
	})
	return ms
}

// newMultiClusterWith is newMultiCluster with the agent flags args gives;
// the hosts named in workers join with the worker token (the others as
// managers).
func newMultiClusterWith(t *testing.T, hosts []*testHost, labels map[string]string, agentFlags func(*testHost) []string, workers ...string) []*member {
	t.Helper()
	var ms []*member
	t.Cleanup(func() {
		for _, m := range ms {
			m.stop()
			if b, err := os.ReadFile(filepath.Join(m.dir, "agent.log")); err == nil {
				if t.Failed() {
					t.Logf("agent log of %s:\n%s", m.name, lastLines(string(b), 40))
				}
				// DEV_E2E_LOGS=DIR keeps every agent's whole log for a post-mortem.
				if keep := os.Getenv("DEV_E2E_LOGS"); keep != "" {
					name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()) + "-" + m.name + ".log"
					if err := os.MkdirAll(keep, 0o755); err == nil {
						_ = os.WriteFile(filepath.Join(keep, name), b, 0o644)
					}
				}
			}
			removeAgentDir(t, m.dir)
		}
	})
	for i, h := range hosts {
		dir, err := os.MkdirTemp("", "dev-e2e-"+h.Name)
		if err != nil {
			t.Fatal(err)
		}
		m := &member{h: h, dir: dir, name: h.Name}
		ms = append(ms, m)
		args := agentFlags(h)
		if l := labels[h.Name]; l != "" {
			args = append(args, "--label", l)
		}
		if i == 0 {
			startMemberAgent(t, m, args, "token") // as `dev up` starts the first agent
			continue
		}
		if slices.Contains(workers, h.Name) {
			joinAs(t, ms[0], m, "", args)
			continue
		}
		joinMember(t, ms[0], m, args)
	}
	return ms
}

// joinMember runs `dev join` on m's host against the cluster of first, as
// a manager: the clusters of these tests have up to three voters.
func joinMember(t *testing.T, first, m *member, args []string) {
	t.Helper()
	joinAs(t, first, m, "--manager", args)
}

// joinAs is joinMember with the token `dev token tokenArgs...` prints:
// "--manager", or none for a worker.
func joinAs(t *testing.T, first, m *member, tokenArgs string, args []string) {
	t.Helper()
	token := strings.TrimSpace(first.mustDev(t, strings.Fields("token "+tokenArgs)...))
	out := m.mustDev(t, append([]string{"join", first.h.IP, "--token", token}, args...)...)
	sm := startedPid.FindStringSubmatch(out)
	if sm == nil {
		t.Fatalf("dev join on %s: no agent pid in output:\n%s", m.name, out)
	}
	m.pid, _ = strconv.Atoi(sm[1])
}

// runningOn counts a project's running containers on each host's engine.
func runningOn(t *testing.T, hosts []*testHost, project, service string) map[string]int {
	t.Helper()
	return containersOn(t, hosts, project, service, "")
}

// containersOn counts per host the running containers of a service's
// pods: its own (sidecar "") or those of one of its sidecars.
func containersOn(t *testing.T, hosts []*testHost, project, service, sidecar string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, h := range hosts {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cs, err := h.Docker.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(
			filters.Arg("label", "dev.project="+project), filters.Arg("label", "dev.service="+service))})
		cancel()
		if err == nil {
			for _, c := range cs {
				if c.Labels[docker.LabelSidecar] == sidecar {
					out[h.Name]++
				}
			}
		}
	}
	return out
}

// containerNames lists per host the names of a project's running
// containers, for failure messages.
func containerNames(t *testing.T, hosts []*testHost, project string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, h := range hosts {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cs, err := h.Docker.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("name", project))})
		cancel()
		if err == nil {
			for _, c := range cs {
				out[h.Name] = append(out[h.Name], strings.Join(c.Names, ","))
			}
		}
	}
	return out
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func TestMultiHostCluster(t *testing.T) {
	all := newHosts(t, 4)
	hosts, h4 := all[:3], all[3]
	ms := newMultiCluster(t, hosts, map[string]string{"h2": "zone=east"})

	t.Run("three nodes, one leader, every node agrees", func(t *testing.T) {
		eventually(t, 30*time.Second, "3 ready nodes seen alike from every node", func() error {
			var first string
			for _, m := range ms {
				nodes := m.nodes(t)
				if len(nodes) != 3 {
					return fmt.Errorf("%s sees %d nodes", m.name, len(nodes))
				}
				leaders, voters := 0, 0
				for _, n := range nodes {
					if n.Status != "ready" {
						return fmt.Errorf("%s sees %s %s", m.name, n.Name, n.Status)
					}
					switch n.Role {
					case "leader":
						leaders++
					case "voter":
						voters++
					}
				}
				if leaders != 1 || voters != 2 {
					return fmt.Errorf("%s sees %d leaders, %d voters", m.name, leaders, voters)
				}
				b, _ := json.Marshal(nodes)
				if first == "" {
					first = string(b)
				} else if string(b) != first {
					return fmt.Errorf("%s disagrees:\n%s\nvs\n%s", m.name, b, first)
				}
			}
			return nil
		})
	})

	t.Run("wrong token refused, cluster unchanged", func(t *testing.T) {
		token := strings.TrimSpace(ms[0].mustDev(t, "token"))
		bad := token[:len(token)-4] + "aaaa"
		dir := t.TempDir()
		out, err := hosts[2].Command([]string{"DEV_DATA_DIR=" + dir, "DEV_HOST=unix://" + filepath.Join(dir, "dev.sock")},
			devBin, "join", hosts[0].IP, "--token", bad, "--node-name", "intruder", "--advertise-addr", hosts[2].IP,
			"--gossip-port", "17946", "--raft-port", "17947", "--api-port", "17948").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "secret is wrong") {
			t.Fatalf("join with a wrong token: err=%v\n%s", err, out)
		}
		if n := len(ms[0].nodes(t)); n != 3 {
			t.Fatalf("cluster has %d nodes after a refused join", n)
		}
	})

	t.Run("a client without a certificate is refused; with one it works", func(t *testing.T) {
		c := hosts[0].HTTPClient(5 * time.Second)
		c.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // no client cert
		resp, err := c.Get("https://" + hosts[0].IP + ":7948/v1/nodes")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("GET /v1/nodes without a client certificate: %s %s", resp.Status, body)
			}
		}
		bundle := filepath.Join(t.TempDir(), "me.pem")
		ms[0].mustDev(t, "token", "--client", "me", "-o", bundle)
		out, err := hosts[1].Command(nil, devBin, "--host", "tcp://"+hosts[0].IP+":7948", "--tls-bundle", bundle, "nodes").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "h3") {
			t.Fatalf("dev nodes with a client bundle: %v\n%s", err, out)
		}
	})

	// huge never fits: `up` deploys everything and then times out waiting.
	if out, err := ms[0].dev(t, "up", "-d", "-f", fixture("multi"), "--timeout", "20s"); err == nil || !strings.Contains(out, "did not converge") {
		t.Fatalf("dev up of a project with an unschedulable service: err=%v\n%s", err, out)
	}

	t.Run("placement and resources", func(t *testing.T) {
		eventually(t, 30*time.Second, "zoned on h2 only, huge pending with a reason", func() error {
			var zonedElsewhere, zonedOnH2 int
			var huge podRow
			for _, p := range ms[1].pods(t, "e2emulti") {
				switch p.Service {
				case "zoned":
					if p.Node == "h2" && p.State == "running" {
						zonedOnH2++
					} else if p.Node != "" && p.Node != "h2" {
						zonedElsewhere++
					}
				case "huge":
					huge = p
				}
			}
			if zonedOnH2 != 2 || zonedElsewhere != 0 {
				return fmt.Errorf("zoned: %d running on h2, %d elsewhere", zonedOnH2, zonedElsewhere)
			}
			if huge.State != "pending" || !strings.Contains(huge.Message, "insufficient memory") {
				return fmt.Errorf("huge: state %q message %q", huge.State, huge.Message)
			}
			return nil
		})
	})

	t.Run("scale web=6 spreads 2/2/2 and pods reach each other across nodes", func(t *testing.T) {
		ms[2].mustDev(t, "scale", "-p", "e2emulti", "web=6")
		var pods []podRow
		eventually(t, 60*time.Second, "6 running web pods, 2 per node", func() error {
			pods = running(ms[0].pods(t, "e2emulti"), "web")
			per := map[string]int{}
			for _, p := range pods {
				per[p.Node]++
			}
			if len(pods) != 6 || per["h1"] != 2 || per["h2"] != 2 || per["h3"] != 2 {
				return fmt.Errorf("web pods per node %v", per)
			}
			return nil
		})
		var onA, onC podRow
		for _, p := range pods {
			if p.Node == "h1" {
				onA = p
			}
			if p.Node == "h3" {
				onC = p
			}
		}
		hc := hosts[0].HTTPClient(5 * time.Second)
		fetch := func(target string) (string, error) {
			resp, err := hc.Get("http://" + onA.IP + ":8080/fetch?" + url.Values{"url": {target}}.Encode())
			if err != nil {
				return "", err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			return string(b), err
		}
		body, err := fetch("http://" + onC.IP + ":8080/")
		if err != nil || !strings.Contains(body, onC.Name) {
			t.Fatalf("pod %s on h1 -> pod %s on h3 by IP: %q %v", onA.Name, onC.Name, body, err)
		}
		// zoned declares no port and runs on h2 only: reached by name, on the
		// port it listens on, from a pod on h1 (TCP and UDP), as in compose.
		body, err = fetch("http://zoned:8080/")
		if err != nil || !strings.Contains(body, "hello from e2emulti-zoned-") {
			t.Fatalf("pod on h1 -> http://zoned:8080/ (no ports declared, pods on h2): %q %v", body, err)
		}
		resp, err := hc.Get("http://" + onA.IP + ":8080/udp?" + url.Values{"addr": {"zoned:8080"}, "msg": {"ping"}}.Encode())
		if err != nil {
			t.Fatalf("pod on h1 -> zoned:8080/udp: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), "e2emulti-zoned-") || !strings.Contains(string(b), "ping") {
			t.Fatalf("pod on h1 -> zoned:8080/udp = %q", b)
		}
		svcs := map[string]serviceRow{}
		var rows []serviceRow
		_ = json.Unmarshal([]byte(ms[0].mustDev(t, "services", "-p", "e2emulti", "-o", "json")), &rows)
		for _, r := range rows {
			svcs[r.Name] = r
		}
		for _, target := range []string{"http://" + svcs["web"].VIP + ":8080/", "http://web:8080/"} {
			seen := map[string]bool{}
			for i := 0; i < 24 && len(seen) < 3; i++ {
				b, err := fetch(target)
				if err != nil {
					t.Fatalf("pod on h1 -> %s: %v", target, err)
				}
				for _, p := range pods {
					if strings.Contains(b, p.Name) {
						seen[p.Node] = true
					}
				}
			}
			if !seen["h3"] || !seen["h2"] {
				t.Errorf("requests from h1 to %s reached nodes %v; want pods on h2 and h3 too", target, seen)
			}
		}
		// The source address a pod sees: the client's with mode: host (and
		// for the routing mesh when the pod is on the node called), the
		// called node's when the mesh sends the connection to another node.
		nodeOf := map[string]string{}
		for _, p := range pods {
			nodeOf[p.Name] = p.Node
		}
		h2c := hosts[1].HTTPClient(5 * time.Second)
		h2c.Transport.(*http.Transport).DisableKeepAlives = true
		for range 6 {
			pod, from, err := whoami(h2c, "http://"+hosts[0].IP+":18082")
			if err != nil || nodeOf[pod] != "h1" || from != hosts[1].IP {
				t.Fatalf("h2 -> h1:18082 (mode: host) = %s on %s seeing %s (%v); want a pod on h1 seeing %s",
					pod, nodeOf[pod], from, err, hosts[1].IP)
			}
		}
		mesh := map[bool]int{}
		for i := 0; i < 30 && (mesh[true] == 0 || mesh[false] == 0); i++ {
			pod, from, err := whoami(h2c, "http://"+hosts[0].IP+":18080")
			if err != nil {
				t.Fatalf("h2 -> h1:18080: %v", err)
			}
			local := nodeOf[pod] == "h1"
			mesh[local]++
			if local && from != hosts[1].IP {
				t.Fatalf("h2 -> h1:18080 answered by %s on h1 seeing %s; want the client %s", pod, from, hosts[1].IP)
			}
			if !local && from == hosts[1].IP {
				t.Fatalf("h2 -> h1:18080 answered by %s on %s seeing the client %s; want it masqueraded through h1", pod, nodeOf[pod], from)
			}
		}
		if mesh[true] == 0 || mesh[false] == 0 {
			t.Errorf("30 requests to h1:18080 reached pods on h1 %d times, elsewhere %d times; want both", mesh[true], mesh[false])
		}
		for _, h := range hosts {
			c := http.Client{Timeout: 5 * time.Second}
			resp, err := c.Get("http://" + h.IP + ":18080/")
			if err != nil {
				t.Fatalf("published port on %s: %v", h.IP, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(b), "hello from e2emulti-web-") {
				t.Errorf("published port on %s answered %q", h.IP, b)
			}
		}
	})

	t.Run("a fourth node joins as a non-voter, gets images from peers, and leaves", func(t *testing.T) {
		dir, err := os.MkdirTemp("", "dev-e2e-h4")
		if err != nil {
			t.Fatal(err)
		}
		m4 := &member{h: h4, dir: dir, name: "h4"}
		t.Cleanup(func() {
			m4.stop()
			if b, err := os.ReadFile(filepath.Join(dir, "agent.log")); err == nil && t.Failed() {
				t.Logf("agent log of h4:\n%s", lastLines(string(b), 60))
			}
			removeAgentDir(t, dir)
		})
		joinMember(t, ms[0], m4, agentArgs(h4, "h4"))
		eventually(t, 30*time.Second, "h4 ready as a non-voter", func() error {
			n := ms[0].nodes(t)["h4"]
			if n.Status != "ready" || n.Role != "nonvoter" {
				return fmt.Errorf("h4 is %s/%s", n.Status, n.Role)
			}
			return nil
		})

		// An image only h1's engine has: a pod placed on h4 gets it from a peer.
		ctx := context.Background()
		if err := hosts[0].Docker.ImageTag(ctx, testImage, "dev-onlyh1:1"); err != nil {
			t.Fatal(err)
		}
		if _, err := h4.Docker.ImageInspect(ctx, "dev-onlyh1:1"); err == nil {
			t.Fatal("h4 already has dev-onlyh1:1")
		}
		override := writeTemp(t, "name: e2eimg\nservices:\n  solo:\n    image: dev-onlyh1:1\n    command: [\"serve\"]\n"+
			"    deploy:\n      placement:\n        constraints: [\"node.hostname==h4\"]\n")
		ms[0].mustDev(t, "up", "-d", "-f", override)
		rows := running(ms[0].pods(t, "e2eimg"), "solo")
		if len(rows) != 1 || rows[0].Node != "h4" {
			t.Fatalf("solo pods = %+v, want one running on h4", rows)
		}

		// web scales onto h4 too; leaving moves its pods to the others.
		ms[0].mustDev(t, "scale", "-p", "e2emulti", "web=8")
		eventually(t, 60*time.Second, "8 web pods, some on h4", func() error {
			if per := runningOn(t, all, "e2emulti", "web"); sum(per) != 8 || per["h4"] == 0 {
				return fmt.Errorf("web per host %v", per)
			}
			return nil
		})
		m4.mustDev(t, "leave")
		eventually(t, 60*time.Second, "h4 left, its web pods running elsewhere", func() error {
			n := ms[0].nodes(t)["h4"]
			if n.Status != "left" {
				return fmt.Errorf("h4 is %q", n.Status)
			}
			per := runningOn(t, all, "e2emulti", "web")
			if per["h4"] != 0 || sum(per) != 8 {
				return fmt.Errorf("web per host %v: %v", per, containerNames(t, all, "e2emulti"))
			}
			return nil
		})
		// A node that left keeps no rules of dev's.
		eventually(t, 30*time.Second, "no dev rules left on h4", func() error {
			out, err := h4.Command(nil, "nft", "list", "tables").CombinedOutput()
			if err != nil || strings.Contains(string(out), "table ip dev") {
				return fmt.Errorf("nft list tables on h4 (%v):\n%s", err, out)
			}
			out, err = h4.Command(nil, "iptables", "-S", "DOCKER-USER").CombinedOutput()
			if err != nil || strings.Contains(string(out), "dev-services") {
				return fmt.Errorf("DOCKER-USER on h4 (%v):\n%s", err, out)
			}
			return nil
		})
		ms[0].mustDev(t, "down", "-p", "e2eimg")
		ms[0].mustDev(t, "scale", "-p", "e2emulti", "web=6")
		eventually(t, 60*time.Second, "web back to 6", func() error {
			if per := runningOn(t, hosts, "e2emulti", "web"); sum(per) != 6 {
				return fmt.Errorf("web per host %v", per)
			}
			return nil
		})
	})

	t.Run("a lost node's pods run elsewhere; when it returns nothing runs twice", func(t *testing.T) {
		// Cut a node that neither leads nor serves the CLI (h1).
		var leader string
		for name, n := range ms[0].nodes(t) {
			if n.Role == "leader" {
				leader = name
			}
		}
		victim := hosts[2]
		if leader == victim.Name {
			victim = hosts[1]
		}
		var survivors []*testHost
		for _, h := range hosts {
			if h != victim {
				survivors = append(survivors, h)
			}
		}
		// Through h1's ingress router, by host, all along: a request that
		// meets a pod of the cut node is sent to another once its dial
		// fails (3 s), until the pod leaves the route.
		viaIngress := startLoopWith(func() (string, error) {
			c := http.Client{Timeout: 10 * time.Second}
			req, _ := http.NewRequest(http.MethodGet, "http://"+hosts[0].IP+"/", nil)
			req.Host = "web.e2emulti.test"
			resp, err := c.Do(req)
			if err != nil {
				return "", err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("%s: %s", resp.Status, b)
			}
			return string(b), err
		})
		start := time.Now()
		victim.Cut(t)
		cut := true
		defer func() {
			if cut {
				victim.Restore(t)
			}
		}()
		eventually(t, 60*time.Second, "6 whole web pods running on the other nodes and the service answering", func() error {
			per := runningOn(t, survivors, "e2emulti", "web")
			if sum(per) != 6 {
				return fmt.Errorf("running on the survivors: %v", per)
			}
			// Each with its sidecar, on the same node.
			if logs := containersOn(t, survivors, "e2emulti", "web", "logs"); !maps.Equal(logs, per) {
				return fmt.Errorf("web's sidecar logs runs %v, web %v", logs, per)
			}
			c := http.Client{Timeout: 2 * time.Second}
			resp, err := c.Get("http://" + hosts[0].IP + ":18080/")
			if err != nil {
				return err
			}
			resp.Body.Close()
			return nil
		})
		failover := time.Since(start)
		t.Logf("failover: %s from cutting %s to 6 web pods on the others and the service answering (grace 10s)", failover.Round(100*time.Millisecond), victim.Name)
		ok, failed, first := viaIngress.finish()
		t.Logf("through h1's ingress router while %s was cut: %d requests succeeded, %d failed", victim.Name, ok, failed)
		if failed != 0 || ok == 0 {
			t.Errorf("through the ingress router while a node was cut, %d of %d requests failed (first: %v)", failed, ok+failed, first)
		}
		victim.Restore(t)
		cut = false
		// Back, it gets its share again: the rebalance moves one pod at a
		// time to it (a replacement started there before the pod it
		// replaces stops, so 7 may run for a moment), until 2 per host.
		eventually(t, 90*time.Second, victim.Name+" back, no duplicate pods, the spread even again", func() error {
			nodes := ms[0].nodes(t)
			if nodes[victim.Name].Status != "ready" {
				return fmt.Errorf("%s is %s", victim.Name, nodes[victim.Name].Status)
			}
			per := runningOn(t, hosts, "e2emulti", "web")
			if sum(per) != 6 || per[victim.Name] != 2 {
				return fmt.Errorf("web containers running per host %v, want 2 on each: %v", per, containerNames(t, hosts, "e2emulti"))
			}
			return nil
		})
		// And it stays settled.
		time.Sleep(3 * time.Second)
		if per := runningOn(t, hosts, "e2emulti", "web"); sum(per) != 6 {
			t.Fatalf("after settling, web containers per host %v", per)
		}
	})

	t.Run("leader loss: a new leader within seconds and scale still works", func(t *testing.T) {
		var leader *member
		for _, m := range ms {
			if ms[0].nodes(t)[m.name].Role == "leader" {
				leader = m
			}
		}
		if leader == nil {
			t.Fatal("no leader")
		}
		var other *member
		for _, m := range ms {
			if m != leader {
				other = m
				break
			}
		}
		start := time.Now()
		leader.stop()
		eventually(t, 20*time.Second, "a new leader", func() error {
			for name, n := range other.nodes(t) {
				if n.Role == "leader" && name != leader.name {
					return nil
				}
			}
			return fmt.Errorf("no new leader yet")
		})
		t.Logf("new leader %s after the old one stopped", time.Since(start).Round(100*time.Millisecond))
		other.mustDev(t, "scale", "-p", "e2emulti", "web=2", "-d")
		eventually(t, 60*time.Second, "web scaled to 2", func() error {
			if n := len(running(other.pods(t, "e2emulti"), "web")); n != 2 {
				return fmt.Errorf("%d running", n)
			}
			return nil
		})
	})
}
