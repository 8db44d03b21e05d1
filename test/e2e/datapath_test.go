package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// hostAddr is an IPv4 address of this host on an interface other than
// loopback and the pod bridge: a client address the data path must keep.
func hostAddr(t *testing.T) string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagLoopback != 0 || ifc.Flags&net.FlagUp == 0 || ifc.Name == e2eBridge {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
				return p.Addr().String()
			}
		}
	}
	t.Fatal("no IPv4 address outside loopback and the pod bridge")
	return ""
}

// whoami asks a pod, through url's address, which pod answered and which
// source address it saw.
func whoami(c *http.Client, base string) (pod, from string, err error) {
	resp, err := c.Get(base + "/whoami")
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) != 2 {
		return "", "", fmt.Errorf("whoami at %s: %q, %v", base, line, err)
	}
	return f[0], f[1], nil
}

func TestKernelDataPath(t *testing.T) {
	c := newCluster(t)
	c.mustDev("up", "-d", "-f", fixture("datapath"))
	svcs := c.services("e2ekdp")
	apiVIP := svcs["api"].VIP
	web := running(c.ps("e2ekdp"), "web")
	if len(web) != 1 {
		t.Fatalf("web pods %v", podNames(web))
	}
	noKeepAlive := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

	t.Run("a service that declares no port is reached by name on the port it listens on", func(t *testing.T) {
		for _, name := range []string{"api", "api.e2ekdp.dev"} {
			body, err := inPod(web[0], "/fetch", url.Values{"url": {"http://" + name + ":9999/"}})
			if err != nil || !strings.Contains(body, "hello from e2ekdp-api-") {
				t.Fatalf("web -> http://%s:9999/ = %q, %v", name, body, err)
			}
		}
		body, err := inPod(web[0], "/udp", url.Values{"addr": {"api:9999"}, "msg": {"ping"}})
		if err != nil || !strings.Contains(body, "e2ekdp-api-") || !strings.Contains(body, "ping") {
			t.Fatalf("web -> api:9999/udp = %q, %v", body, err)
		}
		out := c.mustDev("services", "-p", "e2ekdp")
		if !strings.Contains(out, "all") || !strings.Contains(out, "18091->8080/tcp (host)") {
			t.Errorf("dev services does not say every port is forwarded and the host-mode port:\n%s", out)
		}
	})

	t.Run("published ports keep the client address on a single host", func(t *testing.T) {
		host := hostAddr(t)
		for _, port := range []string{"18090", "18091"} {
			pod, from, err := whoami(noKeepAlive, "http://"+host+":"+port)
			if err != nil || pod != web[0].Name || from != host {
				t.Errorf("%s:%s -> %s saw %s (%v); want %s seeing the client %s", host, port, pod, from, err, web[0].Name, host)
			}
		}
		// localhost is translated through the pod gateway (route_localnet).
		pod, from, err := whoami(noKeepAlive, "http://127.0.0.1:18090")
		if err != nil || pod != web[0].Name || !netip.MustParsePrefix(e2eCIDR).Contains(netip.MustParseAddr(from)) {
			t.Errorf("127.0.0.1:18090 -> %s saw %s (%v); want %s seeing its gateway", pod, from, err, web[0].Name)
		}
	})

	t.Run("no new connection reaches a pod being scaled away", func(t *testing.T) {
		var ok, failed atomic.Int64
		var firstErr atomic.Value
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(60 * time.Second)
			for time.Now().Before(deadline) {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := httpGet("http://" + apiVIP + ":9999/"); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				} else {
					ok.Add(1)
				}
			}
		}()
		c.mustDev("scale", "-p", "e2ekdp", "api=1")
		time.Sleep(2 * time.Second) // keep the loop running past the last pod's stop
		close(stop)
		wg.Wait()
		if failed.Load() != 0 || ok.Load() == 0 {
			t.Fatalf("during dev scale api=3->1: %d requests ok, %d failed (first: %v)", ok.Load(), failed.Load(), firstErr.Load())
		}
		t.Logf("%d requests through the VIP during the scale-down, none failed", ok.Load())
	})

	t.Run("hairpin: a pod reaches itself through its service", func(t *testing.T) {
		api := running(c.ps("e2ekdp"), "api")
		if len(api) != 1 {
			t.Fatalf("api pods %v", podNames(api))
		}
		body, err := httpGet("http://" + api[0].IP + ":9999/fetch?" + url.Values{"url": {"http://api:9999/"}}.Encode())
		if err != nil || !strings.Contains(body, "hello from "+api[0].Name) {
			t.Fatalf("%s -> http://api:9999/ = %q, %v", api[0].Name, body, err)
		}
	})

	t.Run("a service without ready pods refuses at once", func(t *testing.T) {
		c.mustDev("scale", "-p", "e2ekdp", "api=0")
		eventually(t, 10*time.Second, "api has no endpoint", func() error {
			if s := c.services("e2ekdp")["api"]; s.Ready != 0 {
				return fmt.Errorf("api ready %d", s.Ready)
			}
			return nil
		})
		eventually(t, 5*time.Second, "connections to the VIP are refused", func() error {
			start := time.Now()
			conn, err := net.DialTimeout("tcp", apiVIP+":9999", 3*time.Second)
			if err == nil {
				conn.Close()
				return errors.New("connected")
			}
			if !errors.Is(err, syscall.ECONNREFUSED) || time.Since(start) > time.Second {
				return fmt.Errorf("dial: %v after %v; want connection refused at once", err, time.Since(start))
			}
			return nil
		})
		start := time.Now()
		body, _ := inPod(web[0], "/fetch", url.Values{"url": {"http://api:9999/"}})
		if !strings.Contains(body, "connection refused") || time.Since(start) > time.Second {
			t.Fatalf("web -> api without pods: %q after %v; want connection refused at once", body, time.Since(start))
		}
	})

	t.Run("an agent restart keeps an established connection", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", "127.0.0.1:18090", 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		get := func() error {
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := fmt.Fprintf(conn, "GET /whoami HTTP/1.1\r\nHost: web\r\n\r\n"); err != nil {
				return err
			}
			resp, err := http.ReadResponse(r, nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Close {
				return fmt.Errorf("status %s, close %v", resp.Status, resp.Close)
			}
			_, err = bufio.NewReader(resp.Body).ReadString('\n')
			return err
		}
		if err := get(); err != nil {
			t.Fatal(err)
		}
		c.stopAgent()
		c.startAgent()
		// The restarted agent answers from its whole state, not from a
		// half-replayed one.
		if web := running(c.ps("e2ekdp"), "web"); len(web) != 1 {
			t.Fatalf("right after the restart dev ps lists web pods %v", podNames(web))
		}
		if err := get(); err != nil {
			t.Fatalf("the same connection after the agent restarted: %v", err)
		}
		if _, _, err := whoami(noKeepAlive, "http://127.0.0.1:18090"); err != nil {
			t.Fatalf("new connection after the restart: %v", err)
		}
	})
}

// TestKernelDataPathCleanup: an agent stopped with nothing to serve leaves
// neither its nftables table nor its DOCKER-USER rule behind.
func TestKernelDataPathCleanup(t *testing.T) {
	c := newCluster(t)
	c.mustDev("up", "-d", "-f", fixture("datapath"))
	table := "dev-" + e2eBridge
	if out, err := exec.Command("nft", "list", "table", "ip", table).CombinedOutput(); err != nil {
		t.Fatalf("table ip %s missing while serving: %v\n%s", table, err, out)
	}
	c.mustDev("down", "-p", "e2ekdp")
	eventually(t, 20*time.Second, "no service left", func() error {
		if n := len(c.services("e2ekdp")); n != 0 {
			return fmt.Errorf("%d services", n)
		}
		// ... and the agent has programmed that.
		out, err := exec.Command("nft", "list", "map", "ip", table, "service-ips").CombinedOutput()
		if err != nil || strings.Contains(string(out), "elements") {
			return fmt.Errorf("service-ips still has elements (%v):\n%s", err, out)
		}
		return nil
	})
	c.stopAgent()
	out, _ := exec.Command("nft", "list", "ruleset").CombinedOutput()
	if strings.Contains(string(out), "table ip "+table+" ") {
		t.Errorf("nft list ruleset still shows table ip %s after dev down and the agent's stop", table)
	}
	ipt, _ := exec.Command("iptables", "-S", "DOCKER-USER").CombinedOutput()
	if strings.Contains(string(ipt), "dev-services:"+e2eCIDR) {
		t.Errorf("DOCKER-USER still has dev's rule after dev down and the agent's stop:\n%s", ipt)
	}
}
