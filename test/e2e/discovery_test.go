package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// serviceRow mirrors `dev services -o json`.
type serviceRow struct {
	Project   string   `json:"project"`
	Name      string   `json:"name"`
	VIP       string   `json:"vip"`
	Desired   int      `json:"desired"`
	Ready     int      `json:"ready"`
	Endpoints []string `json:"endpoints"`
}

func (c *cluster) services(project string) map[string]serviceRow {
	c.t.Helper()
	out := c.mustDev("services", "-p", project, "-o", "json")
	var rows []serviceRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		c.t.Fatalf("parse dev services -o json: %v\n%s", err, out)
	}
	m := map[string]serviceRow{}
	for _, r := range rows {
		m[r.Name] = r
	}
	return m
}

// inPod asks the testapp in a pod to do something from inside the pod.
func inPod(pod podRow, path string, q url.Values) (string, error) {
	return httpGet("http://" + pod.IP + ":8080" + path + "?" + q.Encode())
}

func resolveIn(pod podRow, name string) ([]string, error) {
	out, err := inPod(pod, "/resolve", url.Values{"name": {name}})
	if err != nil {
		return nil, err
	}
	if strings.Contains(out, "no such host") || strings.Contains(out, "server misbehaving") {
		return nil, fmt.Errorf("%s", strings.TrimSpace(out))
	}
	lines := strings.Fields(out)
	sort.Strings(lines)
	return lines, nil
}

func readyIPs(rows []podRow, service string) []string {
	var ips []string
	for _, r := range rows {
		if r.Service == service && r.State == "running" && (r.Health == "" || r.Health == "healthy") {
			ips = append(ips, r.IP)
		}
	}
	sort.Strings(ips)
	return ips
}

// hostDNS queries the cluster DNS server the agent serves for the host.
func hostDNS(c *cluster, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	cl := dns.Client{Timeout: 2 * time.Second}
	r, _, err := cl.Exchange(m, c.dnsAddr)
	return r, err
}

func TestServiceDiscoveryAndLoadBalancing(t *testing.T) {
	c := newCluster(t)
	c.mustDev("up", "-d", "-f", fixture("discovery"))
	svcs := c.services("e2edisc")
	backend, web := svcs["backend"], svcs["web"]
	for _, s := range []serviceRow{backend, web} {
		if !strings.HasPrefix(s.VIP, "10.216.") {
			t.Fatalf("service %s VIP = %q, want one from the e2e service cidr 10.216.0.0/16", s.Name, s.VIP)
		}
	}
	if backend.VIP == web.VIP {
		t.Fatalf("two services share VIP %s", web.VIP)
	}
	if web.Ready != 3 || web.Desired != 3 || backend.Ready != 2 {
		t.Fatalf("ready/desired: web %d/%d backend %d/%d", web.Ready, web.Desired, backend.Ready, backend.Desired)
	}
	rows := c.ps("e2edisc")
	webPods := running(rows, "web")
	client := webPods[0]

	t.Run("name resolves to the VIP and connects", func(t *testing.T) {
		for _, name := range []string{"backend", "backend.e2edisc.dev", "api"} {
			got, err := resolveIn(client, name)
			if err != nil || len(got) != 1 || got[0] != backend.VIP {
				t.Errorf("resolve %s in %s = %v, %v; want [%s]", name, client.Name, got, err, backend.VIP)
			}
		}
		body, err := inPod(client, "/fetch", url.Values{"url": {"http://backend:8080/"}})
		if err != nil || !strings.Contains(body, "hello from e2edisc-backend-") {
			t.Errorf("GET http://backend:8080/ from %s = %q, %v", client.Name, body, err)
		}
	})

	t.Run("tasks lists exactly the ready pods", func(t *testing.T) {
		got, err := resolveIn(client, "tasks.backend.e2edisc.dev")
		want := readyIPs(rows, "backend")
		if err != nil || strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("tasks.backend = %v, %v; want %v", got, err, want)
		}
	})

	t.Run("env-var discovery", func(t *testing.T) {
		env, err := inPod(client, "/env", nil)
		if err != nil || !strings.Contains(env, "BACKEND_SERVICE_HOST="+backend.VIP) || !strings.Contains(env, "BACKEND_SERVICE_PORT=8080") {
			t.Errorf("web env lacks BACKEND_SERVICE_HOST=%s / BACKEND_SERVICE_PORT=8080:\n%s %v", backend.VIP, env, err)
		}
	})

	t.Run("networks scope names", func(t *testing.T) {
		loner := running(rows, "loner")
		if len(loner) != 1 {
			t.Fatalf("loner pods = %v", podNames(loner))
		}
		if got, err := resolveIn(loner[0], "backend"); err == nil {
			t.Errorf("loner (network isolated) resolved backend to %v; want no such host", got)
		}
	})

	t.Run("published port reaches every replica", func(t *testing.T) {
		seen := map[string]bool{}
		for i := 0; i < 30; i++ {
			body, err := httpGet("http://127.0.0.1:18080/")
			if err != nil {
				t.Fatalf("GET 127.0.0.1:18080: %v", err)
			}
			seen[strings.TrimSpace(strings.TrimPrefix(body, "hello from "))] = true
		}
		if len(seen) != 3 {
			t.Errorf("30 requests reached %v, want all 3 web pods", seen)
		}
	})

	t.Run("udp through the VIP and the published port", func(t *testing.T) {
		body, err := inPod(client, "/udp", url.Values{"addr": {"backend:8080"}, "msg": {"ping"}})
		if err != nil || !strings.Contains(body, "e2edisc-backend-") || !strings.Contains(body, "ping") {
			t.Errorf("udp to backend:8080 from %s = %q, %v", client.Name, body, err)
		}
		conn, err := net.Dial("udp", "127.0.0.1:18081")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := conn.Write([]byte("hi")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 512)
		n, err := conn.Read(buf)
		if err != nil || !strings.Contains(string(buf[:n]), "e2edisc-web-") {
			t.Errorf("udp 127.0.0.1:18081 reply %q, %v", buf[:n], err)
		}
	})

	t.Run("host dns", func(t *testing.T) {
		r, err := hostDNS(c, "backend.e2edisc.dev.", dns.TypeA)
		if err != nil || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != backend.VIP {
			t.Errorf("host query backend.e2edisc.dev. = %v, %v; want %s", r, err, backend.VIP)
		}
		r, err = hostDNS(c, "nope.e2edisc.dev.", dns.TypeA)
		if err != nil || r.Rcode != dns.RcodeNameError {
			t.Errorf("host query nope.e2edisc.dev. rcode = %v, %v; want NXDOMAIN", r, err)
		}
	})

	t.Run("scaling updates dns and proxy within seconds", func(t *testing.T) {
		c.mustDev("scale", "-p", "e2edisc", "backend=1")
		start := time.Now()
		eventually(t, 10*time.Second, "tasks.backend has 1 address", func() error {
			got, err := resolveIn(client, "tasks.backend")
			if err != nil || len(got) != 1 {
				return fmt.Errorf("tasks.backend = %v, %v", got, err)
			}
			return nil
		})
		t.Logf("dns reflected scale-down %s after dev scale returned", time.Since(start).Round(10*time.Millisecond))
		for i := 0; i < 10; i++ {
			body, err := inPod(client, "/fetch", url.Values{"url": {"http://backend:8080/"}})
			if err != nil || !strings.Contains(body, "e2edisc-backend-1") {
				t.Fatalf("after scale to 1, request %d reached %q, %v", i, body, err)
			}
		}
		c.mustDev("scale", "-p", "e2edisc", "backend=2")
		eventually(t, 10*time.Second, "tasks.backend has 2 addresses", func() error {
			got, err := resolveIn(client, "tasks.backend")
			if err != nil || len(got) != 2 {
				return fmt.Errorf("tasks.backend = %v, %v", got, err)
			}
			return nil
		})
	})

	t.Run("an unhealthy pod gets no traffic", func(t *testing.T) {
		var sick podRow
		for _, p := range running(c.ps("e2edisc"), "backend") {
			if p.Name == "e2edisc-backend-2" {
				sick = p
			}
		}
		if sick.IP == "" {
			t.Fatal("no running e2edisc-backend-2")
		}
		if _, err := httpGet("http://" + sick.IP + ":8080/unhealthy"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "backend-2 unhealthy in dev ps and out of tasks", func() error {
			for _, p := range c.ps("e2edisc") {
				if p.Name == sick.Name && p.Health != "unhealthy" {
					return fmt.Errorf("health %q", p.Health)
				}
			}
			got, err := resolveIn(client, "tasks.backend")
			if err != nil || len(got) != 1 || got[0] == sick.IP {
				return fmt.Errorf("tasks.backend = %v, %v", got, err)
			}
			return nil
		})
		for i := 0; i < 10; i++ {
			body, err := inPod(client, "/fetch", url.Values{"url": {"http://backend:8080/"}})
			if err != nil || strings.Contains(body, sick.Name) {
				t.Fatalf("request %d to backend reached %q, %v; the unhealthy pod must get none", i, body, err)
			}
		}
		if _, err := httpGet("http://" + sick.IP + ":8080/healthy"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("published port conflicts are refused", func(t *testing.T) {
		out, err := c.dev("up", "-d", "-f", fixture("portclash"))
		if err == nil || !strings.Contains(out, "18080") {
			t.Errorf("a second project publishing 18080: err=%v\n%s", err, out)
		}
		if rows := c.ps("e2eclash"); len(rows) != 0 {
			t.Errorf("refused project left pods: %v", podNames(rows))
		}
		// A port held by another program on the host.
		ln, err := net.Listen("tcp", "0.0.0.0:18090")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		out, err = c.dev("up", "-d", "-f", fixture("portclash"), "-f", writeTemp(t, "services:\n  other:\n    ports: !override\n      - \"18090:8080\"\n"))
		var ee *exec.ExitError
		if err == nil || !asExit(err, &ee) || !strings.Contains(out, "18090") || !strings.Contains(out, "in use") {
			t.Errorf("port held by another program: err=%v\n%s", err, out)
		}
		if rows := c.ps("e2eclash"); len(rows) != 0 {
			t.Errorf("refused project left pods: %v", podNames(rows))
		}
	})
}
