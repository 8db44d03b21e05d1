package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/devhq/dev/test/testns"
)

// The kernel test builds, in network namespaces of its own:
//
//	pod1 (10.215.1.2) -veth-+
//	pod2 (10.215.1.3) -veth-+- [host: br0 10.215.1.1/24; up0 10.97.0.1/24] -veth- client (10.97.0.2)
//
// and programs the data path in the host namespace, as the agent does on a
// node (the pods' gateway is br0, like Docker's bridge network). Every pod
// runs an echo server that answers with its name and the source address it
// saw, on TCP 7001 and UDP 7002.
const (
	ktHost   = "devpxt-host"
	ktPod1   = "devpxt-pod1"
	ktPod2   = "devpxt-pod2"
	ktClient = "devpxt-cli"
	ktGW     = "10.215.1.1"
	ktPod1IP = "10.215.1.2"
	ktPod2IP = "10.215.1.3"
	ktHostUp = "10.97.0.1"
	ktCliIP  = "10.97.0.2"
	ktVIP    = "10.216.0.10"
)

var (
	ktCluster  = netip.MustParsePrefix("10.215.0.0/16")
	ktServices = netip.MustParsePrefix("10.216.0.0/16")
)

// fixedChains are the table's chains whatever the services: skeleton's
// seven base chains (nat prerouting, output, postrouting; filter forward,
// input, prerouting, output), services and reject-unserved.
const fixedChains = 9

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("needs root (netns, nftables) and CI is set")
		}
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("needs ip: %v", err)
		}
		t.Skipf("needs ip: %v", err)
	}
}

func run(t testing.TB, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// inNS runs fn inside the named namespace (testns.In).
func inNS(name string, fn func() error) error { return testns.In(name, fn) }

// kernelTestbed creates the namespaces and echo servers; cleanup removes
// them (deleting the host namespace drops its table with it).
func kernelTestbed(t testing.TB) {
	t.Helper()
	for _, ns := range []string{ktHost, ktPod1, ktPod2, ktClient} {
		_ = exec.Command("ip", "netns", "del", ns).Run() // a previous run killed mid-way
	}
	t.Cleanup(func() {
		for _, ns := range []string{ktHost, ktPod1, ktPod2, ktClient} {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	for _, ns := range []string{ktHost, ktPod1, ktPod2, ktClient} {
		run(t, "ip", "netns", "add", ns)
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	run(t, "ip", "-n", ktHost, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "-n", ktHost, "addr", "add", ktGW+"/24", "dev", "br0")
	run(t, "ip", "-n", ktHost, "link", "set", "br0", "up")
	for i, pod := range []struct{ ns, ip string }{{ktPod1, ktPod1IP}, {ktPod2, ktPod2IP}} {
		hv := fmt.Sprintf("vp%d", i+1)
		run(t, "ip", "-n", ktHost, "link", "add", hv, "type", "veth", "peer", "name", "eth0", "netns", pod.ns)
		run(t, "ip", "-n", ktHost, "link", "set", hv, "master", "br0", "up")
		run(t, "ip", "-n", pod.ns, "addr", "add", pod.ip+"/24", "dev", "eth0")
		run(t, "ip", "-n", pod.ns, "link", "set", "eth0", "up")
		run(t, "ip", "-n", pod.ns, "route", "add", "default", "via", ktGW)
	}
	run(t, "ip", "-n", ktHost, "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", ktClient)
	run(t, "ip", "-n", ktHost, "addr", "add", ktHostUp+"/24", "dev", "up0")
	run(t, "ip", "-n", ktHost, "link", "set", "up0", "up")
	run(t, "ip", "-n", ktClient, "addr", "add", ktCliIP+"/24", "dev", "eth0")
	run(t, "ip", "-n", ktClient, "link", "set", "eth0", "up")
	run(t, "ip", "-n", ktClient, "route", "add", "default", "via", ktHostUp)
	// What a node has: forwarding, and bridged traffic through netfilter
	// (Docker loads br_netfilter), so that a reply between two pods of one
	// bridge is translated back.
	for _, kv := range []string{"net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1"} {
		run(t, "ip", "netns", "exec", ktHost, "sysctl", "-qw", kv)
	}
	for _, pod := range []string{ktPod1, ktPod2} {
		startEcho(t, pod, strings.TrimPrefix(pod, "devpxt-"))
	}
}

// startEcho serves "NAME FROM-ADDR\n" on TCP 7001 (then echoes lines) and
// answers every UDP datagram on 7002 the same way, in namespace ns.
func startEcho(t testing.TB, ns, name string) {
	t.Helper()
	var (
		ln net.Listener
		pc net.PacketConn
	)
	if err := inNS(ns, func() (err error) {
		if ln, err = net.Listen("tcp4", ":7001"); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp4", ":7002")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				from := c.RemoteAddr().(*net.TCPAddr).IP.String()
				fmt.Fprintf(c, "%s %s\n", name, from)
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(fmt.Appendf(nil, "%s %s\n", name, from.(*net.UDPAddr).IP), from)
		}
	}()
}

// dial connects from namespace ns; the connection can be used anywhere.
func dial(ns, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNS(ns, func() (err error) {
		c, err = net.DialTimeout(network, addr, 2*time.Second)
		return err
	})
	return c, err
}

// hello connects from ns to addr over TCP and returns the greeting's name
// and the source address the server saw.
func hello(ns, addr string) (name, from string, err error) {
	c, err := dial(ns, "tcp4", addr)
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", "", fmt.Errorf("read greeting from %s: %w", addr, err)
	}
	f := strings.Fields(line)
	if len(f) != 2 {
		return "", "", fmt.Errorf("greeting %q", line)
	}
	return f[0], f[1], nil
}

// helloUDP sends one datagram from ns to addr and reads the answer.
func helloUDP(ns, addr string) (name, from string, err error) {
	c, err := dial(ns, "udp4", addr)
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("hi")); err != nil {
		return "", "", err
	}
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil {
		return "", "", err
	}
	f := strings.Fields(string(buf[:n]))
	if len(f) != 2 {
		return "", "", fmt.Errorf("answer %q", buf[:n])
	}
	return f[0], f[1], nil
}

func applyIn(t testing.TB, k *NFTables, svcs []Service) {
	t.Helper()
	if err := inNS(ktHost, func() error { return k.Apply(svcs) }); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

func newTestKernel(t testing.TB) *NFTables {
	return NewNFTables(Config{ClusterCIDR: ktCluster, Bridge: "br0", ServiceCIDR: ktServices, LocalnetDevices: []string{"br0"},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

func ep(ip string, local bool) Endpoint { return Endpoint{Addr: netip.MustParseAddr(ip), Local: local} }

func TestNFTablesDataPath(t *testing.T) {
	needRoot(t)
	kernelTestbed(t)
	k := newTestKernel(t)
	web := Service{Name: "shop/web", VIP: netip.MustParseAddr(ktVIP),
		Endpoints: []Endpoint{ep(ktPod1IP, true)},
		Published: []Published{
			{Port: 8080, Target: 7001, Protocol: "tcp"},
			{Port: 8081, Target: 7002, Protocol: "udp"},
			{HostIP: netip.MustParseAddr("127.0.0.1"), Port: 8082, Target: 7001, Protocol: "tcp"},
		}}
	applyIn(t, k, []Service{web})

	t.Run("every port of the VIP, from a pod, keeping its address", func(t *testing.T) {
		name, from, err := hello(ktPod2, ktVIP+":7001")
		if err != nil || name != "pod1" || from != ktPod2IP {
			t.Fatalf("pod2 -> VIP:7001 = %s from %s, %v; want pod1 seeing %s", name, from, err, ktPod2IP)
		}
		name, from, err = helloUDP(ktPod2, ktVIP+":7002")
		if err != nil || name != "pod1" || from != ktPod2IP {
			t.Fatalf("pod2 -> VIP:7002/udp = %s from %s, %v", name, from, err)
		}
	})
	t.Run("hairpin: a pod reaching itself through its VIP", func(t *testing.T) {
		name, from, err := hello(ktPod1, ktVIP+":7001")
		if err != nil || name != "pod1" || from == ktPod1IP {
			t.Fatalf("pod1 -> VIP = %s from %s, %v; want pod1, masqueraded", name, from, err)
		}
	})
	t.Run("the host reaches the VIP, from the bridge's address", func(t *testing.T) {
		if name, from, err := hello(ktHost, ktVIP+":7001"); err != nil || name != "pod1" || from != ktGW {
			t.Fatalf("host -> VIP = %s seeing %s, %v; want pod1 seeing the gateway %s", name, from, err, ktGW)
		}
	})
	t.Run("published port from outside keeps the client address", func(t *testing.T) {
		name, from, err := hello(ktClient, ktHostUp+":8080")
		if err != nil || name != "pod1" || from != ktCliIP {
			t.Fatalf("client -> host:8080 = %s from %s, %v; want pod1 seeing %s", name, from, err, ktCliIP)
		}
		name, from, err = helloUDP(ktClient, ktHostUp+":8081")
		if err != nil || name != "pod1" || from != ktCliIP {
			t.Fatalf("client -> host:8081/udp = %s from %s, %v", name, from, err)
		}
	})
	t.Run("a client outside that routes the service range to the host gets nothing", func(t *testing.T) {
		run(t, "ip", "-n", ktClient, "route", "add", ktServices.String(), "via", ktHostUp)
		defer run(t, "ip", "-n", ktClient, "route", "del", ktServices.String(), "via", ktHostUp)
		if name, from, err := hello(ktClient, ktVIP+":7001"); err == nil {
			t.Fatalf("client -> VIP = %s seeing %s: the VIP answered outside the cluster", name, from)
		}
	})
	t.Run("a client outside that routes the pod range to the host gets nothing", func(t *testing.T) {
		run(t, "ip", "-n", ktClient, "route", "add", ktCluster.String(), "via", ktHostUp)
		defer run(t, "ip", "-n", ktClient, "route", "del", ktCluster.String(), "via", ktHostUp)
		if name, from, err := hello(ktClient, ktPod1IP+":7001"); err == nil {
			t.Fatalf("client -> pod1's IP = %s seeing %s: a pod answered outside the cluster", name, from)
		}
		// What its published port serves still answers, and the pod's own
		// connections out still get their replies.
		if name, _, err := hello(ktClient, ktHostUp+":8080"); err != nil || name != "pod1" {
			t.Fatalf("client -> host:8080 = %s, %v; want pod1", name, err)
		}
		if err := inNS(ktClient, func() error {
			ln, err := net.Listen("tcp4", ktCliIP+":7003")
			if err != nil {
				return err
			}
			go func() {
				if c, err := ln.Accept(); err == nil {
					fmt.Fprintln(c, "client", c.RemoteAddr())
					c.Close()
				}
			}()
			t.Cleanup(func() { ln.Close() })
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if name, _, err := hello(ktPod1, ktCliIP+":7003"); err != nil || name != "client" {
			t.Fatalf("pod1 -> client = %s, %v; want the client's greeting", name, err)
		}
	})
	t.Run("published port on localhost and the host's address, from the host", func(t *testing.T) {
		for _, addr := range []string{"127.0.0.1:8080", ktHostUp + ":8080", "127.0.0.1:8082"} {
			if name, _, err := hello(ktHost, addr); err != nil || name != "pod1" {
				t.Fatalf("host -> %s = %s, %v", addr, name, err)
			}
		}
		if _, _, err := hello(ktClient, ktHostUp+":8082"); err == nil {
			t.Fatal("a port published on 127.0.0.1 answered on the host's address")
		}
	})
	t.Run("the client cannot reach the host's loopback", func(t *testing.T) {
		var ln net.Listener
		if err := inNS(ktHost, func() (err error) { ln, err = net.Listen("tcp4", "127.0.0.1:7999"); return err }); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		run(t, "ip", "-n", ktClient, "route", "add", "127.0.0.0/8", "via", ktHostUp, "dev", "eth0", "table", "100")
		run(t, "ip", "-n", ktClient, "rule", "add", "to", "127.0.0.0/8", "lookup", "100", "priority", "10")
		run(t, "ip", "netns", "exec", ktClient, "sysctl", "-qw", "net.ipv4.conf.eth0.route_localnet=1")
		run(t, "ip", "netns", "exec", ktHost, "sysctl", "-qw", "net.ipv4.conf.up0.route_localnet=1")
		if c, err := dial(ktClient, "tcp4", "127.0.0.1:7999"); err == nil {
			c.Close()
			t.Fatal("a client outside the host connected to the host's 127.0.0.1:7999")
		}
	})
	t.Run("balanced per connection over the endpoints", func(t *testing.T) {
		web.Endpoints = []Endpoint{ep(ktPod1IP, true), ep(ktPod2IP, true)}
		applyIn(t, k, []Service{web})
		seen := map[string]int{}
		for range 40 {
			name, _, err := hello(ktClient, ktHostUp+":8080")
			if err != nil {
				t.Fatal(err)
			}
			seen[name]++
		}
		if seen["pod1"] == 0 || seen["pod2"] == 0 {
			t.Fatalf("40 connections reached %v; want both pods", seen)
		}
	})
	t.Run("a UDP flow moves off an endpoint that left", func(t *testing.T) {
		web.Endpoints = []Endpoint{ep(ktPod1IP, true)}
		applyIn(t, k, []Service{web})
		c, err := dial(ktClient, "udp4", ktHostUp+":8081")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ask := func() string {
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 256)
			if _, err := c.Write([]byte("hi")); err != nil {
				return err.Error()
			}
			n, err := c.Read(buf)
			if err != nil {
				return err.Error()
			}
			return strings.Fields(string(buf[:n]))[0]
		}
		if got := ask(); got != "pod1" {
			t.Fatalf("udp flow answered by %q, want pod1", got)
		}
		web.Endpoints = []Endpoint{ep(ktPod2IP, true)} // pod1 leaves (its server still runs)
		applyIn(t, k, []Service{web})
		if err := inNS(ktHost, func() error { k.FlushStale(); return nil }); err != nil {
			t.Fatal(err)
		}
		if got := ask(); got != "pod2" {
			t.Fatalf("the same udp flow after pod1 left answered by %q, want pod2 (stale conntrack entry)", got)
		}
	})
	t.Run("a UDP client sending before the port had endpoints is served once it has", func(t *testing.T) {
		udp := Service{Name: "shop/udp", Published: []Published{{Port: 8083, Target: 7002, Protocol: "udp"}}}
		applyIn(t, k, []Service{web, udp})
		c, err := dial(ktClient, "udp4", ktHostUp+":8083")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ask := func() (string, error) {
			_ = c.SetDeadline(time.Now().Add(time.Second))
			if _, err := c.Write([]byte("hi")); err != nil {
				return "", err
			}
			buf := make([]byte, 256)
			n, err := c.Read(buf)
			if err != nil {
				return "", err
			}
			return strings.Fields(string(buf[:n]))[0], nil
		}
		if got, err := ask(); err == nil {
			t.Fatalf("udp port without endpoints answered %q", got)
		}
		udp.Endpoints = []Endpoint{ep(ktPod1IP, true)}
		applyIn(t, k, []Service{web, udp})
		if err := inNS(ktHost, func() error { k.FlushStale(); return nil }); err != nil {
			t.Fatal(err)
		}
		if got, err := ask(); got != "pod1" {
			t.Fatalf("the same udp client once the port has endpoints: %q, %v; want pod1", got, err)
		}
		applyIn(t, k, []Service{web})
	})
	t.Run("host mode publishes local endpoints only, keeping the client address", func(t *testing.T) {
		host := web
		host.Published = []Published{{Port: 8080, Target: 7001, Protocol: "tcp", HostMode: true}}
		host.Endpoints = []Endpoint{ep(ktPod1IP, true), ep(ktPod2IP, false)}
		applyIn(t, k, []Service{host})
		for range 10 {
			name, from, err := hello(ktClient, ktHostUp+":8080")
			if err != nil || name != "pod1" || from != ktCliIP {
				t.Fatalf("client -> host-mode port = %s from %s, %v; want pod1 seeing %s", name, from, err, ktCliIP)
			}
		}
		host.Endpoints = []Endpoint{ep(ktPod2IP, false)}
		applyIn(t, k, []Service{host})
		if _, _, err := hello(ktClient, ktHostUp+":8080"); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("host-mode port without a local endpoint: %v; want connection refused", err)
		}
	})
	t.Run("no endpoint: refused at once, TCP and UDP", func(t *testing.T) {
		empty := web
		empty.Endpoints = nil
		applyIn(t, k, []Service{empty})
		for _, ns := range []string{ktPod2, ktHost} {
			start := time.Now()
			_, _, err := hello(ns, ktVIP+":7001")
			if !errors.Is(err, syscall.ECONNREFUSED) || time.Since(start) > time.Second {
				t.Fatalf("%s -> VIP without endpoints: %v after %v; want connection refused at once", ns, err, time.Since(start))
			}
			// A pod gets the ICMP port unreachable (connection refused on the
			// next read); the host's own datagram is refused on write.
			if _, _, err := helloUDP(ns, ktVIP+":7002"); !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.EPERM) {
				t.Fatalf("%s -> VIP:7002/udp without endpoints: %v; want connection refused", ns, err)
			}
		}
	})
	t.Run("a pod refused by a VIP reaches it once it has endpoints", func(t *testing.T) {
		// A ping too: nothing sent to a VIP may earn the pod an ICMP redirect
		// that would make it look for the VIP on its own link.
		if ping, err := exec.LookPath("ping"); err == nil {
			_ = exec.Command("ip", "netns", "exec", ktPod2, ping, "-c", "1", "-W", "1", ktVIP).Run()
		}
		applyIn(t, k, []Service{web})
		if out, _ := exec.Command("ip", "-n", ktPod2, "route", "get", ktVIP).CombinedOutput(); strings.Contains(string(out), "redirected") {
			t.Errorf("pod2 got a redirect for the VIP: %s", out)
		}
		if name, _, err := hello(ktPod2, ktVIP+":7001"); err != nil || name == "" {
			t.Fatalf("pod2 -> VIP after its endpoints came back: %v", err)
		}
	})
	t.Run("a restarted agent keeps established connections", func(t *testing.T) {
		applyIn(t, k, []Service{web})
		c, err := dial(ktClient, "tcp4", ktHostUp+":8080")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r := bufio.NewReader(c)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		k2 := newTestKernel(t) // a new agent: replaces the table whole
		applyIn(t, k2, []Service{web})
		if _, err := fmt.Fprintln(c, "still there"); err != nil {
			t.Fatal(err)
		}
		if line, err := r.ReadString('\n'); err != nil || line != "still there\n" {
			t.Fatalf("after the table was replaced: %q, %v", line, err)
		}
		k = k2
	})
	t.Run("teardown leaves nothing", func(t *testing.T) {
		if err := inNS(ktHost, k.Teardown); err != nil {
			t.Fatal(err)
		}
		if out, _ := exec.Command("ip", "-n", ktHost, "route", "show", ktServices.String()).CombinedOutput(); len(strings.TrimSpace(string(out))) > 0 {
			t.Fatalf("after teardown the service cidr is still routed: %s", out)
		}
		out, err := exec.Command("ip", "netns", "exec", ktHost, "nft", "list", "ruleset").CombinedOutput()
		if err == nil && strings.Contains(string(out), "table ip "+DefaultTable) {
			t.Fatalf("after teardown:\n%s", out)
		}
	})
}

// TestNFTablesIncremental checks that changes are incremental and that the
// table matches the plan after any sequence of them.
func TestNFTablesIncremental(t *testing.T) {
	needRoot(t)
	kernelTestbed(t)
	k := newTestKernel(t)
	var svcs []Service
	for i := range 20 {
		s := Service{Name: fmt.Sprintf("p/s%d", i), VIP: netip.AddrFrom4([4]byte{10, 216, 1, byte(i + 1)})}
		for j := range 3 {
			s.Endpoints = append(s.Endpoints, ep(fmt.Sprintf("10.215.%d.%d", 2+j, i+1), j == 0))
		}
		s.Published = []Published{{Port: uint16(9000 + i), Target: 80, Protocol: "tcp"}}
		svcs = append(svcs, s)
	}
	applyIn(t, k, svcs)
	var mu sync.Mutex
	check := func(what string) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		var chains int
		if err := inNS(ktHost, func() error {
			out, err := exec.Command("nft", "list", "table", "ip", DefaultTable).CombinedOutput()
			if err != nil {
				return fmt.Errorf("nft list: %v: %s", err, out)
			}
			chains = strings.Count(string(out), "\tchain ")
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if want := len(k.cur.chains) + fixedChains; chains != want {
			t.Fatalf("%s: table has %d chains, plan %d", what, chains, want)
		}
		if got, want := k.Rules(), k.cur.size(); got != want || got == 0 {
			t.Fatalf("%s: Rules = %d, want the plan's %d", what, got, want)
		}
	}
	check("initial")
	svcs[3].Endpoints = svcs[3].Endpoints[:1]
	svcs = append(svcs[:5], svcs[6:]...)
	svcs[7].Published = nil
	applyIn(t, k, svcs)
	check("after removing endpoints, a service and a published port")
	if err := inNS(ktHost, k.Check); err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "netns", "exec", ktHost, "nft", "delete", "table", "ip", DefaultTable)
	if err := inNS(ktHost, k.Check); err == nil {
		t.Fatal("Check did not notice the table was deleted")
	}
	if got := k.Rules(); got != 0 {
		t.Errorf("Rules = %d once the table is gone, want 0", got)
	}
	applyIn(t, k, svcs)
	check("after repair")
}
