package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/devhq/dev/test/testimage"
)

// laptopUser is an ordinary account made for a test (useradd), running the
// CLI as itself: no root, no sudo; in the docker group or not.
type laptopUser struct {
	t        *testing.T
	name     string
	uid, gid uint32
	groups   []uint32
	home     string // a folder it owns
	env      []string
}

// newLaptopUser creates the account (removed at cleanup) and a home folder.
func newLaptopUser(t *testing.T, dockerGroup bool) *laptopUser {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("creating a test user needs root")
		}
		t.Skip("creating a test user needs root")
	}
	name := fmt.Sprintf("deve2e%d", os.Getpid()%100000)
	if !dockerGroup {
		name += "n"
	}
	_ = exec.Command("userdel", name).Run() // from an interrupted run
	if out, err := exec.Command("useradd", "--no-create-home", "--shell", "/bin/sh", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("userdel", name).Run() })
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	lu := &laptopUser{t: t, name: name, uid: uint32(uid), gid: uint32(gid)}
	if dockerGroup {
		// The group that may use the Engine is its socket's.
		fi, err := os.Stat("/var/run/docker.sock")
		if err != nil {
			t.Fatalf("the docker group: %v", err)
		}
		lu.groups = []uint32{fi.Sys().(*syscall.Stat_t).Gid}
	}
	home, err := os.MkdirTemp("", "dev-e2e-user")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	if err := os.Chown(home, uid, gid); err != nil {
		t.Fatal(err)
	}
	lu.home = home
	// The default data dir: root's /var/lib/dev, 0700, where root ran dev
	// before (CI's `make example` did), is skipped for the container's socket.
	lu.env = []string{"HOME=" + home, "USER=" + name, "PATH=/usr/local/bin:/usr/bin:/bin"}
	return lu
}

// run runs a program as the user in dir, returning its combined output.
func (u *laptopUser) run(dir string, env []string, prog string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Dir = dir
	cmd.Env = append(slices.Clone(u.env), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: u.groups}}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// readableCopy copies the dev binary to a folder every user may read, with
// the version given (a second build stands for an upgrade).
func readableDev(t *testing.T, dir, version string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	out := filepath.Join(dir, "dev-"+version)
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-X github.com/devhq/dev/cmd/dev/cli.Version="+version, "-o", out, "./cmd/dev")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build dev %s: %v\n%s", version, err, b)
	}
	return out
}

// exampleCopy copies examples/<name> into dir/<name> with its services'
// binaries built (what `make example-bins` does), readable by every user.
func exampleCopy(t *testing.T, dir, name string, services ...string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	dst := filepath.Join(dir, name)
	if out, err := exec.Command("cp", "-r", filepath.Join(root, "examples", name), dst).CombinedOutput(); err != nil {
		t.Fatalf("copy example: %v: %s", err, out)
	}
	for _, svc := range services {
		build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dst, svc, svc), "./examples/"+name+"/"+svc)
		build.Dir = root
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build example %s: %v\n%s", svc, err, b)
		}
	}
	if out, err := exec.Command("chmod", "-R", "a+rX", dir).CombinedOutput(); err != nil {
		t.Fatalf("chmod: %v: %s", err, out)
	}
	return dst
}

// TestNonRootUser is the README's first contact on a laptop: an ordinary
// user in the docker group runs the example with `dev up -d`; the agent
// runs in a container on the Engine; the usual verbs work; the agent's
// container restarts and is upgraded with its pods left running.
func TestNonRootUser(t *testing.T) {
	u := newLaptopUser(t, true)
	dc := testimage.Docker(t)
	dir := sharedTempDir(t, "dev-e2e-nonroot")
	dev := readableDev(t, dir, "e2e-one")
	project := exampleCopy(t, dir, "hello", "web", "backend")

	agentName := "deve2e-agent"
	node := fmt.Sprintf("e2e-nonroot-%d", time.Now().UnixNano()%1e6)
	env := agentEnv(t, agentName, node)
	t.Cleanup(func() { removeAgentContainer(t, dc, agentName, node) })
	devAs := func(bin string, args ...string) string {
		t.Helper()
		out, err := u.run(project, env, bin, args...)
		if err != nil {
			t.Fatalf("dev %s (as %s): %v\n%s", strings.Join(args, " "), u.name, err, out)
		}
		return out
	}

	devAs(dev, "up", "-d", "--build")

	// The agent runs in its container, the way the README says.
	ct, err := dc.ContainerInspect(context.Background(), agentName)
	if err != nil {
		t.Fatalf("the agent's container: %v", err)
	}
	if !ct.State.Running || ct.HostConfig.NetworkMode != "host" || ct.HostConfig.RestartPolicy.Name != container.RestartPolicyUnlessStopped {
		t.Errorf("agent container: running %v, network %s, restart %s; want running, host, unless-stopped",
			ct.State.Running, ct.HostConfig.NetworkMode, ct.HostConfig.RestartPolicy.Name)
	}
	if !slices.ContainsFunc(ct.Mounts, func(m container.MountPoint) bool { return m.Name == agentName+"-data" }) {
		t.Errorf("agent container mounts %+v: want the named volume %s-data", ct.Mounts, agentName)
	}

	// The published port, the verbs a compose user runs.
	wantHello := func() error {
		body, err := httpGet("http://127.0.0.1:8080/")
		if err != nil {
			return err
		}
		if !strings.Contains(body, "Hello from web") || !strings.Contains(body, "backend:") {
			return fmt.Errorf("answer %q", body)
		}
		return nil
	}
	eventually(t, 30*time.Second, "the example answers on localhost:8080", wantHello)
	if rows := runningPods(t, devAs(dev, "ps", "-o", "json")); len(rows) != 3 {
		t.Fatalf("dev ps: %d running pods, want 3", len(rows))
	}
	if out := devAs(dev, "logs", "-p", "hello", "backend"); !strings.Contains(out, "listening on :9090") {
		t.Errorf("dev logs backend: %q, want its start line", out)
	}
	if out := devAs(dev, "exec", "-p", "hello", "web", "/web", "-h"); !strings.Contains(out, "Usage of /web") {
		t.Errorf("dev exec web /web -h: %q, want its usage", out)
	}
	devAs(dev, "scale", "-p", "hello", "web=3")
	if rows := runningPods(t, devAs(dev, "ps", "-o", "json")); len(rows) != 4 {
		t.Fatalf("after dev scale web=3: %d running pods, want 4", len(rows))
	}
	before := podContainers(t, dc, node)

	// The Engine restarts the agent's container: the new agent adopts the
	// pods, whose containers are the same.
	rctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := dc.ContainerRestart(rctx, agentName, container.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	psAs := func(bin string) func() (string, error) {
		return func() (string, error) { return u.run(project, env, bin, "ps", "-o", "json") }
	}
	waitRunning(t, "the restarted agent answers with 4 running pods", psAs(dev), 4, nil)
	if after := podContainers(t, dc, node); !slices.Equal(before, after) {
		t.Errorf("pod containers after the agent's restart %v, want the same as before %v", after, before)
	}

	// An upgrade to another dev binary keeps the data and the pods.
	dev2 := readableDev(t, dir, "e2e-two")
	if out, _ := u.run(project, env, dev2, "up", "-d"); !strings.Contains(out, "the agent runs dev e2e-one and this is dev e2e-two") {
		t.Errorf("dev up with another version: %q, want a note on the agent's version", out)
	}
	// up -d re-applied the file: web is back at 2 replicas.
	waitRunning(t, "web back at 2 replicas", psAs(dev2), 3, nil)
	before = podContainers(t, dc, node)
	if out := devAs(dev2, "agent", "upgrade"); !strings.Contains(out, "e2e-one -> dev e2e-two") {
		t.Errorf("dev agent upgrade: %q", out)
	}
	if out := devAs(dev2, "version"); !strings.Contains(out, "agent:  dev e2e-two") {
		t.Errorf("dev version after the upgrade: %q, want the agent at e2e-two", out)
	}
	waitRunning(t, "the upgraded agent serves the example", psAs(dev2), 3, wantHello)
	if after := podContainers(t, dc, node); !slices.Equal(before, after) {
		t.Errorf("pod containers after the upgrade %v, want the same as before %v", after, before)
	}

	devAs(dev2, "down", "-p", "hello", "-v")
	if left := podContainers(t, dc, node); len(left) != 0 {
		t.Errorf("after dev down: %d pod containers left", len(left))
	}
}

// TestNonRootUserWithoutDocker: a user who may not use Docker gets told the
// command that fixes it, and nothing is started.
func TestNonRootUserWithoutDocker(t *testing.T) {
	u := newLaptopUser(t, false)
	dc := testimage.Docker(t)
	dir := sharedTempDir(t, "dev-e2e-nodocker")
	dev := readableDev(t, dir, "e2e-nodocker")
	project := filepath.Join(dir, "p")
	if err := os.Mkdir(project, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(project, "compose.yaml"), []byte("services:\n  web:\n    image: "+testImage+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	agentName := "deve2e-nodocker-agent"
	t.Cleanup(func() { removeAgentContainer(t, dc, agentName, "none") })
	out, err := u.run(project, []string{"DEV_AGENT_CONTAINER=" + agentName}, dev, "up", "-d")
	if err == nil {
		t.Fatalf("dev up without docker rights succeeded: %s", out)
	}
	want := "usermod -aG docker " + u.name
	if !strings.Contains(out, want) {
		t.Errorf("dev up without docker rights: %q, want the fix %q", out, want)
	}
	if _, err := dc.ContainerInspect(context.Background(), agentName); !client.IsErrNotFound(err) {
		t.Errorf("an agent container exists after the refused dev up (inspect: %v)", err)
	}
}

// sharedTempDir is a temporary folder every user may read.
func sharedTempDir(t *testing.T, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// agentEnv makes the CLI start its agent's container with the e2e pod
// network, free ports and fast timers.
func agentEnv(t *testing.T, agentName, node string) []string {
	return []string{
		"DEV_AGENT_CONTAINER=" + agentName, "DEV_NODE_NAME=" + node,
		"DEV_NETWORK=" + e2eNetwork, "DEV_BRIDGE=" + e2eBridge,
		"DEV_CLUSTER_CIDR=" + e2eCIDR, "DEV_SERVICE_CIDR=" + e2eSvcCIDR,
		"DEV_GOSSIP_PORT=" + port(freeAddr(t)), "DEV_RAFT_PORT=" + port(freeAddr(t)), "DEV_API_PORT=" + port(freeAddr(t)),
		"DEV_DNS_ADDR=" + freeAddr(t), "DEV_DASHBOARD_ADDR=127.0.0.1:0", "DEV_FAST=true",
	}
}

// waitRunning waits until ps (`dev ps -o json`) lists n running pods and
// then also holds.
func waitRunning(t *testing.T, what string, ps func() (string, error), n int, also func() error) {
	t.Helper()
	eventually(t, 60*time.Second, what, func() error {
		out, err := ps()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if got := len(runningPods(t, out)); got != n {
			return fmt.Errorf("%d running pods, want %d", got, n)
		}
		if also != nil {
			return also()
		}
		return nil
	})
}

func runningPods(t *testing.T, psJSON string) []podRow {
	t.Helper()
	var rows []podRow
	if err := json.Unmarshal([]byte(psJSON), &rows); err != nil {
		t.Fatalf("dev ps -o json: %v: %s", err, psJSON)
	}
	var out []podRow
	for _, r := range rows {
		if r.State == "running" {
			out = append(out, r)
		}
	}
	return out
}

// podContainers lists the IDs of the node's pod containers, sorted.
func podContainers(t *testing.T, dc *client.Client, node string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := dc.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "dev.node="+node))})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range cs {
		ids = append(ids, c.ID)
	}
	slices.Sort(ids)
	return ids
}

// removeAgentContainer removes what an agent in a container leaves: the
// container, its images and volume, its socket folder, the pods of its node
// and their volumes, the pod network and the data path's rules.
func removeAgentContainer(t *testing.T, dc *client.Client, name, node string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if t.Failed() {
		if rc, err := dc.ContainerLogs(ctx, name, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: "60"}); err == nil {
			var b bytes.Buffer
			_, _ = stdcopy.StdCopy(&b, &b, rc)
			rc.Close()
			t.Logf("agent container log:\n%s", b.String())
		}
	}
	var images []string
	if ct, err := dc.ContainerInspect(ctx, name); err == nil {
		images = append(images, ct.Image)
	}
	_ = dc.ContainerRemove(ctx, name, container.RemoveOptions{Force: true})
	imgs, _ := dc.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "dev.agent.version"))})
	for _, im := range imgs {
		if v := im.Labels["dev.agent.version"]; strings.HasPrefix(v, "e2e-") {
			images = append(images, im.ID)
		}
	}
	for _, id := range images {
		_, _ = dc.ImageRemove(ctx, id, image.RemoveOptions{Force: true, PruneChildren: true})
	}
	_ = dc.VolumeRemove(ctx, name+"-data", true)
	cs, _ := dc.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "dev.node="+node))})
	for _, c := range cs {
		_ = dc.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
	}
	vols, _ := dc.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "dev.project=hello"))})
	for _, v := range vols.Volumes {
		_ = dc.VolumeRemove(ctx, v.Name, true)
	}
	_ = dc.NetworkRemove(ctx, e2eNetwork)
	removeDataPathRules()
	_ = os.RemoveAll("/run/" + name)
}

// TestRemoteEngine: with DOCKER_HOST naming an Engine that is not on this
// host (here tcp:// to this machine's Engine, through a forwarder), the
// agent runs in a container there and the CLI reaches it through the Engine
// (exec sessions), with no socket or port of its own: up, ps, logs, exec
// (an upgraded stream) and down work.
func TestRemoteEngine(t *testing.T) {
	dc := testimage.Docker(t)
	engine := forwardToDocker(t)
	dir := t.TempDir()
	project := filepath.Join(dir, "remote")
	if err := os.Mkdir(project, 0o755); err != nil {
		t.Fatal(err)
	}
	compose := "services:\n  web:\n    image: " + testImage + "\n    deploy:\n      replicas: 2\n"
	if err := os.WriteFile(filepath.Join(project, "compose.yaml"), []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	agentName := "deve2e-remote"
	node := fmt.Sprintf("e2e-remote-%d", time.Now().UnixNano()%1e6)
	t.Cleanup(func() { removeAgentContainer(t, dc, agentName, node) })
	env := append(os.Environ(), "DOCKER_HOST=tcp://"+engine, "DEV_DATA_DIR="+filepath.Join(dir, "data"))
	env = append(env, agentEnv(t, agentName, node)...)
	devRun := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, devBin, args...)
		cmd.Dir, cmd.Env = project, env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	mustRun := func(args ...string) string {
		t.Helper()
		out, err := devRun(args...)
		if err != nil {
			t.Fatalf("dev %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}

	if out := mustRun("up", "-d"); !strings.Contains(out, "started the dev agent in the container "+agentName) {
		t.Errorf("dev up: %q, want the agent started in its container", out)
	}
	if rows := runningPods(t, mustRun("ps", "-o", "json")); len(rows) != 2 {
		t.Fatalf("dev ps: %d running pods, want 2", len(rows))
	}
	if out := mustRun("version"); !strings.Contains(out, "at docker-exec://"+agentName) {
		t.Errorf("dev version: %q, want the agent reached through the Engine", out)
	}
	eventually(t, 30*time.Second, "dev logs web shows the pods' start", func() error {
		out, err := devRun("logs", "web")
		if err != nil || !strings.Contains(out, "listening on") {
			return fmt.Errorf("%v: %q", err, out)
		}
		return nil
	})
	out, err := devRun("exec", "web", "/app", "exit", "3")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Errorf("dev exec web /app exit 3: %v (%q), want exit code 3", err, out)
	}
	mustRun("down")
	if left := podContainers(t, dc, node); len(left) != 0 {
		t.Errorf("after dev down: %d pod containers left", len(left))
	}
}

// forwardToDocker serves this machine's Docker Engine on a loopback TCP
// address, so that a client with DOCKER_HOST=tcp://... sees an Engine that
// is not on its host.
func forwardToDocker(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	closed := false
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		closed = true
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d, err := net.Dial("unix", "/var/run/docker.sock")
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				c.Close()
				d.Close()
				return
			}
			conns = append(conns, c, d)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(d, c); closeWrite(d) }()
			go func() { defer wg.Done(); _, _ = io.Copy(c, d); closeWrite(c) }()
		}
	}()
	return ln.Addr().String()
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// TestJoinAsContainer: `dev join` with the agent in a container on another
// host's Engine (--agent=container, as an ordinary user would get): the
// node joins, takes a pod, and `dev leave` drains it and removes its
// container, which the Engine must not start again.
func TestJoinAsContainer(t *testing.T) {
	hosts := newHosts(t, 2)
	first := newMultiCluster(t, hosts[:1], nil)[0]
	h2 := hosts[1]
	agentName := "deve2e-join-" + h2.id
	t.Cleanup(func() { removeAgentContainer(t, h2.Docker, agentName, "h2") })
	env := []string{"DEV_DATA_DIR=" + filepath.Join(t.TempDir(), "data"), "DEV_AGENT_CONTAINER=" + agentName}
	devOnH2 := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		out, err := h2.CommandContext(ctx, env, devBin, args...).CombinedOutput()
		return string(out), err
	}

	token := strings.TrimSpace(first.mustDev(t, "token"))
	out, err := devOnH2(append([]string{"join", hosts[0].IP, "--token", token, "--agent=container"}, agentArgs(h2, "h2")...)...)
	if err != nil || !strings.Contains(out, "started the dev agent in the container "+agentName) {
		t.Fatalf("dev join --agent=container on h2: %v\n%s", err, out)
	}
	eventually(t, 60*time.Second, "h2 ready in the cluster", func() error {
		if n, ok := first.nodes(t)["h2"]; !ok || n.Status != "ready" {
			return fmt.Errorf("nodes %v", first.nodes(t))
		}
		return nil
	})

	compose := writeTemp(t, "name: e2ejoinct\nservices:\n  web:\n    image: "+testImage+"\n    deploy:\n      replicas: 2\n")
	first.mustDev(t, "up", "-d", "-f", compose)
	eventually(t, 60*time.Second, "a web pod runs on h2", func() error {
		if got := runningOn(t, hosts, "e2ejoinct", "web"); got["h2"] != 1 {
			return fmt.Errorf("running %v", got)
		}
		return nil
	})

	out, err = devOnH2("leave")
	if err != nil || !strings.Contains(out, "removed the agent's container "+agentName) {
		t.Fatalf("dev leave on h2: %v\n%s", err, out)
	}
	if _, err := h2.Docker.ContainerInspect(context.Background(), agentName); !client.IsErrNotFound(err) {
		t.Errorf("the agent's container after dev leave: %v, want it removed", err)
	}
	eventually(t, 60*time.Second, "web back at 2 pods, on h1", func() error {
		if got := runningOn(t, hosts, "e2ejoinct", "web"); got["h1"] != 2 || got["h2"] != 0 {
			return fmt.Errorf("running %v", got)
		}
		return nil
	})
	first.mustDev(t, "down", "-p", "e2ejoinct")
}
