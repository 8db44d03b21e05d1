package docker_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"

	"github.com/devhq/dev/cluster/agent"
	"github.com/devhq/dev/cluster/agent/docker"
	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/test/testimage"
)

const testImage = "devtest/testapp:latest"

// fixture is one test's private pod network, project and secrets dir on the
// real engine; everything it creates is removed when the test ends.
type fixture struct {
	t       *testing.T
	cli     *client.Client
	drv     *docker.Driver
	network string
	bridge  string
	subnet  netip.Prefix
	project string
	secrets string
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) //nolint:errcheck // never fails
	return hex.EncodeToString(b)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	cli := testimage.Docker(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := testimage.Build(ctx, cli, testImage); err != nil {
		t.Fatalf("build test image: %v", err)
	}
	id := randHex(4)
	f := &fixture{
		t:       t,
		cli:     cli,
		network: "devtest-" + id,
		bridge:  "dvt" + id, // 11 chars: within IFNAMSIZ
		project: "devtest" + id,
		secrets: filepath.Join(t.TempDir(), "secrets"),
	}
	f.drv = docker.New(cli, docker.Options{
		Network: f.network, Bridge: f.bridge, Node: "node-a", SecretsDir: f.secrets,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	t.Cleanup(f.cleanup)

	// A free /24 in 10.213.230-254: other runs may hold some of them.
	var err error
	for range 10 {
		f.subnet = netip.MustParsePrefix(fmt.Sprintf("10.213.%d.0/24", 230+mrand.IntN(25)))
		if err = f.drv.EnsureNetwork(ctx, f.subnet.String()); err == nil {
			return f
		}
	}
	t.Fatalf("ensure network: %v", err)
	return nil
}

// cleanup removes the fixture's containers, volumes and network; it runs on
// failure too and reports what it could not remove.
func (f *fixture) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	byProject := filters.NewArgs(filters.Arg("label", api.LabelProject+"="+f.project))
	cs, err := f.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: byProject})
	if err != nil {
		f.t.Errorf("cleanup: list containers: %v", err)
	}
	for _, c := range cs {
		if err := f.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
			f.t.Errorf("cleanup: remove container %s: %v", c.ID, err)
		}
	}
	// Infra containers carry no project label; those of host-network pods
	// are on no network either.
	infras, err := f.cli.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("name", "^/?"+f.project+"-"), filters.Arg("label", docker.LabelInfra))})
	if err != nil {
		f.t.Errorf("cleanup: list infra containers: %v", err)
	}
	for _, c := range infras {
		if err := f.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			f.t.Errorf("cleanup: remove container %s: %v", c.ID, err)
		}
	}
	// Containers attached to the network by a test directly (not via the driver).
	if nw, err := f.cli.NetworkInspect(ctx, f.network, network.InspectOptions{}); err == nil {
		for id := range nw.Containers {
			f.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true}) //nolint:errcheck // best effort
		}
	}
	vs, err := f.cli.VolumeList(ctx, volume.ListOptions{Filters: byProject})
	if err != nil {
		f.t.Errorf("cleanup: list volumes: %v", err)
	}
	for _, v := range vs.Volumes {
		if err := f.cli.VolumeRemove(ctx, v.Name, true); err != nil && !cerrdefs.IsNotFound(err) {
			f.t.Errorf("cleanup: remove volume %s: %v", v.Name, err)
		}
	}
	if err := f.cli.NetworkRemove(ctx, f.network); err != nil && !cerrdefs.IsNotFound(err) {
		f.t.Errorf("cleanup: remove network %s: %v", f.network, err)
	}
}

func (f *fixture) pod(service string, index int) *api.Pod {
	return &api.Pod{
		Name:     api.PodName(f.project, service, index),
		Project:  f.project,
		Service:  service,
		Index:    index,
		Labels:   map[string]string{"tier": "test"},
		SpecHash: "hash-" + service,
	}
}

func (f *fixture) spec(service string) *api.ServiceSpec {
	return &api.ServiceSpec{Project: f.project, Name: service, Image: testImage}
}

// run creates and starts pod from spec and waits until it runs.
func (f *fixture) run(ctx context.Context, pod *api.Pod, spec *api.ServiceSpec) agent.Container {
	f.t.Helper()
	id, err := f.drv.Create(ctx, pod, spec)
	if err != nil {
		f.t.Fatalf("Create: %v", err)
	}
	if err := f.drv.Start(ctx, id); err != nil {
		f.t.Fatalf("Start: %v", err)
	}
	return f.waitState(ctx, id, func(c agent.Container) error {
		if c.State != "running" || c.IP == "" {
			return fmt.Errorf("state %s, ip %q", c.State, c.IP)
		}
		return nil
	})
}

// waitState polls Inspect until ok accepts the container.
func (f *fixture) waitState(ctx context.Context, id string, ok func(agent.Container) error) agent.Container {
	f.t.Helper()
	var c agent.Container
	eventually(f.t, ctx, 30*time.Second, func() error {
		var err error
		c, err = f.drv.Inspect(ctx, id)
		if err != nil {
			return err
		}
		return ok(c)
	})
	return c
}

// eventually retries fn every 50ms until it returns nil or timeout passes.
func eventually(t *testing.T, ctx context.Context, timeout time.Duration, fn func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := fn()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("condition not met within %s: %v", timeout, err)
		case <-tick.C:
		}
	}
}

// waitLog polls the container's logs until they contain want.
func (f *fixture) waitLog(ctx context.Context, id, want string) {
	f.t.Helper()
	f.waitLogN(ctx, id, want, 1)
}

// waitLogN waits until the container's logs hold want n times (a process
// started n times has said it n times).
func (f *fixture) waitLogN(ctx context.Context, id, want string, n int) {
	f.t.Helper()
	eventually(f.t, ctx, 15*time.Second, func() error {
		rc, err := f.drv.Logs(ctx, id, false, -1)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			return err
		}
		if got := strings.Count(string(b), want); got < n {
			return fmt.Errorf("logs %q hold %q %d times, want %d", b, want, got, n)
		}
		return nil
	})
}

var httpClient = &http.Client{Timeout: 3 * time.Second}

func get(url string) (int, string, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// httpGet GETs path on the pod at ip, retrying until it answers 200.
func httpGet(t *testing.T, ctx context.Context, ip, path string) string {
	t.Helper()
	var body string
	eventually(t, ctx, 15*time.Second, func() error {
		code, b, err := get("http://" + net.JoinHostPort(ip, "8080") + path)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("GET %s: status %d: %s", path, code, b)
		}
		body = b
		return nil
	})
	return body
}

func dur(d time.Duration) *api.Duration { v := api.Duration(d); return &v }

func TestEnsureNetwork(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	before, err := f.cli.NetworkInspect(ctx, f.network, network.InspectOptions{})
	if err != nil {
		t.Fatalf("inspect network: %v", err)
	}
	if err := f.drv.EnsureNetwork(ctx, f.subnet.String()); err != nil {
		t.Fatalf("EnsureNetwork again: %v", err)
	}
	nw, err := f.cli.NetworkInspect(ctx, f.network, network.InspectOptions{})
	if err != nil {
		t.Fatalf("inspect network: %v", err)
	}
	if nw.ID != before.ID {
		t.Errorf("EnsureNetwork recreated an up-to-date network: %s -> %s", before.ID, nw.ID)
	}
	gw := f.subnet.Addr().Next().String()
	if len(nw.IPAM.Config) != 1 || nw.IPAM.Config[0].Subnet != f.subnet.String() || nw.IPAM.Config[0].Gateway != gw {
		t.Errorf("IPAM config = %+v, want subnet %s gateway %s", nw.IPAM.Config, f.subnet, gw)
	}
	if got := nw.Options["com.docker.network.bridge.name"]; got != f.bridge {
		t.Errorf("bridge name option = %q, want %q", got, f.bridge)
	}
	if nw.Labels[api.LabelManaged] != "true" {
		t.Errorf("labels = %v, want %s=true", nw.Labels, api.LabelManaged)
	}
	ifc, err := net.InterfaceByName(f.bridge)
	if err != nil {
		t.Fatalf("bridge device %s: %v", f.bridge, err)
	}
	addrs, _ := ifc.Addrs()
	if !strings.Contains(fmt.Sprint(addrs), gw) {
		t.Errorf("bridge %s addresses %v, want gateway %s", f.bridge, addrs, gw)
	}

	// Another subnet while nothing is attached: recreated.
	other := netip.MustParsePrefix(fmt.Sprintf("10.213.%d.0/24", f.subnet.Addr().As4()[2]^1))
	if err := f.drv.EnsureNetwork(ctx, other.String()); err != nil {
		t.Fatalf("EnsureNetwork(%s): %v", other, err)
	}
	nw, err = f.cli.NetworkInspect(ctx, f.network, network.InspectOptions{})
	if err != nil {
		t.Fatalf("inspect network: %v", err)
	}
	if nw.IPAM.Config[0].Subnet != other.String() {
		t.Errorf("subnet after change = %s, want %s", nw.IPAM.Config[0].Subnet, other)
	}

	// With a container attached, changing the subnet is refused.
	f.run(ctx, f.pod("net", 1), f.spec("net"))
	err = f.drv.EnsureNetwork(ctx, f.subnet.String())
	if err == nil || !strings.Contains(err.Error(), "attached") {
		t.Errorf("EnsureNetwork with attached container = %v, want an error about attached containers", err)
	}
	if err := f.drv.EnsureNetwork(ctx, other.String()); err != nil {
		t.Errorf("EnsureNetwork(same subnet) with attached container: %v", err)
	}
	if err := f.drv.EnsureNetwork(ctx, "not-a-cidr"); err == nil {
		t.Error("EnsureNetwork(not-a-cidr) succeeded")
	}
}

func TestPod(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	bindDir := filepath.Join(t.TempDir(), "missing", "data") // created by Create
	pod := f.pod("web", 1)
	spec := f.spec("web")
	spec.Environment = map[string]string{"FOO": "bar", "GREETING": "hi there"}
	spec.Labels = map[string]string{"com.example": "yes", "tier": "overridden-by-pod"}
	spec.Secrets = []api.SecretMount{
		{Name: "x", Content: []byte("s3cret")},
		{Name: "y", Target: "/etc/y.conf", Content: []byte("why"), Mode: 0o400},
	}
	spec.Configs = []api.SecretMount{ // a config may share a secret's name
		{Name: "x", Content: []byte("config x")},
		{Name: "app", Target: "/etc/app.yaml", Content: []byte("port: 80")},
	}
	spec.Volumes = []api.VolumeMount{
		{Type: api.MountVolume, Source: "data", Target: "/data"},
		{Type: api.MountVolume, Target: "/anon"},
		{Type: api.MountBind, Source: bindDir, Target: "/bind", ReadOnly: true},
		{Type: api.MountTmpfs, Target: "/scratch"},
	}
	spec.Ports = []api.PortSpec{{Target: 8080, Published: 18080, Protocol: "tcp"}}
	spec.Expose = []string{"9000-9001/udp"}
	spec.StopGracePeriod = dur(1500 * time.Millisecond)

	c := f.run(ctx, pod, spec)
	if !c.Running() || c.Name != pod.Name || c.Pod != pod.Name || c.Project != f.project || c.SpecHash != pod.SpecHash {
		t.Errorf("Inspect = %+v, want running pod %s of %s with spec %s", c, pod.Name, f.project, pod.SpecHash)
	}
	if ip, err := netip.ParseAddr(c.IP); err != nil || !f.subnet.Contains(ip) {
		t.Errorf("IP %q not in %s", c.IP, f.subnet)
	}
	if c.StartedAt.IsZero() || !c.FinishedAt.IsZero() {
		t.Errorf("StartedAt %v FinishedAt %v, want started and not finished", c.StartedAt, c.FinishedAt)
	}
	for k, want := range map[string]string{
		"com.example": "yes", "tier": "test", api.LabelManaged: "true", api.LabelPod: pod.Name,
		api.LabelProject: f.project, api.LabelService: "web", api.LabelNode: "node-a", api.LabelSpec: pod.SpecHash,
	} {
		if c.Labels[k] != want {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], want)
		}
	}

	// The raw container: no published ports, no restart policy, stop timeout.
	raw, err := f.cli.ContainerInspect(ctx, c.ID)
	if err != nil {
		t.Fatalf("ContainerInspect: %v", err)
	}
	if len(raw.HostConfig.PortBindings) != 0 || raw.HostConfig.RestartPolicy.Name != "" && raw.HostConfig.RestartPolicy.Name != "no" {
		t.Errorf("port bindings %v, restart policy %q: want none", raw.HostConfig.PortBindings, raw.HostConfig.RestartPolicy.Name)
	}
	// The pod's network is its infra container's: the app container joins
	// its network and IPC namespaces; ports are exposed there.
	infra, err := f.cli.ContainerInspect(ctx, docker.InfraName(pod.Name))
	if err != nil {
		t.Fatalf("the pod's infra container: %v", err)
	}
	if !infra.State.Running || infra.Config.Labels[docker.LabelInfra] != "true" || infra.Config.Labels[api.LabelPod] != pod.Name ||
		infra.Config.Labels[api.LabelProject] != "" || infra.Config.Labels["com.example"] != "" {
		t.Errorf("infra container: running %v, labels %v; want running, labelled infra of %s and nothing of the service's", infra.State.Running, infra.Config.Labels, pod.Name)
	}
	if got, want := string(raw.HostConfig.NetworkMode), "container:"+infra.ID; got != want {
		t.Errorf("network mode %q, want %q", got, want)
	}
	if got, want := string(raw.HostConfig.IpcMode), "container:"+infra.ID; got != want {
		t.Errorf("ipc mode %q, want %q", got, want)
	}
	if ep := infra.NetworkSettings.Networks[f.network]; ep == nil || ep.IPAddress != c.IP {
		t.Errorf("the pod's IP %s is not the infra container's (%+v)", c.IP, ep)
	}
	for _, p := range []string{"8080/tcp", "9000/udp", "9001/udp"} {
		if _, ok := infra.Config.ExposedPorts[nat.Port(p)]; !ok {
			t.Errorf("exposed ports of the infra container %v lack %s", infra.Config.ExposedPorts, p)
		}
	}
	if raw.Config.StopTimeout == nil || *raw.Config.StopTimeout != 2 {
		t.Errorf("stop timeout = %v, want 2", raw.Config.StopTimeout)
	}
	if raw.Config.Hostname != pod.Name {
		t.Errorf("hostname = %q, want %q", raw.Config.Hostname, pod.Name)
	}

	if body := httpGet(t, ctx, c.IP, "/"); body != "hello from "+pod.Name+"\n" {
		t.Errorf("GET / = %q", body)
	}
	env := httpGet(t, ctx, c.IP, "/env")
	for _, want := range []string{"FOO=bar\n", "GREETING=hi there\n"} {
		if !strings.Contains(env, want) {
			t.Errorf("GET /env lacks %q:\n%s", want, env)
		}
	}
	if body := httpGet(t, ctx, c.IP, "/file?path=/run/secrets/x"); body != "s3cret" {
		t.Errorf("secret x = %q, want s3cret", body)
	}
	if body := httpGet(t, ctx, c.IP, "/file?path=/etc/y.conf"); body != "why" {
		t.Errorf("secret y = %q, want why", body)
	}
	if body := httpGet(t, ctx, c.IP, "/file?path=/x"); body != "config x" {
		t.Errorf("config x at /x = %q, want its content", body)
	}
	if body := httpGet(t, ctx, c.IP, "/file?path=/etc/app.yaml"); body != "port: 80" {
		t.Errorf("config app = %q, want its content", body)
	}
	if fi, err := os.Stat(filepath.Join(f.secrets, pod.Name, "secrets", "x")); err != nil || fi.Mode().Perm() != 0o444 {
		t.Errorf("secret file x: %v, mode %v, want 0444", err, fi)
	}
	if fi, err := os.Stat(filepath.Join(f.secrets, pod.Name, "configs", "app")); err != nil || fi.Mode().Perm() != 0o444 {
		t.Errorf("config file app: %v, mode %v, want 0444", err, fi)
	}
	if fi, err := os.Stat(filepath.Join(f.secrets, pod.Name, "secrets", "y")); err != nil || fi.Mode().Perm() != 0o400 {
		t.Errorf("secret file y: %v, mode %v, want 0400", err, fi)
	}
	if fi, err := os.Stat(bindDir); err != nil || !fi.IsDir() {
		t.Errorf("bind source %s not created: %v", bindDir, err)
	}

	vol, err := f.cli.VolumeInspect(ctx, f.project+"_data")
	if err != nil {
		t.Fatalf("named volume: %v", err)
	}
	for k, want := range map[string]string{api.LabelManaged: "true", api.LabelProject: f.project, "dev.volume": "data"} {
		if vol.Labels[k] != want {
			t.Errorf("volume label %s = %q, want %q", k, vol.Labels[k], want)
		}
	}

	list, err := f.drv.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	found := false
	for _, lc := range list {
		if lc.ID == c.ID {
			found = lc.Pod == pod.Name && lc.IP == c.IP && lc.Running()
		}
		if lc.Labels[api.LabelManaged] != "true" {
			t.Errorf("List returned unmanaged container %s", lc.Name)
		}
	}
	if !found {
		t.Errorf("List lacks running %s with IP %s: %+v", pod.Name, c.IP, list)
	}

	rc, err := f.drv.Logs(ctx, c.ID, false, -1)
	if err != nil {
		t.Fatalf("Logs: %v", err)
	}
	logs, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !strings.Contains(string(logs), "listening on :8080") {
		t.Errorf("Logs = %q, %v; want the listening line", logs, err)
	}

	// Create again replaces the leftover container.
	id2, err := f.drv.Create(ctx, pod, spec)
	if err != nil {
		t.Fatalf("Create over leftover: %v", err)
	}
	if id2 == c.ID {
		t.Fatal("Create over leftover returned the old ID")
	}
	if _, err := f.drv.Inspect(ctx, c.ID); !errors.Is(err, agent.ErrNotFound) {
		t.Errorf("old container still there: %v", err)
	}

	// RemoveVolumes refuses a volume in use, then removes it.
	if err := f.drv.RemoveVolumes(ctx, f.project); err == nil {
		t.Error("RemoveVolumes with the volume in use succeeded")
	}
	if err := f.drv.Remove(ctx, id2); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if err := f.drv.Remove(ctx, id2); err != nil {
		t.Errorf("Remove of a removed container: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.secrets, pod.Name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("secrets dir left after Remove: %v", err)
	}
	if err := f.drv.RemoveVolumes(ctx, f.project); err != nil {
		t.Fatalf("RemoveVolumes: %v", err)
	}
	if _, err := f.cli.VolumeInspect(ctx, f.project+"_data"); !cerrdefs.IsNotFound(err) {
		t.Errorf("volume after RemoveVolumes: %v, want not found", err)
	}
}

// TestPodKeepsItsIP: the app container of a pod can be removed and made
// again, or stopped and started after its infra container was stopped,
// and the pod keeps its address; RemovePod then removes the infra
// container.
func TestPodKeepsItsIP(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	pod, spec := f.pod("web", 1), f.spec("web")
	spec.Hostname = "web-host"
	first := f.run(ctx, pod, spec)
	if body := httpGet(t, ctx, first.IP, "/"); body != "hello from web-host\n" {
		t.Errorf("GET / = %q, want the hostname web-host (the infra container's)", body)
	}
	if err := f.drv.Remove(ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	second := f.run(ctx, pod, spec)
	if second.ID == first.ID || second.IP != first.IP {
		t.Errorf("recreated container %s has IP %s, want a new container with the pod's IP %s", second.ID, second.IP, first.IP)
	}
	// A stopped infra container (a reboot, a docker stop) is started again
	// with the app container.
	if err := f.drv.Stop(ctx, second.ID, "", time.Second); err != nil {
		t.Fatal(err)
	}
	if err := f.cli.ContainerStop(ctx, docker.InfraName(pod.Name), container.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	if c, err := f.drv.Inspect(ctx, second.ID); err != nil || c.InfraState != "exited" || c.IP != "" {
		t.Errorf("with the infra container stopped: %+v, %v; want infra exited, no IP", c, err)
	}
	if err := f.drv.Start(ctx, second.ID); err != nil {
		t.Fatalf("Start with the infra container stopped: %v", err)
	}
	third := f.waitState(ctx, second.ID, func(c agent.Container) error {
		if c.State != "running" || c.InfraState != "running" || c.IP == "" {
			return fmt.Errorf("state %s, infra %s, ip %q", c.State, c.InfraState, c.IP)
		}
		return nil
	})
	if body := httpGet(t, ctx, third.IP, "/"); body != "hello from web-host\n" {
		t.Errorf("GET / after the restart = %q", body)
	}

	if err := f.drv.Remove(ctx, third.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.drv.RemovePod(ctx, pod.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cli.ContainerInspect(ctx, docker.InfraName(pod.Name)); !cerrdefs.IsNotFound(err) {
		t.Errorf("infra container after RemovePod: %v, want gone", err)
	}
	if err := f.drv.RemovePod(ctx, pod.Name); err != nil {
		t.Errorf("RemovePod of a missing infra container: %v, want nil", err)
	}
}

// TestPodNamespaces: with PIDPod the service's container and a sidecar
// share the pod's PID namespace, held by pause (PID 1), and see each
// other's processes; a sidecar without it sees only its own. A
// HostNetwork pod runs in the node's network namespace, with the node's
// address on the pod network (the gateway) as its IP.
func TestPodNamespaces(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	pod, spec := f.pod("web", 1), f.spec("web")
	spec.PID = api.PIDPod
	shared := api.ServiceSpec{Project: f.project, Name: "debug", Image: testImage, PID: api.PIDPod,
		Environment: map[string]string{"PORT": "8081"}}
	own := api.ServiceSpec{Project: f.project, Name: "plain", Image: testImage,
		Environment: map[string]string{"PORT": "8082"}}
	web := f.run(ctx, pod, spec)
	for _, sc := range []api.ServiceSpec{shared, own} {
		id, err := f.drv.CreateSidecar(ctx, pod, &sc)
		if err != nil {
			t.Fatalf("CreateSidecar %s: %v", sc.Name, err)
		}
		if err := f.drv.Start(ctx, id); err != nil {
			t.Fatalf("start sidecar %s: %v", sc.Name, err)
		}
	}
	procs := func(port string) string {
		var body string
		eventually(t, ctx, 15*time.Second, func() (err error) {
			_, body, err = get("http://" + net.JoinHostPort(web.IP, port) + "/procs")
			return err
		})
		return body
	}
	// testapp's process is called app; pause is PID 1 of the shared namespace.
	count := func(s, comm string) int { return strings.Count("\n"+s, " "+comm+"\n") }
	if got := procs("8080"); count(got, "app") != 2 || !strings.HasPrefix(got, "1 pause\n") {
		t.Errorf("web sees:\n%swant pause as PID 1, its own app and the debug sidecar's", got)
	}
	if got := procs("8081"); count(got, "app") != 2 {
		t.Errorf("the debug sidecar (pid: service:web) sees:\n%swant web's app and its own", got)
	}
	if got := procs("8082"); count(got, "app") != 1 || strings.Contains(got, "pause") {
		t.Errorf("the plain sidecar sees:\n%swant only its own app", got)
	}

	// Host network: the node's namespace and address.
	hostPod, hostSpec := f.pod("agent", 1), f.spec("agent")
	hostSpec.HostNetwork = true
	hostSpec.Environment = map[string]string{"PORT": strconv.Itoa(20000 + mrand.IntN(20000))}
	hostSpec.Hostname = "ignored" // a host-network pod has the node's name
	id, err := f.drv.Create(ctx, hostPod, hostSpec)
	if err != nil {
		t.Fatalf("Create with host network: %v", err)
	}
	if err := f.drv.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	c, err := f.drv.Inspect(ctx, id)
	if ip, perr := netip.ParseAddr(c.IP); err != nil || perr != nil || !f.subnet.Contains(ip) {
		t.Fatalf("Inspect of the host-network pod: IP %q, %v; want the node's address on the pod network %s", c.IP, err, f.subnet)
	}
	infra, err := f.cli.ContainerInspect(ctx, docker.InfraName(hostPod.Name))
	if err != nil || !infra.HostConfig.NetworkMode.IsHost() {
		t.Fatalf("infra container of the host-network pod: %v, %v", err, infra.HostConfig)
	}
	// It serves on the node's addresses, as a process of the node would:
	// its address on the pod network and its loopback.
	host, _ := os.Hostname()
	for _, ip := range []string{c.IP, "127.0.0.1"} {
		eventually(t, ctx, 15*time.Second, func() error {
			_, body, err := get("http://" + net.JoinHostPort(ip, hostSpec.Environment["PORT"]) + "/")
			if err != nil || body != "hello from "+host+"\n" {
				return fmt.Errorf("GET / on %s = %q, %v; want the node's hostname %s", ip, body, err, host)
			}
			return nil
		})
	}
}

func TestHealthcheck(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	spec := f.spec("hc")
	spec.Healthcheck = &api.Healthcheck{
		Test:     []string{"CMD", "/app", "health"},
		Interval: dur(200 * time.Millisecond),
		Timeout:  dur(2 * time.Second),
		Retries:  1,
	}
	c := f.run(ctx, f.pod("hc", 1), spec)
	f.waitState(ctx, c.ID, func(c agent.Container) error {
		if c.Health != api.HealthHealthy {
			return fmt.Errorf("health %q", c.Health)
		}
		return nil
	})
	httpGet(t, ctx, c.IP, "/unhealthy")
	f.waitState(ctx, c.ID, func(c agent.Container) error {
		if c.Health != api.HealthUnhealthy {
			return fmt.Errorf("health %q", c.Health)
		}
		return nil
	})

	// Disabled healthcheck: no health at all.
	spec = f.spec("nohc")
	spec.Healthcheck = &api.Healthcheck{Disable: true}
	c = f.run(ctx, f.pod("nohc", 1), spec)
	if c.Health != "" {
		t.Errorf("health with disabled check = %q, want empty", c.Health)
	}
}

func TestStopAndEvents(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	pod := f.pod("stop", 1)
	c := f.run(ctx, pod, f.spec("stop"))
	// Subscribed after the start: what arrives comes from the stop (kill, die, stop).
	evctx, evcancel := context.WithCancel(ctx)
	evs, errs := f.drv.Events(evctx)
	// A Go program signalled before its handler is in place exits with 2:
	// stop once it has said it serves (its handler is set before that).
	f.waitLog(ctx, c.ID, "listening on")
	if err := f.drv.Stop(ctx, c.ID, "", 5*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	c = f.waitState(ctx, c.ID, func(c agent.Container) error {
		if c.State != "exited" {
			return fmt.Errorf("state %s", c.State)
		}
		return nil
	})
	if c.ExitCode != 0 || c.FinishedAt.IsZero() {
		t.Errorf("after SIGTERM: exit code %d, finished %v; want 0 and a time", c.ExitCode, c.FinishedAt)
	}
	if err := f.drv.Stop(ctx, c.ID, "", time.Second); err != nil {
		t.Errorf("Stop of a stopped container: %v", err)
	}

	// Events saw the pod die.
	timeout := time.After(10 * time.Second)
	for seen := false; !seen; {
		select {
		case p, ok := <-evs:
			if !ok {
				t.Fatal("events closed early")
			}
			seen = p == pod.Name
		case err := <-errs:
			t.Fatalf("events: %v", err)
		case <-timeout:
			t.Fatal("no event for the pod")
		}
	}
	evcancel()
	for range evs { // drains and ends: the channel closes
	}
	if err, ok := <-errs; ok {
		t.Errorf("events error after cancel: %v", err)
	}

	// Restart of an exited container, then a custom signal.
	if err := f.drv.Start(ctx, c.ID); err != nil {
		t.Fatalf("Start again: %v", err)
	}
	f.waitState(ctx, c.ID, func(c agent.Container) error {
		if !c.Running() {
			return fmt.Errorf("state %s", c.State)
		}
		return nil
	})
	f.waitLogN(ctx, c.ID, "listening on", 2)
	if err := f.drv.Stop(ctx, c.ID, "SIGINT", 5*time.Second); err != nil {
		t.Fatalf("Stop(SIGINT): %v", err)
	}
	if c, err := f.drv.Inspect(ctx, c.ID); err != nil || c.State != "exited" || c.ExitCode != 0 {
		t.Errorf("after SIGINT: %+v, %v; want exited 0", c, err)
	}

	// A process ignoring the signal is killed after grace.
	for i, sig := range []string{"", "SIGTERM"} {
		spec := f.spec("stubborn")
		spec.Command = []string{"sleep"}
		spec.Environment = map[string]string{"TESTAPP_IGNORE_SIGNALS": "1"}
		c := f.run(ctx, f.pod("stubborn", i), spec)
		f.waitLog(ctx, c.ID, "testapp: sleeping") // signals are ignored from then on
		start := time.Now()
		if err := f.drv.Stop(ctx, c.ID, sig, time.Second); err != nil {
			t.Fatalf("Stop(%q): %v", sig, err)
		}
		c, err := f.drv.Inspect(ctx, c.ID)
		if err != nil || c.State != "exited" || c.ExitCode != 137 {
			t.Errorf("Stop(%q) of a stubborn process: %+v, %v; want exited 137", sig, c, err)
		}
		if d := time.Since(start); d < time.Second || d > 20*time.Second {
			t.Errorf("Stop(%q) took %s, want about the 1s grace", sig, d)
		}
	}

	// Exit codes of processes that end by themselves.
	spec := f.spec("exit")
	spec.Command = []string{"exit", "3"}
	id, err := f.drv.Create(ctx, f.pod("exit", 1), spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := f.drv.Start(ctx, id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	c = f.waitState(ctx, id, func(c agent.Container) error {
		if c.State != "exited" {
			return fmt.Errorf("state %s", c.State)
		}
		return nil
	})
	if c.ExitCode != 3 {
		t.Errorf("exit code = %d, want 3", c.ExitCode)
	}
	rc, err := f.drv.Logs(ctx, id, true, 10)
	if err != nil {
		t.Fatalf("Logs: %v", err)
	}
	logs, _ := io.ReadAll(rc) // follow ends: the container has exited
	rc.Close()
	if !strings.Contains(string(logs), "testapp: exit 3") {
		t.Errorf("Logs = %q", logs)
	}

	// With a TTY the log stream is not multiplexed.
	spec = f.spec("tty")
	spec.Command = []string{"exit", "4"}
	spec.Tty = true
	id, err = f.drv.Create(ctx, f.pod("tty", 1), spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := f.drv.Start(ctx, id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	c = f.waitState(ctx, id, func(c agent.Container) error {
		if c.State != "exited" {
			return fmt.Errorf("state %s", c.State)
		}
		return nil
	})
	if c.ExitCode != 4 {
		t.Errorf("exit code = %d, want 4", c.ExitCode)
	}
	f.waitLog(ctx, id, "testapp: exit 4")
}

func TestErrors(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	spec := f.spec("missing")
	spec.Image = "devtest/no-such-image:" + randHex(4)
	spec.ImageID = "sha256:" + strings.Repeat("0", 64)
	_, err := f.drv.Create(ctx, f.pod("missing", 1), spec)
	if !errors.Is(err, agent.ErrImageNotFound) || !strings.Contains(err.Error(), spec.Image) {
		t.Errorf("Create with a missing image = %v, want ErrImageNotFound naming %s", err, spec.Image)
	}

	unknown := "devtest-unknown-" + randHex(4)
	if _, err := f.drv.Inspect(ctx, unknown); !errors.Is(err, agent.ErrNotFound) {
		t.Errorf("Inspect(unknown) = %v, want ErrNotFound", err)
	}
	if err := f.drv.Start(ctx, unknown); !errors.Is(err, agent.ErrNotFound) {
		t.Errorf("Start(unknown) = %v, want ErrNotFound", err)
	}
	if err := f.drv.Stop(ctx, unknown, "", time.Second); !errors.Is(err, agent.ErrNotFound) {
		t.Errorf("Stop(unknown) = %v, want ErrNotFound", err)
	}
	if err := f.drv.Remove(ctx, unknown); err != nil {
		t.Errorf("Remove(unknown) = %v, want nil", err)
	}
	if _, err := f.drv.Logs(ctx, unknown, false, -1); !errors.Is(err, agent.ErrNotFound) {
		t.Errorf("Logs(unknown) = %v, want ErrNotFound", err)
	}

	// An image ID that is gone falls back to the tag.
	spec = f.spec("fallback")
	spec.ImageID = "sha256:" + strings.Repeat("0", 64)
	f.run(ctx, f.pod("fallback", 1), spec)

	res, err := f.drv.Resources(ctx)
	if err != nil || res.NanoCPUs < 1e9 || res.MemoryBytes <= 0 {
		t.Errorf("Resources = %+v, %v", res, err)
	}
}

// TestForeignContainersAreLeftAlone: a container dev did not make (no dev
// labels) that holds a pod's name, or its infra container's, is never
// removed nor joined: Create fails saying what is in the way, and
// RemovePod leaves it.
func TestForeignContainersAreLeftAlone(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for _, tc := range []struct{ pod, name string }{
		{"web", api.PodName(f.project, "web", 1)},
		{"api", docker.InfraName(api.PodName(f.project, "api", 1))},
	} {
		// Labelled as a sidecar of the pod, without dev.managed: RemovePod
		// lists the pod's sidecars by label and must still leave it.
		pod := f.pod(tc.pod, 1)
		labels := map[string]string{api.LabelProject: f.project, api.LabelPod: pod.Name, docker.LabelSidecar: "side"}
		foreign, err := f.cli.ContainerCreate(ctx, &container.Config{Image: testImage, Labels: labels}, nil, nil, nil, tc.name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.drv.Create(ctx, pod, f.spec(tc.pod)); err == nil || !strings.Contains(err.Error(), "did not make is in the way") {
			t.Errorf("Create over a foreign %s: %v, want refused", tc.name, err)
		}
		if err := f.drv.RemovePod(ctx, pod.Name); err != nil {
			t.Errorf("RemovePod: %v", err)
		}
		if _, err := f.cli.ContainerInspect(ctx, foreign.ID); err != nil {
			t.Errorf("the foreign container %s is gone: %v", tc.name, err)
		}
	}
}
