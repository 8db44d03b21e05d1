package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"golang.org/x/sys/unix"

	"github.com/devhq/dev/test/testimage"
)

// testImage is the image every fixture runs (test/testapp, FROM scratch).
const testImage = "dev-testapp:e2e"

// Every test agent uses its own Docker network and bridge on a CIDR that
// does not collide with a developer's own agent (10.213.0.0/16).
const (
	e2eNetwork = "deve2e"
	e2eBridge  = "deve2e0"
	e2eCIDR    = "10.215.0.0/16"
	e2eSvcCIDR = "10.216.0.0/16"
)

var devBin string // built once in TestMain

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		if os.Getenv("CI") != "" {
			os.Exit(1)
		}
		os.Exit(0) // no Docker on a developer laptop
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	dir, err := os.MkdirTemp("", "dev-e2e-bin")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	devBin = filepath.Join(dir, "dev")
	build := exec.Command("go", "build", "-o", devBin, "./cmd/dev")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("build dev: %v\n%s", err, out)
	}
	dc, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return 0, err
	}
	defer dc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := dc.Ping(ctx); err != nil {
		return 0, fmt.Errorf("docker engine: %w", err)
	}
	if err := testimage.Build(ctx, dc, testImage); err != nil {
		return 0, err
	}
	return m.Run(), nil
}

// cluster is one `dev agent` on the local Engine, with its own data dir.
type cluster struct {
	t          *testing.T
	dir        string
	node       string
	raft       string
	gossip     string
	api        string
	dnsAddr    string
	ingress    string // the ingress router's address (HTTP)
	ingressTLS string // and HTTPS
	docker     *client.Client
	agent      *exec.Cmd
	exited     chan struct{}
	logFile    string
}

// newCluster starts an agent and registers cleanup of everything it may
// leave: the agent process, containers and volumes of its node, the network.
func newCluster(t *testing.T) *cluster {
	t.Helper()
	dir, err := os.MkdirTemp("", "dev-e2e") // short: the socket path must fit 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{
		t: t, dir: dir, docker: testimage.Docker(t),
		node: fmt.Sprintf("e2e-%d", time.Now().UnixNano()%1e6),
		raft: freeAddr(t), gossip: freeAddr(t), api: freeAddr(t), dnsAddr: freeAddr(t), ingress: freeAddr(t), ingressTLS: freeAddr(t),
		logFile: filepath.Join(dir, "agent.log"),
	}
	t.Cleanup(func() {
		c.stopAgent()
		c.removeDockerObjects()
		if t.Failed() {
			if b, err := os.ReadFile(c.logFile); err == nil {
				t.Logf("agent log:\n%s", lastLines(string(b), 60))
			}
		}
		removeAgentDir(t, dir)
	})
	c.startAgent()
	return c
}

// removeAgentDir removes an agent's data dir, first unmounting the tmpfs
// that holds its pods' secret files (<dir>/secrets), which an agent
// stopped with pods running leaves mounted.
func removeAgentDir(t *testing.T, dir string) {
	secrets := filepath.Join(dir, "secrets")
	for range mountsAt(secrets) { // the topmost first, when stacked
		if err := unix.Unmount(secrets, unix.MNT_DETACH); err != nil {
			t.Logf("unmount %s: %v", secrets, err)
			break
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Logf("remove %s: %v", dir, err)
	}
}

// mountEntry is one mount of /proc/self/mountinfo.
type mountEntry struct {
	fstype  string // tmpfs, ext4...
	options string // per mount: rw,nosuid,nodev,noexec...
	super   string // per file system: mode=700,size=65536k...
}

// mountsAt returns the mounts whose mount point is exactly path (its
// symbolic links resolved), the topmost last.
func mountsAt(path string) []mountEntry {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []mountEntry
	for _, line := range strings.Split(string(b), "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
		f := strings.Fields(line)
		if len(f) < 10 || hostsUnescape(f[4]) != path {
			continue
		}
		for i := 6; i+3 < len(f); i++ {
			if f[i] == "-" {
				out = append(out, mountEntry{fstype: f[i+1], options: f[5], super: f[i+3]})
				break
			}
		}
	}
	return out
}

// freeAddr is a loopback address whose port nothing uses now, for TCP and UDP.
func freeAddr(t *testing.T) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(freeTCPPort(t)))
}

// nextPort walks the ports handed to agents, from a random start in
// [firstPort, lastPort]. That range lies below the kernel's ephemeral range
// (32768-60999): a port picked by listening on :0 comes from the ephemeral
// range, and an outgoing connection may take it before the agent binds it.
var nextPort atomic.Int32

const firstPort, lastPort = 20000, 29999

// freeTCPPort is a port that no test of this run was given before and that
// nothing uses now, for TCP and UDP (gossip binds both).
func freeTCPPort(t *testing.T) int {
	t.Helper()
	nextPort.CompareAndSwap(0, int32(firstPort+rand.IntN(lastPort-firstPort)))
	for range lastPort - firstPort {
		p := int(nextPort.Add(1))
		if p > lastPort {
			nextPort.Store(firstPort)
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err != nil {
			continue
		}
		pc.Close()
		return p
	}
	t.Fatalf("no free port in %d-%d", firstPort, lastPort)
	return 0
}

func (c *cluster) env() []string {
	return append(os.Environ(),
		"DEV_DATA_DIR="+c.dir,
		"DEV_HOST=unix://"+filepath.Join(c.dir, "dev.sock"),
	)
}

func (c *cluster) startAgent() {
	c.t.Helper()
	logf, err := os.OpenFile(c.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(devBin, "agent", "--data-dir", c.dir, "--node-name", c.node,
		"--advertise-addr", "127.0.0.1", "--raft-port", port(c.raft), "--gossip-port", port(c.gossip),
		"--api-port", port(c.api), "--cluster-cidr", e2eCIDR, "--service-cidr", e2eSvcCIDR,
		"--dns-addr", c.dnsAddr, "--ingress-addr", c.ingress, "--ingress-tls-addr", c.ingressTLS, "--network", e2eNetwork,
		"--bridge", e2eBridge, "--dashboard-addr", "127.0.0.1:0", "--fast")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	logf.Close()
	c.agent = cmd
	c.exited = make(chan struct{})
	go func() { _ = cmd.Wait(); close(c.exited) }()
	eventually(c.t, 30*time.Second, "agent answers with a leader", func() error {
		select {
		case <-c.exited:
			return fmt.Errorf("agent exited")
		default:
		}
		out, err := c.dev("ps")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
}

// stopAgent stops the agent with SIGTERM (SIGKILL after 10s).
func (c *cluster) stopAgent() {
	if c.agent == nil {
		return
	}
	_ = c.agent.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-c.agent.Process.Pid, syscall.SIGKILL)
		<-c.exited
	}
	c.agent = nil
}

func (c *cluster) removeDockerObjects() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs, _ := c.docker.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", "dev.node="+c.node))})
	for _, ct := range cs {
		_ = c.docker.ContainerRemove(ctx, ct.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
	}
	vols, _ := c.docker.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "dev.managed=true"))})
	for _, v := range vols.Volumes {
		if strings.HasPrefix(v.Name, "e2e") {
			_ = c.docker.VolumeRemove(ctx, v.Name, true)
		}
	}
	_ = c.docker.NetworkRemove(ctx, e2eNetwork)
	removeDataPathRules()
}

// removeDataPathRules removes what the kernel data path of an e2e agent
// leaves when it is stopped while serving (by design: pods go on being
// served across an agent restart): its nftables table and the DOCKER-USER
// rule.
func removeDataPathRules() {
	_ = exec.Command("nft", "delete", "table", "ip", "dev-"+e2eBridge).Run()
	tag := "dev-services:" + e2eCIDR
	_ = exec.Command("iptables", "-w", "5", "-D", "DOCKER-USER", "-m", "conntrack", "--ctstate", "DNAT",
		"--ctreplsrc", e2eCIDR, "-m", "comment", "--comment", tag, "-j", "ACCEPT").Run()
}

// dev runs the CLI against this cluster and returns combined output.
func (c *cluster) dev(args ...string) (string, error) {
	return c.devIn("", args...)
}

func (c *cluster) devIn(dir string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, devBin, args...)
	cmd.Env = c.env()
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// mustDev runs the CLI and fails the test on a non-zero exit.
func (c *cluster) mustDev(args ...string) string {
	c.t.Helper()
	out, err := c.dev(args...)
	if err != nil {
		c.t.Fatalf("dev %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// podRow mirrors `dev ps -o json`.
type podRow struct {
	Name        string            `json:"name"`
	Project     string            `json:"project"`
	Service     string            `json:"service"`
	Node        string            `json:"node"`
	State       string            `json:"state"`
	Ready       string            `json:"ready"`
	Health      string            `json:"health"`
	IP          string            `json:"ip"`
	ContainerID string            `json:"container_id"`
	Restarts    int               `json:"restarts"`
	Message     string            `json:"message"`
	Labels      map[string]string `json:"labels"`
}

func (c *cluster) ps(project string) []podRow {
	c.t.Helper()
	out := c.mustDev("ps", "-p", project, "-o", "json")
	var rows []podRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		c.t.Fatalf("parse dev ps -o json: %v\n%s", err, out)
	}
	return rows
}

// running returns the running pods of a service.
func running(rows []podRow, service string) []podRow {
	var out []podRow
	for _, r := range rows {
		if r.Service == service && r.State == "running" {
			out = append(out, r)
		}
	}
	return out
}

// containers lists the Engine's containers of a project.
func (c *cluster) containers(project string) []container.Summary {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := c.docker.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", "dev.project="+project))})
	if err != nil {
		c.t.Fatal(err)
	}
	return cs
}

func fixture(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testdata", name, "compose.yaml")
}

// eventually retries f until it succeeds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// writeTemp writes content to a file in a test temp dir and returns its path.
func writeTemp(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "override.yaml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// port returns the port of a host:port address.
func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
