package overlay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/devhq/dev/test/testns"
)

// The two-host test builds, in network namespaces of its own:
//
//	podA (10.212.1.2) -veth- [hostA: br0 10.212.1.1/24, ul0 10.98.0.1/24, devvx0]
//	                                        | ul0 veth pair (the "underlay")
//	podB (10.212.2.2) -veth- [hostB: br0 10.212.2.1/24, ul0 10.98.0.2/24, devvx0]
//
// and in each host namespace what Docker would have done: FORWARD policy
// DROP with a jump to DOCKER-USER, and a MASQUERADE rule for the pod subnet.
//
// Setup/Apply/Teardown run inside a host namespace on a goroutine that locks
// its OS thread, switches the thread to the namespace with netns.Set and
// never unlocks, so the thread is discarded when the goroutine ends and no
// other goroutine ever runs in that namespace. netlink's package functions
// open their sockets per call in the thread's namespace, and the iptables
// child processes are forked by that same thread, so they inherit it too:
// the code under test runs unchanged, exactly as in the node agent.
const (
	nsHostA = "devvxt-hA"
	nsHostB = "devvxt-hB"
	nsPodA  = "devvxt-pA"
	nsPodB  = "devvxt-pB"
	podAIP  = "10.212.1.2"
	podBIP  = "10.212.2.2"
)

func needRootVXLAN(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("needs root (netns, netlink, iptables) and CI is set")
		}
		t.Skip("needs root")
	}
	for _, bin := range []string{"ip", "bridge", "iptables", "nft", "python3"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("needs %s: %v", bin, err)
			}
			t.Skipf("needs %s: %v", bin, err)
		}
	}
}

// cmdOut runs a command with a time bound and returns its combined output.
func cmdOut(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := cmdOut(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// inNS runs fn inside the named namespace (testns.In).
func inNS(name string, fn func() error) error { return testns.In(name, fn) }

func setupIn(t *testing.T, host string, v *VXLAN) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	if err := inNS(host, func() (err error) { mac, err = v.Setup(); return err }); err != nil {
		t.Fatalf("Setup in %s: %v", host, err)
	}
	return mac
}

func applyIn(t *testing.T, host string, v *VXLAN, peers []Peer) {
	t.Helper()
	if err := inNS(host, func() error { return v.Apply(peers) }); err != nil {
		t.Fatalf("Apply in %s: %v", host, err)
	}
}

// eventually retries fn until it succeeds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// snapshot is the overlay state of a host namespace, as text.
func snapshot(t *testing.T, host string) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"ip", "-n", host, "-d", "link", "show", "devvx0"},
		{"ip", "-n", host, "-4", "addr", "show", "dev", "devvx0"},
		{"ip", "-n", host, "-4", "route", "show", "dev", "devvx0"},
		{"ip", "-n", host, "-4", "neigh", "show", "dev", "devvx0"},
		{"bridge", "-n", host, "fdb", "show", "dev", "devvx0"},
		{"ip", "netns", "exec", host, "iptables", "-w", "-S", "DOCKER-USER"},
		{"ip", "netns", "exec", host, "iptables", "-w", "-t", "nat", "-S", "POSTROUTING"},
		{"ip", "netns", "exec", host, "nft", "list", "set", "ip", "devvx0", "peers"},
	} {
		fmt.Fprintf(&b, "$ %s\n%s", strings.Join(args, " "), mustRun(t, args...))
	}
	return b.String()
}

// simulateDocker does in a host namespace what the Docker Engine does to
// iptables for a bridge network on br0 owning subnet.
func simulateDocker(t *testing.T, host, subnet string) {
	t.Helper()
	ipt := []string{"ip", "netns", "exec", host, "iptables", "-w"}
	_, _ = cmdOut(append(ipt, "-N", "DOCKER-USER")...) // may exist already (created by Setup)
	mustRun(t, append(ipt, "-P", "FORWARD", "DROP")...)
	mustRun(t, append(ipt, "-I", "FORWARD", "-j", "DOCKER-USER")...)
	mustRun(t, append(ipt, "-t", "nat", "-I", "POSTROUTING", "-s", subnet, "!", "-o", "br0", "-j", "MASQUERADE")...)
}

func deleteNamespaces() {
	for _, ns := range []string{nsPodA, nsPodB, nsHostA, nsHostB} {
		_, _ = cmdOut("ip", "netns", "del", ns)
	}
}

// buildHosts creates the namespaces and links drawn above.
func buildHosts(t *testing.T) {
	t.Helper()
	deleteNamespaces() // leftovers of a killed run
	t.Cleanup(deleteNamespaces)
	for i, h := range []struct{ host, pod string }{{nsHostA, nsPodA}, {nsHostB, nsPodB}} {
		n := i + 1
		gw := fmt.Sprintf("10.212.%d.1", n)
		for _, args := range [][]string{
			{"ip", "netns", "add", h.host},
			{"ip", "netns", "add", h.pod},
			{"ip", "-n", h.host, "link", "set", "lo", "up"},
			{"ip", "-n", h.pod, "link", "set", "lo", "up"},
			{"ip", "-n", h.host, "link", "add", "br0", "type", "bridge"},
			{"ip", "-n", h.host, "addr", "add", gw + "/24", "dev", "br0"},
			{"ip", "-n", h.host, "link", "set", "br0", "up"},
			// Pod MTU = VXLAN MTU, as the Docker network should be configured.
			{"ip", "-n", h.host, "link", "add", "veth0", "mtu", "1450", "type", "veth", "peer", "name", "eth0", "mtu", "1450", "netns", h.pod},
			{"ip", "-n", h.host, "link", "set", "veth0", "master", "br0", "up"},
			{"ip", "-n", h.pod, "addr", "add", fmt.Sprintf("10.212.%d.2/24", n), "dev", "eth0"},
			{"ip", "-n", h.pod, "link", "set", "eth0", "up"},
			{"ip", "-n", h.pod, "route", "add", "default", "via", gw},
			{"ip", "netns", "exec", h.host, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
		} {
			mustRun(t, args...)
		}
	}
	mustRun(t, "ip", "link", "add", "ul0", "netns", nsHostA, "type", "veth", "peer", "name", "ul0", "netns", nsHostB)
	for i, host := range []string{nsHostA, nsHostB} {
		mustRun(t, "ip", "-n", host, "addr", "add", fmt.Sprintf("10.98.0.%d/24", i+1), "dev", "ul0")
		mustRun(t, "ip", "-n", host, "link", "set", "ul0", "up")
	}
}

var pingSeq atomic.Uint32

// ping sends one ICMP echo request from inside namespace from and waits up
// to a second for the reply (the machine has no ping binary).
func ping(from, to string) error {
	dst := net.ParseIP(to).To4()
	return inNS(from, func() error {
		c, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
		if err != nil {
			return fmt.Errorf("open icmp socket: %w", err)
		}
		defer c.Close()
		id, seq := uint16(os.Getpid()), uint16(pingSeq.Add(1))
		msg := []byte{8, 0, 0, 0, byte(id >> 8), byte(id), byte(seq >> 8), byte(seq), 'd', 'e', 'v', '-', 'v', 'x'}
		var sum uint32
		for i := 0; i < len(msg); i += 2 {
			sum += uint32(msg[i])<<8 | uint32(msg[i+1])
		}
		sum = sum>>16 + sum&0xffff
		sum += sum >> 16
		cs := ^uint16(sum)
		msg[2], msg[3] = byte(cs>>8), byte(cs)
		if _, err := c.WriteTo(msg, &net.IPAddr{IP: dst}); err != nil {
			return fmt.Errorf("send echo request to %s: %w", to, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 1500)
		for {
			n, src, err := c.ReadFrom(buf)
			if err != nil {
				return fmt.Errorf("ping %s from %s: no echo reply: %w", to, from, err)
			}
			ip, _ := src.(*net.IPAddr)
			if n >= 8 && buf[0] == 0 && ip != nil && ip.IP.Equal(dst) &&
				uint16(buf[4])<<8|uint16(buf[5]) == id && uint16(buf[6])<<8|uint16(buf[7]) == seq {
				return nil
			}
		}
	})
}

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startHTTPServer runs python's http.server in a pod namespace, on ip:8080;
// its access log (on stderr) names the client address the server saw.
func startHTTPServer(t *testing.T, pod, ip string) *lockedBuffer {
	t.Helper()
	py := strings.TrimSpace(mustRun(t, "python3", "-c", "import sys; print(sys.executable)")) // skip any pyenv shim
	log := &lockedBuffer{}
	cmd := exec.Command("ip", "netns", "exec", pod, py, "-m", "http.server", "8080", "--bind", ip, "--directory", t.TempDir())
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	return log
}

// checkNoNAT makes an HTTP request from one pod to the other and checks
// that the server saw the client pod's own address.
func checkNoNAT(t *testing.T, fromPod, fromIP, toPod, toIP string) {
	t.Helper()
	log := startHTTPServer(t, toPod, toIP)
	get := fmt.Sprintf("import urllib.request; urllib.request.urlopen('http://%s:8080/', timeout=2).read()", toIP)
	eventually(t, 10*time.Second, "http from "+fromIP+" to "+toIP, func() error {
		_, err := cmdOut("ip", "netns", "exec", fromPod, "python3", "-c", get)
		return err
	})
	eventually(t, 3*time.Second, "access log of "+toIP, func() error {
		if l := log.String(); !strings.Contains(l, fromIP+" - - ") {
			return fmt.Errorf("the server on %s did not log a request from %s (NAT?):\n%s", toIP, fromIP, l)
		}
		return nil
	})
}

// udpSink counts the datagrams that reach addr in namespace ns.
func udpSink(t *testing.T, ns, addr string) *atomic.Int64 {
	t.Helper()
	var pc net.PacketConn
	if err := inNS(ns, func() (err error) { pc, err = net.ListenPacket("udp4", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	var n atomic.Int64
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			n.Add(1)
		}
	}()
	return &n
}

// vxlanDrops is the packet count of the VXLAN filter's drop rule in host.
func vxlanDrops(t *testing.T, host string) int {
	t.Helper()
	out := mustRun(t, "ip", "netns", "exec", host, "nft", "list", "chain", "ip", "devvx0", "input")
	_, after, ok := strings.Cut(out, "counter packets ")
	var n int
	if _, err := fmt.Sscan(after, &n); !ok || err != nil {
		t.Fatalf("no counter in the VXLAN filter:\n%s", out)
	}
	return n
}

func TestVXLANTwoHosts(t *testing.T) {
	needRootVXLAN(t)
	start := time.Now()
	buildHosts(t)

	cluster := netip.MustParsePrefix("10.212.0.0/16")
	cfgA := VXLANConfig{HostIP: netip.MustParseAddr("10.98.0.1"), PodSubnet: netip.MustParsePrefix("10.212.1.0/24"), ClusterCIDR: cluster}
	cfgB := VXLANConfig{HostIP: netip.MustParseAddr("10.98.0.2"), PodSubnet: netip.MustParsePrefix("10.212.2.0/24"), ClusterCIDR: cluster}
	a, b := NewVXLAN(cfgA), NewVXLAN(cfgB)

	// Host A: Docker was there first. Host B: Setup first, then Docker
	// inserts its MASQUERADE above our RETURN; Apply must repair that.
	simulateDocker(t, nsHostA, "10.212.1.0/24")
	macA := setupIn(t, nsHostA, a)
	macB := setupIn(t, nsHostB, b)
	simulateDocker(t, nsHostB, "10.212.2.0/24")

	if !slices.Equal(macA, vtepMAC(cfgA.HostIP)) || !slices.Equal(macB, vtepMAC(cfgB.HostIP)) {
		t.Fatalf("vtep macs %s, %s; want the ones derived from the host ips", macA, macB)
	}
	if out := mustRun(t, "ip", "-n", nsHostA, "-d", "link", "show", "devvx0"); !strings.Contains(out, "mtu 1450") ||
		!strings.Contains(out, "vxlan id 4213") || !strings.Contains(out, "dstport 8472") || !strings.Contains(out, "nolearning") {
		t.Fatalf("devvx0 in host A is not as configured (mtu 1450 derived from ul0, vni, port, nolearning):\n%s", out)
	}

	peerA := Peer{Name: "a", HostIP: cfgA.HostIP, PodSubnet: cfgA.PodSubnet, VTEPMAC: macA}
	peerB := Peer{Name: "b", HostIP: cfgB.HostIP, PodSubnet: cfgB.PodSubnet, VTEPMAC: macB}
	peerC := Peer{Name: "c", HostIP: netip.MustParseAddr("10.98.0.3"), PodSubnet: netip.MustParsePrefix("10.212.3.0/24"),
		VTEPMAC: net.HardwareAddr{0x0e, 0x64, 10, 98, 0, 3}}
	both := []Peer{peerA, peerB} // each host skips itself

	applyIn(t, nsHostA, a, []Peer{peerA, peerB, peerC}) // C departs below
	applyIn(t, nsHostA, a, both)
	applyIn(t, nsHostB, b, both)

	if out := mustRun(t, "ip", "netns", "exec", nsHostB, "iptables", "-w", "-t", "nat", "-S", "POSTROUTING"); !strings.HasPrefix(
		strings.SplitN(out, "\n", 3)[1], "-A POSTROUTING -s 10.212.0.0/16 -d 10.212.0.0/16 -m comment --comment dev-overlay -j RETURN") {
		t.Fatalf("host B: our RETURN is not the first POSTROUTING rule after Apply:\n%s", out)
	}
	if out := mustRun(t, "ip", "-n", nsHostA, "route", "show", "dev", "devvx0"); strings.Contains(out, "10.212.3.0") ||
		!strings.Contains(out, "10.212.2.0/24 via 10.212.2.0 onlink") {
		t.Fatalf("host A routes after C departed:\n%s", out)
	}

	eventually(t, 5*time.Second, "ping pod A -> pod B", func() error { return ping(nsPodA, podBIP) })
	eventually(t, 5*time.Second, "ping pod B -> pod A", func() error { return ping(nsPodB, podAIP) })

	// No NAT, both ways: each server sees the other pod's own address.
	checkNoNAT(t, nsPodA, podAIP, nsPodB, podBIP)
	checkNoNAT(t, nsPodB, podBIP, nsPodA, podAIP)

	// Idempotent: Setup (adopting the device) and Apply again change nothing.
	wantA, wantB := snapshot(t, nsHostA), snapshot(t, nsHostB)
	if mac := setupIn(t, nsHostA, a); !slices.Equal(mac, macA) {
		t.Fatalf("second Setup returned mac %s, want %s", mac, macA)
	}
	applyIn(t, nsHostA, a, both)
	applyIn(t, nsHostA, a, both)
	applyIn(t, nsHostB, b, both)
	if got := snapshot(t, nsHostA); got != wantA {
		t.Fatalf("host A changed on repeated Setup/Apply:\nbefore:\n%s\nafter:\n%s", wantA, got)
	}
	if got := snapshot(t, nsHostB); got != wantB {
		t.Fatalf("host B changed on repeated Apply:\nbefore:\n%s\nafter:\n%s", wantB, got)
	}

	// An existing device with other parameters is recreated, keeping its MAC.
	other := cfgA
	other.Port = 4789
	if mac := setupIn(t, nsHostA, NewVXLAN(other)); !slices.Equal(mac, macA) {
		t.Fatalf("Setup with another port returned mac %s, want %s", mac, macA)
	}
	if out := mustRun(t, "ip", "-n", nsHostA, "-d", "link", "show", "devvx0"); !strings.Contains(out, "dstport 4789") {
		t.Fatalf("devvx0 not recreated with dstport 4789:\n%s", out)
	}
	setupIn(t, nsHostA, a)

	// No peers: host A forgets B and pods can no longer reach each other.
	applyIn(t, nsHostA, a, nil)
	for _, args := range [][]string{
		{"ip", "-n", nsHostA, "-4", "route", "show", "dev", "devvx0"},
		{"ip", "-n", nsHostA, "-4", "neigh", "show", "dev", "devvx0"},
	} {
		if out := strings.TrimSpace(mustRun(t, args...)); out != "" {
			t.Fatalf("after Apply(nil), %s:\n%s", strings.Join(args, " "), out)
		}
	}
	if out := mustRun(t, "bridge", "-n", nsHostA, "fdb", "show", "dev", "devvx0"); strings.Contains(out, macB.String()) {
		t.Fatalf("after Apply(nil), fdb still has B:\n%s", out)
	}
	if err := ping(nsPodA, podBIP); err == nil {
		t.Fatal("pod A still reaches pod B after Apply(nil)")
	}
	// B still knows A, but A forgot B: B's VXLAN packets are dropped at A's
	// port, before the driver would hand their frames to A's pods.
	if out := mustRun(t, "ip", "netns", "exec", nsHostA, "nft", "list", "set", "ip", "devvx0", "peers"); strings.Contains(out, "10.98.0.2") {
		t.Fatalf("host A's VXLAN filter still lets B in:\n%s", out)
	}
	got := udpSink(t, nsPodA, podAIP+":7010")
	eventually(t, 5*time.Second, "host A drops B's VXLAN packets", func() error {
		if err := inNS(nsPodB, func() error {
			c, err := net.Dial("udp4", podAIP+":7010")
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte("from B"))
			return err
		}); err != nil {
			return err
		}
		if n := vxlanDrops(t, nsHostA); n == 0 {
			return errors.New("no VXLAN packet dropped yet")
		}
		return nil
	})
	if n := got.Load(); n > 0 {
		t.Fatalf("pod A received %d datagrams from pod B though host A forgot B", n)
	}

	// Teardown removes device and rules, and is idempotent.
	for _, h := range []struct {
		host string
		v    *VXLAN
	}{{nsHostA, a}, {nsHostB, b}} {
		for i := range 2 {
			if err := inNS(h.host, h.v.Teardown); err != nil {
				t.Fatalf("Teardown %d in %s: %v", i+1, h.host, err)
			}
		}
		if _, err := cmdOut("ip", "-n", h.host, "link", "show", "devvx0"); err == nil {
			t.Fatalf("%s: devvx0 still exists after Teardown", h.host)
		}
		rules := mustRun(t, "ip", "netns", "exec", h.host, "iptables", "-w", "-S", "DOCKER-USER") +
			mustRun(t, "ip", "netns", "exec", h.host, "iptables", "-w", "-t", "nat", "-S", "POSTROUTING")
		if strings.Contains(rules, RuleComment) {
			t.Fatalf("%s: rules left after Teardown:\n%s", h.host, rules)
		}
		if !strings.Contains(rules, "MASQUERADE") {
			t.Fatalf("%s: Teardown removed Docker's rule too:\n%s", h.host, rules)
		}
		if out, err := cmdOut("ip", "netns", "exec", h.host, "nft", "list", "table", "ip", "devvx0"); err == nil {
			t.Fatalf("%s: the VXLAN filter table is left after Teardown:\n%s", h.host, out)
		}
	}
	if err := inNS(nsHostA, func() error { return a.Apply(both) }); err == nil {
		t.Fatal("Apply after Teardown succeeded; want an error asking for Setup")
	}
	t.Logf("two-host overlay test took %v", time.Since(start).Round(time.Millisecond))
}

func TestVXLANConfig(t *testing.T) {
	host := netip.MustParseAddr("10.0.0.5")
	cluster := netip.MustParsePrefix("10.213.0.0/16")
	sub := netip.MustParsePrefix("10.213.5.0/24")
	tests := []struct {
		name    string
		cfg     VXLANConfig
		want    VXLANConfig
		wantErr bool
	}{
		{"defaults", VXLANConfig{HostIP: host, PodSubnet: sub, ClusterCIDR: cluster},
			VXLANConfig{Device: "devvx0", VNI: 4213, Port: 8472, HostIP: host, PodSubnet: sub, ClusterCIDR: cluster}, false},
		{"explicit", VXLANConfig{Device: "vx1", VNI: 7, Port: 4789, HostIP: host, PodSubnet: sub, ClusterCIDR: cluster, MTU: 1400},
			VXLANConfig{Device: "vx1", VNI: 7, Port: 4789, HostIP: host, PodSubnet: sub, ClusterCIDR: cluster, MTU: 1400}, false},
		{"subnet outside cluster", VXLANConfig{HostIP: host, PodSubnet: netip.MustParsePrefix("10.214.5.0/24"), ClusterCIDR: cluster}, VXLANConfig{}, true},
		{"ipv6 host", VXLANConfig{HostIP: netip.MustParseAddr("fd00::1"), PodSubnet: sub, ClusterCIDR: cluster}, VXLANConfig{}, true},
		{"no host ip", VXLANConfig{PodSubnet: sub, ClusterCIDR: cluster}, VXLANConfig{}, true},
		{"vni too big", VXLANConfig{VNI: 1 << 24, HostIP: host, PodSubnet: sub, ClusterCIDR: cluster}, VXLANConfig{}, true},
		{"long device name", VXLANConfig{Device: "a-very-long-device", HostIP: host, PodSubnet: sub, ClusterCIDR: cluster}, VXLANConfig{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := NewVXLAN(tt.cfg)
			if (v.err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", v.err, tt.wantErr)
			}
			if tt.wantErr {
				if _, err := v.Setup(); err == nil {
					t.Fatal("Setup accepted an invalid config")
				}
				return
			}
			if got := v.Config(); got != tt.want {
				t.Fatalf("config = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPlanPeers(t *testing.T) {
	cfg, err := VXLANConfig{HostIP: netip.MustParseAddr("10.0.0.1"), PodSubnet: netip.MustParsePrefix("10.213.1.0/24"),
		ClusterCIDR: netip.MustParsePrefix("10.213.0.0/16")}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	mac := func(b byte) net.HardwareAddr { return net.HardwareAddr{0x0e, 0x64, 0, 0, 0, b} }
	peer := func(name, host, subnet string, m net.HardwareAddr) Peer {
		return Peer{Name: name, HostIP: netip.MustParseAddr(host), PodSubnet: netip.MustParsePrefix(subnet), VTEPMAC: m}
	}
	self := peer("self", "10.0.0.1", "10.213.1.0/24", mac(1))
	p2 := peer("p2", "10.0.0.2", "10.213.2.0/24", mac(2))
	tests := []struct {
		name       string
		peers      []Peer
		wantRoutes []string
		wantErr    bool
	}{
		{"none", nil, nil, false},
		{"self ignored", []Peer{self, p2}, []string{"10.213.2.0/24 via 10.213.2.0"}, false},
		{"unmasked subnet", []Peer{peer("p3", "10.0.0.3", "10.213.3.7/24", mac(3))}, []string{"10.213.3.0/24 via 10.213.3.0"}, false},
		{"outside cluster", []Peer{p2, peer("x", "10.0.0.9", "10.99.0.0/24", mac(9))}, []string{"10.213.2.0/24 via 10.213.2.0"}, true},
		{"overlaps ours", []Peer{peer("x", "10.0.0.9", "10.213.0.0/20", mac(9))}, nil, true},
		{"duplicate subnet", []Peer{p2, peer("x", "10.0.0.9", "10.213.2.0/24", mac(9))}, []string{"10.213.2.0/24 via 10.213.2.0"}, true},
		{"multicast mac", []Peer{peer("x", "10.0.0.9", "10.213.9.0/24", net.HardwareAddr{1, 0, 0x5e, 0, 0, 1})}, nil, true},
		{"no mac", []Peer{peer("x", "10.0.0.9", "10.213.9.0/24", nil)}, nil, true},
		{"mac reused by another host", []Peer{p2, peer("x", "10.0.0.9", "10.213.9.0/24", mac(2))}, []string{"10.213.2.0/24 via 10.213.2.0"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := planPeers(cfg, tt.peers)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			var got []string
			for dst, gw := range plan.routes {
				got = append(got, fmt.Sprintf("%s via %s", dst, gw))
				if m := plan.neighs[gw]; plan.fdb[m] == (netip.Addr{}) {
					t.Fatalf("route %s has no neighbour/fdb entry: %+v", dst, plan)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.wantRoutes) {
				t.Fatalf("routes = %v, want %v", got, tt.wantRoutes)
			}
		})
	}
}

func TestFakeOverlay(t *testing.T) {
	f := &FakeOverlay{}
	if err := f.Apply(nil); err == nil {
		t.Fatal("Apply before Setup succeeded")
	}
	if _, err := f.Setup(); err != nil {
		t.Fatal(err)
	}
	peers := []Peer{{Name: "b", HostIP: netip.MustParseAddr("10.0.0.2"), VTEPMAC: net.HardwareAddr{0x0e, 0, 0, 0, 0, 2}}}
	if err := f.Apply(peers); err != nil {
		t.Fatal(err)
	}
	peers[0].VTEPMAC[5] = 9 // the fake keeps its own copy
	if got := f.Peers(); len(got) != 1 || got[0].VTEPMAC[5] != 2 {
		t.Fatalf("peers = %+v", got)
	}
	f.TeardownErr = errors.New("boom")
	if err := f.Teardown(); err == nil {
		t.Fatal("TeardownErr not returned")
	}
	if s, a, td := f.Calls(); s != 1 || a != 2 || td != 1 {
		t.Fatalf("calls = %d, %d, %d", s, a, td)
	}
}
