package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// dashState is what the test reads off the rendered page, as a user looks
// at it: rows, badges and pod boxes (data-* attributes name them).
type dashState struct {
	Nodes   []string `json:"nodes"`   // "h1=ready"
	Service string   `json:"service"` // "ready/desired" of e2edash/web
	Running int      `json:"running"` // pod boxes in the running state
	Columns []string `json:"columns"` // "h1:2": pods per node column
	Events  []string `json:"events"`  // "Scheduled pod/e2edash-web-4"
	Marker  int      `json:"marker"`  // set by the test; a reload loses it
	Live    string   `json:"live"`    // class of the live indicator
	Logs    string   `json:"logs"`
}

const dashStateJS = `(() => {
  const q = (s) => [...document.querySelectorAll(s)];
  const svc = document.querySelector('#sec-services tr[data-service="e2edash/web"]');
  return {
    nodes: q('#sec-nodes tr[data-node]').map(r => r.dataset.node + '=' + r.dataset.status),
    service: svc ? svc.dataset.ready + '/' + svc.dataset.desired : '',
    running: q('#sec-placement .pod[data-state="running"]').length,
    columns: q('#sec-placement .col').map(c => c.dataset.column + ':' + c.querySelectorAll('.pod').length),
    events: q('#sec-events tr[data-reason]').map(r => r.dataset.reason + ' ' + r.dataset.object),
    marker: window.__devMarker || 0,
    live: document.getElementById('live').className,
    logs: document.getElementById('logs').textContent,
  };
})()`

// TestDashboard opens the dashboard of a three-node cluster in headless
// Chromium, checks that it renders every node, the service and its pods,
// scales the service from another node and watches the page follow without
// a reload, follows a pod's logs, and saves a screenshot.
func TestDashboard(t *testing.T) {
	browser := newBrowser(t)
	hosts := newHosts(t, 3)
	// h1 keeps the default (loopback, HTTP); h2 serves HTTPS on its address.
	ms := newMultiClusterWith(t, hosts, nil, func(h *testHost) []string {
		args := agentArgs(h, h.Name)
		if h.Name == "h2" {
			args = append(args, "--dashboard-addr", h.IP+":7949")
		}
		return args
	})
	eventually(t, 60*time.Second, "3 ready nodes", func() error {
		nodes := ms[0].nodes(t)
		ready := 0
		for _, n := range nodes {
			if n.Status == "ready" {
				ready++
			}
		}
		if ready != 3 {
			return fmt.Errorf("%d of %d nodes ready", ready, len(nodes))
		}
		return nil
	})
	ms[0].mustDev(t, "up", "-d", "-f", fixture("dashboard"), "--timeout", "90s")

	// The default dashboard listens on h1's loopback only: reach it the way
	// the CLI advises (ssh -L), with a port forward into h1's namespace.
	link := strings.TrimSpace(ms[0].mustDev(t, "dashboard", "--url"))
	u, err := url.Parse(link)
	if err != nil || u.Scheme != "http" || !strings.HasPrefix(u.Host, "127.0.0.1:") || u.Query().Get("token") == "" {
		t.Fatalf("dev dashboard --url on h1 = %q, want http://127.0.0.1:PORT/?token=…", link)
	}
	local := forwardInto(t, hosts[0], u.Host)
	u.Host = local

	t.Run("without the login link the page is refused", func(t *testing.T) {
		resp, err := http.Get("http://" + local + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "dev dashboard") {
			t.Fatalf("GET / without a token: %s %s", resp.Status, body)
		}
	})

	if err := chromedp.Do(browser, chromedp.Navigate(u.String())); err != nil {
		t.Fatalf("open %s: %v", u.Redacted(), err)
	}
	read := func() (dashState, error) {
		ctx, cancel := context.WithTimeout(browser, 10*time.Second)
		defer cancel()
		return chromedp.Run(ctx, chromedp.Evaluate[dashState](dashStateJS))
	}

	t.Run("renders the three-node cluster", func(t *testing.T) {
		eventually(t, 30*time.Second, "3 ready nodes, web 3/3, one pod per node", func() error {
			st, err := read()
			if err != nil {
				return err
			}
			slices.Sort(st.Nodes)
			if want := []string{"h1=ready", "h2=ready", "h3=ready"}; !slices.Equal(st.Nodes, want) {
				return fmt.Errorf("nodes %v, want %v", st.Nodes, want)
			}
			if st.Service != "3/3" || st.Running != 3 {
				return fmt.Errorf("service %q, running pods %d", st.Service, st.Running)
			}
			slices.Sort(st.Columns)
			if want := []string{"h1:1", "h2:1", "h3:1"}; !slices.Equal(st.Columns, want) {
				return fmt.Errorf("pods per node %v, want %v", st.Columns, want)
			}
			if st.Live != "live on" {
				return fmt.Errorf("live indicator %q", st.Live)
			}
			return nil
		})
	})

	t.Run("dev scale shows up without a reload", func(t *testing.T) {
		if _, err := chromedp.Run(browser, chromedp.Evaluate[int](`window.__devMarker = 42`)); err != nil {
			t.Fatal(err)
		}
		ms[1].mustDev(t, "scale", "-p", "e2edash", "web=5") // from another node
		eventually(t, 60*time.Second, "web 5/5 on the page", func() error {
			st, err := read()
			if err != nil {
				return err
			}
			if st.Marker != 42 {
				return fmt.Errorf("the page was reloaded (marker %d)", st.Marker)
			}
			if st.Service != "5/5" || st.Running != 5 {
				return fmt.Errorf("service %q, running pods %d", st.Service, st.Running)
			}
			if !slices.Contains(st.Events, "Scaled service/e2edash/web") {
				return fmt.Errorf("no Scaled event in %v", st.Events)
			}
			started := 0
			for _, e := range st.Events {
				if strings.HasPrefix(e, "Started pod/e2edash-web-") {
					started++
				}
			}
			if started < 2 {
				return fmt.Errorf("%d Started events for the new pods in %v", started, st.Events)
			}
			return nil
		})
	})

	t.Run("dev events on another node lists the same changes", func(t *testing.T) {
		eventually(t, 20*time.Second, "Scaled and Scheduled in `dev events` on h3", func() error {
			out, err := ms[2].dev(t, "events")
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			for _, want := range []string{"Scaled", "service/e2edash/web", "scaled e2edash/web from 3 to 5", "Scheduled", "pod/e2edash-web-5"} {
				if !strings.Contains(out, want) {
					return fmt.Errorf("no %q in:\n%s", want, out)
				}
			}
			return nil
		})
	})

	t.Run("a chosen pod's logs follow", func(t *testing.T) {
		// The pod on h3: its logs come through h1's agent from h3's.
		var pod string
		for _, p := range ms[0].pods(t, "e2edash") {
			if p.Node == "h3" && p.State == "running" {
				pod = p.Name
			}
		}
		if pod == "" {
			t.Fatal("no running pod on h3")
		}
		ctx, cancel := context.WithTimeout(browser, 10*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`button.pod[data-pod="`+pod+`"]`))); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "the pod's log line in the logs panel", func() error {
			st, err := read()
			if err != nil {
				return err
			}
			if !strings.Contains(st.Logs, "testapp "+pod+" listening") {
				return fmt.Errorf("logs panel: %q", lastLines(st.Logs, 3))
			}
			return nil
		})
	})

	t.Run("on a non-loopback address the dashboard speaks HTTPS", func(t *testing.T) {
		link := strings.TrimSpace(ms[1].mustDev(t, "dashboard", "--url"))
		if want := "https://" + hosts[1].IP + ":7949/?token="; !strings.HasPrefix(link, want) {
			t.Fatalf("dev dashboard --url on h2 = %q, want %s…", link, want)
		}
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar, Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the cluster CA is not the browser's
		}}
		resp, err := c.Get(strings.Split(link, "?")[0])
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("GET without the token: %s", resp.Status)
		}
		resp, err = c.Get(link)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `data-service="e2edash/web"`) {
			t.Fatalf("GET the login link: %s\n%s", resp.Status, lastLines(string(body), 10))
		}
	})

	t.Run("a lost node shows down and its pods rescheduled", func(t *testing.T) {
		// Cut whichever of h2/h3 does not lead (the page is served by h1).
		victim := hosts[2]
		if ms[0].nodes(t)[victim.Name].Role == "leader" {
			victim = hosts[1]
		}
		lost := 0
		for _, p := range ms[0].pods(t, "e2edash") {
			if p.Node == victim.Name {
				lost++
			}
		}
		victim.Cut(t)
		defer victim.Restore(t)
		eventually(t, 90*time.Second, victim.Name+" down, its pods rescheduled, web 5/5 again", func() error {
			st, err := read()
			if err != nil {
				return err
			}
			if !slices.Contains(st.Nodes, victim.Name+"=down") {
				return fmt.Errorf("nodes %v", st.Nodes)
			}
			rescheduled := 0
			for _, e := range st.Events {
				if strings.HasPrefix(e, "Rescheduled pod/e2edash-web-") {
					rescheduled++
				}
			}
			if rescheduled < lost || !slices.Contains(st.Events, "NodeDown node/"+victim.Name) {
				return fmt.Errorf("%d Rescheduled events for %d lost pods; events %v", rescheduled, lost, st.Events)
			}
			if st.Service != "5/5" || st.Running != 5 || !slices.Contains(st.Columns, victim.Name+":0") {
				return fmt.Errorf("service %q, running %d, columns %v", st.Service, st.Running, st.Columns)
			}
			return nil
		})
	})

	t.Run("screenshot", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(browser, 20*time.Second)
		defer cancel()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		dir, _ := filepath.Abs("out")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "dashboard-3-nodes.png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot of the dashboard (3 nodes, web scaled to 5, logs of a pod): %s (%d bytes)", path, len(png))
	})

}

// newBrowser starts headless Chromium (Debian's package) for chromedp and
// stops it when the test ends.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium not found: .ci/run installs Debian's chromium package")
		}
		t.Skip("chromium not installed (apt-get install chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // root in CI
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1440, 1100),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first action starts the browser; its context must outlive the test
	// (a timeout here would stop the browser when it fires).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// forwardInto listens on the test's loopback and forwards every connection
// to target inside h's network namespace (what `ssh -L` does for a user),
// until the test ends.
func forwardInto(t *testing.T, h *testHost, target string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	t.Cleanup(func() {
		close(stop)
		ln.Close()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				up, err := h.DialContext(ctx, "tcp", target)
				cancel()
				if err != nil {
					return
				}
				defer up.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
				select {
				case <-done:
				case <-stop:
				}
			}()
		}
	}()
	return ln.Addr().String()
}
