package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestIngressAccessLog: on two hosts, each node's ingress router logs the
// requests it routed, and `dev logs --ingress` on h1 shows both nodes'
// lines (node, client, request, status, the pod that answered), keeps the
// last N with --tail, and with -f prints a request that h2's router takes
// afterwards.
func TestIngressAccessLog(t *testing.T) {
	const host = "web.e2elog.test"
	hosts := newHosts(t, 2)
	ms := newMultiCluster(t, hosts, nil)
	compose := writeTemp(t, `name: e2elog
services:
  web:
    image: `+testImage+`
    command: ["serve"]
    deploy:
      replicas: 2
    x-ingress:
      - {host: `+host+`, port: 8080, tls: off}
  db:
    image: `+testImage+`
    command: ["serve"]
`)
	ms[0].mustDev(t, "up", "-d", "-f", compose)
	get := func(ip, path string) (int, error) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+ip+path, nil)
		req.Host = host
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	// h1's router takes /whoami (200), h2's /nothing (the pod's 404).
	eventually(t, 60*time.Second, "both routers routing to web", func() error {
		for _, want := range []struct {
			ip, path string
			code     int
		}{{hosts[0].IP, "/whoami", 200}, {hosts[1].IP, "/nothing", 404}} {
			if code, err := get(want.ip, want.path); err != nil || code != want.code {
				return fmt.Errorf("%s%s through %s: %d %v, want %d", host, want.path, want.ip, code, err, want.code)
			}
		}
		return nil
	})

	line := func(node, path string, code int) *regexp.Regexp {
		// web | TIME NODE CLIENT "GET host/path HTTP/1.1" STATUS BYTES DURATION POD
		return regexp.MustCompile(`(?m)^web +\| \S+ ` + node + ` \S+ "GET ` + regexp.QuoteMeta(host+path) + ` HTTP/1\.1" ` +
			fmt.Sprint(code) + ` \d+ \S+ e2elog-web-\d$`)
	}
	out := ms[0].mustDev(t, "logs", "--ingress", "-p", "e2elog")
	for _, want := range []*regexp.Regexp{line(hosts[0].Name, "/whoami", 200), line(hosts[1].Name, "/nothing", 404)} {
		if !want.MatchString(out) {
			t.Errorf("dev logs --ingress on h1 has no line matching %s:\n%s", want, out)
		}
	}
	if out := ms[0].mustDev(t, "logs", "--ingress", "-p", "e2elog", "--tail", "1"); strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, `"GET `) {
		t.Errorf("dev logs --ingress --tail 1: want one line:\n%s", out)
	}
	if out, err := ms[0].dev(t, "logs", "--ingress", "-p", "e2elog", "db"); err == nil || !strings.Contains(out, "service db of project e2elog has no ingress route") {
		t.Errorf("dev logs --ingress of a service without a route: %v\n%s", err, out)
	}

	// -f on h1 prints what h2's router takes next.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := hosts[0].CommandContext(ctx, ms[0].env(), devBin, "logs", "--ingress", "-f", "--tail", "0", "-p", "e2elog")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	want := line(hosts[1].Name, "/followed", 404)
	for {
		if _, err := get(hosts[1].IP, "/followed"); err != nil {
			t.Fatal(err)
		}
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("dev logs --ingress -f ended")
			}
			if !want.MatchString(l) {
				t.Fatalf("dev logs --ingress -f printed %q, want a line matching %s", l, want)
			}
			return
		case <-time.After(2 * time.Second):
			// The follow may have started after the request: send another.
		case <-ctx.Done():
			t.Fatal("dev logs --ingress -f printed nothing of h2's request in 60s")
		}
	}
}
