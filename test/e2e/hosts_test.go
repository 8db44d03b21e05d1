package e2e

// The multi-host harness: newHosts simulates n hosts on this machine, each a
// network namespace with its own Docker Engine, joined by a bridge on
// 10.99.0.0/24 (see /work/shared/ENVIRONMENT.md). Everything a run creates is
// named after a random per-run prefix "dt<4 hex>":
//
//	bridge        dtXXXX0            (holds 10.99.0.1/24)
//	netns         dtXXXXh1..         (/run/netns/dtXXXXh1; host i has 10.99.0.1<i>)
//	root veth     vdtXXXXh1..        (peer is eth0 inside the namespace)
//	engine        /run/devtest/dtXXXXh1{,.sock,.pid,.json,.log}, /var/lib/devtest/dtXXXXh1
//	cgroups       /sys/fs/cgroup/*/dtXXXXh1 (the engine's --cgroup-parent)
//	iptables      FORWARD -i dtXXXX0 -o dtXXXX0 -j ACCEPT
//	owner         /run/devtest/dtXXXX.owner ("<pid> <starttime>" of the test process)
//
// A run's cleanup finds its objects by that prefix, so it also removes what a
// half-finished setup left; newHosts first removes leftovers of earlier runs
// whose owner process is gone.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/client"
	"golang.org/x/sys/unix"

	"github.com/devhq/dev/test/testimage"
)

const (
	hostsNet         = "10.99.0." // the /24 reserved for the simulated hosts
	hostsGateway     = hostsNet + "1"
	hostsRunDir      = "/run/devtest"
	hostsLibDir      = "/var/lib/devtest"
	hostsEngineWait  = 60 * time.Second // an engine must answer within this
	hostsStopTimeout = 15 * time.Second // SIGTERM to SIGKILL for an engine
	hostsMax         = 99
)

var (
	hostsPrefixRE = regexp.MustCompile(`^dt[0-9a-f]{4}$`)
	// Names of objects of the scheme; group 1 is the run prefix.
	hostsBridgeRE = regexp.MustCompile(`^(dt[0-9a-f]{4})0$`)
	hostsNetnsRE  = regexp.MustCompile(`^(dt[0-9a-f]{4})h[0-9]+$`)
	hostsVethRE   = regexp.MustCompile(`^v(dt[0-9a-f]{4})h[0-9]+$`)
	hostsFileRE   = regexp.MustCompile(`^(dt[0-9a-f]{4})(h[0-9]+|\.owner)`)
	hostsCmdRE    = regexp.MustCompile(regexp.QuoteMeta(hostsRunDir) + `/(dt[0-9a-f]{4})h[0-9]+`)
	hostsCgroupRE = regexp.MustCompile(`:/(dt[0-9a-f]{4})h[0-9]+(/|\s|$)`)

	hostsMu     sync.Mutex
	hostsActive string // prefix of this process's live run: one at a time (one subnet)
)

// testHost is one simulated host: a network namespace with its own Docker
// Engine, at IP on the hosts' bridge.
type testHost struct {
	Name       string         // "h1"
	IP         string         // "10.99.0.11"
	NetNS      string         // "/run/netns/<prefix>h1"
	DockerHost string         // "unix:///run/devtest/<prefix>h1.sock"
	Docker     *client.Client // client for its engine

	id       string // <prefix>h1: netns, dirs and cgroup name
	veth     string // root side of its veth pair, on the bridge
	dataRoot string
	execRoot string
	logFile  string
	cmd      *exec.Cmd     // dockerd (nsenter execs it, so the pid is dockerd's)
	exited   chan struct{} // closed when dockerd has exited and been reaped
}

// newHosts creates n hosts on a fresh bridge and returns them once every
// engine answers and holds testImage. A t.Cleanup removes everything created,
// on failure too.
func newHosts(t *testing.T, n int) []*testHost {
	t.Helper()
	start := time.Now()
	hostsPreflight(t)
	if n < 1 || n > hostsMax {
		t.Fatalf("newHosts: n=%d, want 1..%d", n, hostsMax)
	}
	root := testimage.Docker(t)

	hostsMu.Lock()
	if hostsActive != "" {
		hostsMu.Unlock()
		t.Fatalf("newHosts: run %s of this process is still active: one set of hosts at a time (they share 10.99.0.0/24)", hostsActive)
	}
	prefix := hostsNewPrefix(t)
	hostsActive = prefix
	hostsMu.Unlock()

	var hosts []*testHost
	t.Cleanup(func() {
		if t.Failed() {
			for _, h := range hosts {
				if b, err := os.ReadFile(h.logFile); err == nil {
					t.Logf("dockerd %s (%s) log:\n%s", h.Name, h.id, lastLines(string(b), 40))
				}
			}
		}
		began := time.Now()
		for _, err := range hostsRemoveRun(prefix, hosts) {
			t.Errorf("hosts cleanup %s: %v", prefix, err)
		}
		t.Logf("hosts %s removed in %s", prefix, time.Since(began).Round(time.Millisecond))
		hostsMu.Lock()
		hostsActive = ""
		hostsMu.Unlock()
	})

	hostsCleanLeftovers(t)
	hostsCheckSubnetFree(t)
	if _, err := os.Stat("/run/containerd/containerd.sock"); err == nil {
		// dockerd would use that containerd instead of its own, and its
		// shims (so host-network containers) would live in the root namespace.
		t.Fatalf("newHosts: a system containerd listens on /run/containerd/containerd.sock; the per-host engines need their own")
	}
	for _, d := range []string{hostsRunDir, hostsLibDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(hostsRunDir, prefix+".owner"), []byte(hostsOwnerID(os.Getpid())), 0o600); err != nil {
		t.Fatal(err)
	}
	driver := hostsStorageDriver(t)

	bridge := prefix + "0"
	hostsMust(t, "ip", "link", "add", bridge, "type", "bridge")
	hostsMust(t, "ip", "addr", "add", hostsGateway+"/24", "dev", bridge)
	hostsMust(t, "ip", "link", "set", bridge, "up")
	// The root engine sets FORWARD to DROP and bridged traffic goes through
	// iptables (bridge-nf-call-iptables), so let the bridge talk to itself.
	hostsMust(t, "iptables", "-I", "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT")

	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("h%d", i)
		id := prefix + name
		h := &testHost{
			Name:       name,
			IP:         fmt.Sprintf("%s%d", hostsNet, 10+i),
			NetNS:      "/run/netns/" + id,
			DockerHost: "unix://" + filepath.Join(hostsRunDir, id+".sock"),
			id:         id,
			veth:       "v" + id,
			dataRoot:   filepath.Join(hostsLibDir, id),
			execRoot:   filepath.Join(hostsRunDir, id),
			logFile:    filepath.Join(hostsRunDir, id+".log"),
		}
		hosts = append(hosts, h)
		hostsMust(t, "ip", "netns", "add", id)
		hostsMust(t, "ip", "link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "netns", id)
		hostsMust(t, "ip", "link", "set", h.veth, "master", bridge, "up")
		hostsMust(t, "ip", "-n", id, "addr", "add", h.IP+"/24", "dev", "eth0")
		hostsMust(t, "ip", "-n", id, "link", "set", "eth0", "up")
		hostsMust(t, "ip", "-n", id, "link", "set", "lo", "up")
		hostsMust(t, "ip", "-n", id, "route", "add", "default", "via", hostsGateway)
		h.startEngine(t, driver)
	}
	netDone := time.Now()

	// Wait for all engines, then load the image into all, in parallel.
	hostsParallel(t, hosts, func(h *testHost) error { return h.waitEngine() })
	engDone := time.Now()
	img, err := hostsSaveImage(root, testImage)
	if err != nil {
		t.Fatal(err)
	}
	hostsParallel(t, hosts, func(h *testHost) error { return h.loadImage(img, testImage) })
	t.Logf("newHosts(%d) %s: %s (network %s, engines %s, image %s), storage driver %s",
		n, prefix, time.Since(start).Round(time.Millisecond), netDone.Sub(start).Round(time.Millisecond),
		engDone.Sub(netDone).Round(time.Millisecond), time.Since(engDone).Round(time.Millisecond), driver)
	return hosts
}

// Command returns a command running name/args inside the host's network
// namespace, with DOCKER_HOST set to the host's engine, the rest of the
// environment inherited, and env appended.
func (h *testHost) Command(env []string, name string, args ...string) *exec.Cmd {
	return h.withEnv(exec.Command("nsenter", append([]string{"--net=" + h.NetNS, "--", name}, args...)...), env)
}

// CommandContext is Command killed when ctx ends.
func (h *testHost) CommandContext(ctx context.Context, env []string, name string, args ...string) *exec.Cmd {
	return h.withEnv(exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + h.NetNS, "--", name}, args...)...), env)
}

func (h *testHost) withEnv(cmd *exec.Cmd, env []string) *exec.Cmd {
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DOCKER_HOST=") && !strings.HasPrefix(kv, "DOCKER_CONTEXT=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "DOCKER_HOST="+h.DockerHost)
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// Cut partitions the host from the others (and from the root namespace):
// the root side of its veth goes down, so packets to and from it are dropped
// without any reset, as with a pulled cable. Its engine still answers on its
// unix socket.
func (h *testHost) Cut(t *testing.T) {
	t.Helper()
	hostsMust(t, "ip", "link", "set", h.veth, "down")
}

// Restore undoes Cut.
func (h *testHost) Restore(t *testing.T) {
	t.Helper()
	hostsMust(t, "ip", "link", "set", h.veth, "up")
}

// DialContext opens a connection from inside the host's network namespace
// (addr should be an IP:port; names would be resolved outside it). Use it to
// reach addresses only a host routes, such as service VIPs or pod IPs.
func (h *testHost) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine, so it cannot
		// carry the namespace anywhere else. The socket keeps its namespace.
		runtime.LockOSThread()
		fd, err := unix.Open(h.NetNS, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: fmt.Errorf("open netns %s: %w", h.NetNS, err)}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("enter netns %s: %w", h.NetNS, err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// HTTPClient returns an HTTP client whose connections start inside the
// host's network namespace.
func (h *testHost) HTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DialContext: h.DialContext, DisableKeepAlives: true}}
}

func (h *testHost) startEngine(t *testing.T, driver string) {
	t.Helper()
	cfg := filepath.Join(hostsRunDir, h.id+".json")
	// An own (empty) config file: the machine's /etc/docker/daemon.json may
	// set data-root or a storage driver, which would conflict with the flags.
	if err := os.WriteFile(cfg, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.OpenFile(h.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	// nsenter, not `ip netns exec`: the latter remounts /sys and dockerd then
	// fails with "Devices cgroup isn't mounted".
	cmd := exec.Command("nsenter", "--net="+h.NetNS, "--", "dockerd",
		"--config-file", cfg,
		"--data-root", h.dataRoot,
		"--exec-root", h.execRoot,
		"--pidfile", filepath.Join(hostsRunDir, h.id+".pid"),
		"-H", h.DockerHost,
		"--storage-driver", driver,
		"--cgroup-parent", "/"+h.id,
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = os.Environ()
	// Own process group (a ^C of go test reaches it only through cleanup);
	// SIGTERM when the test process dies (e.g. a -timeout panic skips cleanups).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := hostsStartPinned(cmd); err != nil {
		t.Fatalf("start dockerd %s: %v", h.Name, err)
	}
	h.cmd = cmd
	h.exited = make(chan struct{})
	go func() { _ = cmd.Wait(); close(h.exited) }()
	h.Docker, err = client.NewClientWithOpts(client.WithHost(h.DockerHost), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
}

func (h *testHost) waitEngine() error {
	deadline := time.Now().Add(hostsEngineWait)
	for {
		select {
		case <-h.exited:
			return fmt.Errorf("dockerd %s exited: %v\n%s", h.Name, h.cmd.ProcessState, h.logTail(30))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := h.Docker.Ping(ctx)
		if err == nil {
			h.Docker.NegotiateAPIVersion(ctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dockerd %s does not answer within %s: %v\n%s", h.Name, hostsEngineWait, err, h.logTail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (h *testHost) logTail(n int) string {
	b, err := os.ReadFile(h.logFile)
	if err != nil {
		return err.Error()
	}
	return lastLines(string(b), n)
}

// hostsSaveImage returns `docker save ref` of the engine behind cli.
func hostsSaveImage(cli *client.Client, ref string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rc, err := cli.ImageSave(ctx, []string{ref})
	if err != nil {
		return nil, fmt.Errorf("save image %s: %w", ref, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("save image %s: %w", ref, err)
	}
	return b, nil
}

func (h *testHost) loadImage(tarball []byte, ref string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := h.Docker.ImageLoad(ctx, bytes.NewReader(tarball), client.ImageLoadWithQuiet(true))
	if err != nil {
		return fmt.Errorf("load image into %s: %w", h.Name, err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var msg struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return fmt.Errorf("load image into %s: read output: %w", h.Name, err)
		}
		if msg.Error != "" {
			return fmt.Errorf("load image into %s: %s", h.Name, msg.Error)
		}
	}
	if _, err := h.Docker.ImageInspect(ctx, ref); err != nil {
		return fmt.Errorf("load image into %s: %w", h.Name, err)
	}
	return nil
}

// hostsParallel runs f for every host at once and fails the test with all
// errors (t.Fatal must not be called from the goroutines).
func hostsParallel(t *testing.T, hosts []*testHost, f func(*testHost) error) {
	t.Helper()
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = f(h) }()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

var (
	hostsSpawnOnce sync.Once
	hostsSpawnCh   chan hostsSpawnReq
)

type hostsSpawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

// hostsStartPinned starts cmd from one OS thread that lives as long as the
// process: Pdeathsig fires when the *thread* that forked the child exits, and
// Go ends threads (e.g. those of DialContext), so forking from an arbitrary
// thread could kill an engine in the middle of a test.
func hostsStartPinned(cmd *exec.Cmd) error {
	hostsSpawnOnce.Do(func() {
		hostsSpawnCh = make(chan hostsSpawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked
			for r := range hostsSpawnCh {
				r.done <- r.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	hostsSpawnCh <- hostsSpawnReq{cmd, done}
	return <-done
}

// hostsPreflight skips (fails under CI) when this machine cannot host them.
func hostsPreflight(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, bin := range []string{"ip", "iptables", "nsenter", "dockerd"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("multi-host tests need %s", strings.Join(missing, ", "))
	}
	t.Skipf("multi-host tests need %s (set CI to fail instead)", strings.Join(missing, ", "))
}

func hostsNewPrefix(t *testing.T) string {
	t.Helper()
	for {
		var b [2]byte
		if _, err := rand.Read(b[:]); err != nil {
			t.Fatal(err)
		}
		p := "dt" + hex.EncodeToString(b[:])
		if _, err := os.Stat(filepath.Join(hostsRunDir, p+".owner")); err != nil {
			return p
		}
	}
}

// hostsStorageDriver picks the engines' storage driver: overlay2 unless the
// data root is itself on overlayfs (nested overlay mounts fail), then
// fuse-overlayfs or, lacking it, vfs. DEVTEST_STORAGE_DRIVER overrides.
func hostsStorageDriver(t *testing.T) string {
	if d := os.Getenv("DEVTEST_STORAGE_DRIVER"); d != "" {
		return d
	}
	var st unix.Statfs_t
	if err := unix.Statfs(hostsLibDir, &st); err != nil {
		t.Fatalf("statfs %s: %v", hostsLibDir, err)
	}
	if st.Type != unix.OVERLAYFS_SUPER_MAGIC {
		return "overlay2"
	}
	if _, err := exec.LookPath("fuse-overlayfs"); err == nil {
		return "fuse-overlayfs"
	}
	return "vfs"
}

// hostsCheckSubnetFree fails when an interface other than a harness bridge
// holds an address of 10.99.0.0/24 (a live run's bridge included).
func hostsCheckSubnetFree(t *testing.T) {
	t.Helper()
	out, err := exec.Command("ip", "-o", "-4", "addr", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip addr show: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && strings.HasPrefix(f[3], hostsNet) {
			owner := ""
			if m := hostsBridgeRE.FindStringSubmatch(f[1]); m != nil {
				owner = fmt.Sprintf(" (run %s, owner %s)", m[1], hostsOwnerOf(m[1]))
			}
			t.Fatalf("newHosts: %s already holds %s%s; 10.99.0.0/24 is reserved for the test hosts", f[1], f[3], owner)
		}
	}
}

func hostsMust(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func hostsRun(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ---- ownership and leftovers ----

// hostsOwnerID identifies a process across pid reuse: "<pid> <starttime>".
func hostsOwnerID(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state); starttime is field 22
	if len(f) < 20 {
		return ""
	}
	return fmt.Sprintf("%d %s", pid, f[19])
}

// hostsOwnerOf returns the live owner ("<pid> <starttime>") of a run, or "".
func hostsOwnerOf(prefix string) string {
	b, err := os.ReadFile(filepath.Join(hostsRunDir, prefix+".owner"))
	if err != nil {
		return ""
	}
	id := strings.TrimSpace(string(b))
	pid, err := strconv.Atoi(strings.Fields(id + " x")[0])
	if err != nil || id == "" || hostsOwnerID(pid) != id {
		return ""
	}
	return id
}

// hostsRunPrefixes lists the prefixes of every run with some object left on
// this machine, by the naming scheme only.
func hostsRunPrefixes() map[string]bool {
	found := map[string]bool{}
	add := func(re *regexp.Regexp, s string) {
		if m := re.FindStringSubmatch(s); m != nil {
			found[m[1]] = true
		}
	}
	if es, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range es {
			add(hostsNetnsRE, e.Name())
		}
	}
	for _, l := range hostsLinks() {
		add(hostsBridgeRE, l)
		add(hostsVethRE, l)
	}
	for _, d := range []string{hostsRunDir, hostsLibDir} {
		if es, err := os.ReadDir(d); err == nil {
			for _, e := range es {
				add(hostsFileRE, e.Name())
			}
		}
	}
	for _, r := range hostsForwardRules() {
		add(hostsBridgeRE, r.bridge)
	}
	for _, p := range hostsProcs() {
		add(hostsCmdRE, p.cmdline)
		add(hostsCgroupRE, p.cgroup)
	}
	for _, dir := range hostsCgroupDirs("") {
		add(hostsNetnsRE, filepath.Base(dir))
	}
	return found
}

// hostsCleanLeftovers removes the objects of earlier runs whose owner
// process is gone (a crash, a -timeout panic, a failed cleanup).
func hostsCleanLeftovers(t *testing.T) {
	t.Helper()
	for prefix := range hostsRunPrefixes() {
		if owner := hostsOwnerOf(prefix); owner != "" {
			t.Logf("hosts run %s belongs to live process %s; leaving it", prefix, owner)
			continue
		}
		t.Logf("removing leftovers of hosts run %s", prefix)
		for _, err := range hostsRemoveRun(prefix, nil) {
			t.Logf("leftovers %s: %v", prefix, err)
		}
	}
}

// hostsRemoveRun removes every object of run prefix: engines (SIGTERM, then
// SIGKILL after hostsStopTimeout), any process left in its namespaces,
// cgroups or under its exec roots, mounts, namespaces, links, iptables rules,
// and files. hosts are the run's hosts of this process, if any.
func hostsRemoveRun(prefix string, hosts []*testHost) []error {
	if !hostsPrefixRE.MatchString(prefix) {
		return []error{fmt.Errorf("refusing to remove %q: not a harness prefix", prefix)}
	}
	var errs []error
	for _, h := range hosts {
		if h.Docker != nil {
			h.Docker.Close()
		}
	}

	// 1. Engines: SIGTERM all (they stop their containers), SIGKILL stragglers.
	var pids []int
	for _, h := range hosts {
		if h.cmd != nil && h.cmd.Process != nil {
			pids = append(pids, h.cmd.Process.Pid)
		}
	}
	if ms, _ := filepath.Glob(filepath.Join(hostsRunDir, prefix+"h*.pid")); ms != nil {
		for _, m := range ms {
			if b, err := os.ReadFile(m); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
					pids = append(pids, pid)
				}
			}
		}
	}
	for _, p := range hostsProcs() {
		if m := hostsCmdRE.FindStringSubmatch(p.cmdline); m != nil && m[1] == prefix && strings.Contains(p.cmdline, "dockerd") {
			pids = append(pids, p.pid)
		}
	}
	pids = hostsLivePids(pids, prefix)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	if !hostsWaitGone(pids, hostsStopTimeout) {
		for _, pid := range hostsLivePids(pids, prefix) {
			errs = append(errs, fmt.Errorf("dockerd pid %d ignored SIGTERM for %s; killing it", pid, hostsStopTimeout))
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		hostsWaitGone(pids, 5*time.Second)
	}
	for _, h := range hosts {
		if h.exited != nil {
			select {
			case <-h.exited:
			case <-time.After(5 * time.Second):
				errs = append(errs, fmt.Errorf("dockerd %s not reaped", h.Name))
			}
		}
	}

	// 2. Whatever else is left: containerd, shims, containers (cgroup
	// parent), and any process inside the run's namespaces.
	nsIDs := map[[2]uint64]bool{} // device and inode of each of its namespaces
	if ms, _ := filepath.Glob("/run/netns/" + prefix + "h*"); ms != nil {
		for _, m := range ms {
			var st unix.Stat_t
			if hostsNetnsRE.MatchString(filepath.Base(m)) && unix.Stat(m, &st) == nil {
				nsIDs[[2]uint64{st.Dev, st.Ino}] = true
			}
		}
	}
	var rest []int
	for _, p := range hostsProcs() {
		mine := nsIDs[p.netNS]
		if m := hostsCmdRE.FindStringSubmatch(p.cmdline); m != nil && m[1] == prefix {
			mine = true
		}
		if m := hostsCgroupRE.FindStringSubmatch(p.cgroup); m != nil && m[1] == prefix {
			mine = true
		}
		if mine && p.pid != os.Getpid() {
			rest = append(rest, p.pid)
		}
	}
	for _, pid := range rest {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if !hostsWaitGone(rest, 5*time.Second) {
		errs = append(errs, fmt.Errorf("processes %v survive SIGKILL", rest))
	}

	// 3. Cgroups (the engines' --cgroup-parent), deepest first.
	for _, dir := range hostsCgroupDirs(prefix) {
		if err := hostsRmdirTree(dir); err != nil {
			errs = append(errs, err)
		}
	}

	// 4. Mounts under the run's roots (overlay, nsfs of the engines' own netns).
	roots := []string{filepath.Join(hostsRunDir, prefix), filepath.Join(hostsLibDir, prefix)}
	for _, mp := range hostsMounts(roots) {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}

	// 5. Namespaces (their veth peers go with them), links.
	if es, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range es {
			if m := hostsNetnsRE.FindStringSubmatch(e.Name()); m != nil && m[1] == prefix {
				if err := hostsRun("ip", "netns", "del", e.Name()); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	// A veth pair goes with its namespace, but asynchronously: give it a
	// moment before deleting what is left (a veth whose peer is in the root).
	links := func(re *regexp.Regexp) []string {
		var out []string
		for _, l := range hostsLinks() {
			if m := re.FindStringSubmatch(l); m != nil && m[1] == prefix {
				out = append(out, l)
			}
		}
		return out
	}
	for deadline := time.Now().Add(2 * time.Second); len(links(hostsVethRE)) > 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	for _, l := range append(links(hostsVethRE), links(hostsBridgeRE)...) {
		if err := hostsRun("ip", "link", "del", l); err != nil {
			if _, serr := os.Stat("/sys/class/net/" + l); serr == nil {
				errs = append(errs, err)
			}
		}
	}

	// 6. iptables rules.
	for _, r := range hostsForwardRules() {
		if m := hostsBridgeRE.FindStringSubmatch(r.bridge); m != nil && m[1] == prefix {
			if err := hostsRun("iptables", append([]string{"-D", "FORWARD"}, r.spec...)...); err != nil {
				errs = append(errs, err)
			}
		}
	}

	// 7. Files, unless something is still mounted below them.
	if left := hostsMounts(roots); len(left) > 0 {
		errs = append(errs, fmt.Errorf("still mounted, not removing files: %v", left))
	} else {
		for _, d := range []string{hostsRunDir, hostsLibDir} {
			ms, _ := filepath.Glob(filepath.Join(d, prefix+"*"))
			for _, m := range ms {
				if !hostsFileRE.MatchString(filepath.Base(m)) {
					continue
				}
				if err := os.RemoveAll(m); err != nil {
					errs = append(errs, err)
				}
			}
			_ = os.Remove(d) // only when empty
		}
	}
	return errs
}

// hostsLivePids keeps the pids still alive (not zombies) whose command line
// belongs to run prefix or that are engines; a recycled pid is left alone.
func hostsLivePids(pids []int, prefix string) []int {
	var out []int
	seen := map[int]bool{}
	for _, pid := range pids {
		if seen[pid] || pid <= 1 || pid == os.Getpid() {
			continue
		}
		seen[pid] = true
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.Contains(string(b), filepath.Join(hostsRunDir, prefix)) {
			continue
		}
		if hostsAlive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// hostsAlive reports whether pid runs (a zombie counts as gone).
func hostsAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && len(s) > i+2 && s[i+2] != 'Z' && s[i+2] != 'X'
}

func hostsWaitGone(pids []int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		alive := false
		for _, pid := range pids {
			if hostsAlive(pid) {
				alive = true
				break
			}
		}
		if !alive {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type hostsProc struct {
	pid     int
	cmdline string    // NULs as spaces
	cgroup  string    // /proc/<pid>/cgroup, lines joined
	netNS   [2]uint64 // device and inode of its network namespace
}

func hostsProcs() []hostsProc {
	es, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []hostsProc
	for _, e := range es {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		p := hostsProc{pid: pid, cmdline: strings.ReplaceAll(string(cmd), "\x00", " "), cgroup: strings.ReplaceAll(string(cg), "\n", " ")}
		var st unix.Stat_t
		if unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) == nil {
			p.netNS = [2]uint64{st.Dev, st.Ino}
		}
		out = append(out, p)
	}
	return out
}

func hostsLinks() []string {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []string
	for _, i := range ifs {
		out = append(out, i.Name)
	}
	return out
}

type hostsRule struct {
	bridge string
	spec   []string // the rule after "-A FORWARD"
}

// hostsForwardRules lists FORWARD rules of the form -i X -o X -j ACCEPT for
// harness bridges X.
func hostsForwardRules() []hostsRule {
	out, err := exec.Command("iptables", "-S", "FORWARD").Output()
	if err != nil {
		return nil
	}
	var rules []hostsRule
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 8 && f[0] == "-A" && f[1] == "FORWARD" && f[2] == "-i" && f[4] == "-o" && f[3] == f[5] &&
			f[6] == "-j" && f[7] == "ACCEPT" && hostsBridgeRE.MatchString(f[3]) {
			rules = append(rules, hostsRule{bridge: f[3], spec: f[2:]})
		}
	}
	return rules
}

// hostsCgroupDirs lists cgroup directories <hierarchy>/<prefix>hN (any
// harness prefix when prefix is "").
func hostsCgroupDirs(prefix string) []string {
	var out []string
	bases := []string{"/sys/fs/cgroup"}
	if es, err := os.ReadDir("/sys/fs/cgroup"); err == nil {
		for _, e := range es {
			if e.IsDir() {
				bases = append(bases, filepath.Join("/sys/fs/cgroup", e.Name()))
			}
		}
	}
	for _, b := range bases {
		es, err := os.ReadDir(b)
		if err != nil {
			continue
		}
		for _, e := range es {
			if m := hostsNetnsRE.FindStringSubmatch(e.Name()); m != nil && e.IsDir() && (prefix == "" || m[1] == prefix) {
				out = append(out, filepath.Join(b, e.Name()))
			}
		}
	}
	return out
}

// hostsRmdirTree removes an (empty of tasks) cgroup directory tree: cgroupfs
// only allows rmdir, children first.
func hostsRmdirTree(dir string) error {
	es, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	for _, e := range es {
		if e.IsDir() {
			if err := hostsRmdirTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove cgroup %s: %w", dir, err)
	}
	return nil
}

// hostsMounts lists mount points at or below any of the path prefixes roots
// (string prefixes: "/run/devtest/dtab12" matches dtab12h1 and dtab12h1.sock),
// deepest first.
func hostsMounts(roots []string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := hostsUnescape(f[4])
		for _, r := range roots {
			if strings.HasPrefix(mp, r) {
				out = append(out, mp)
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// hostsUnescape decodes the octal escapes (\040) of /proc/self/mountinfo.
func hostsUnescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
