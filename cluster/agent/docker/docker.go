// Package docker is the node agent's container driver on a local Docker Engine
// (docker/docker/client): pod network, containers, volumes, secrets, events.
package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/strslice"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"

	"github.com/devhq/dev/cluster/agent"
	"github.com/devhq/dev/cluster/api"
)

// Defaults of Options.
const (
	DefaultNetwork = "dev"
	DefaultBridge  = "dev0"
)

// Labels and options dev sets on Docker objects besides the api.Label* ones.
const (
	// LabelVolume carries the compose name of a named volume.
	LabelVolume = "dev.volume"
	// bridgeNameOption names the Linux bridge device of a bridge network.
	bridgeNameOption = "com.docker.network.bridge.name"
	mtuOption        = "com.docker.network.driver.mtu"
	// secretsTarget is where secrets without an absolute target are mounted.
	secretsTarget = "/run/secrets"
)

var _ agent.Driver = (*Driver)(nil)

// Options configure a Driver.
type Options struct {
	// Network is the Docker network pods attach to (default "dev").
	Network string
	// Bridge is the Linux bridge device of that network (default "dev0",
	// at most 15 characters).
	Bridge string
	// MTU of the pod network; 0 leaves the engine default. A VXLAN overlay
	// needs 50 bytes less than the host interface.
	MTU int
	// Node is this node's name, put in label dev.node of every container.
	Node string
	// SecretsDir is where secret files are written, one directory per pod
	// (default: <tmp>/dev-secrets).
	SecretsDir string
	// SecretsTmpfs mounts a tmpfs at SecretsDir when it is not on one, so
	// that secret and config files stay off the disk; a refused mount
	// (no right to mount) leaves them on disk, with a warning. The tmpfs is
	// unmounted once no container has files left in it.
	SecretsTmpfs bool
	// Cluster, when set, is put in label dev.cluster of every container.
	Cluster string
	// DNSDomain, when set, makes containers use the cluster DNS server on the
	// pod network's gateway, with "<project>.<DNSDomain>" as search domain.
	DNSDomain string
	// Binary is the dev binary, which the infra containers run on
	// architectures without a built-in pause program (infra.go).
	Binary string
	// MaxImageBytes caps an image archive from a peer (default
	// DefaultMaxImageBytes).
	MaxImageBytes int64
	// SpoolDir holds an image archive from a peer while it is checked
	// (default: the system's temporary folder; the agent's container, FROM
	// scratch, has none, so the node passes one under its data dir).
	SpoolDir string
	// HostRoot is where the host's root file system is seen from this
	// process: "" when the agent runs on the host, "/host" in the agent's
	// container, which binds the host's root there. Bind mount
	// sources are host paths, created there when missing.
	HostRoot string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Driver implements agent.Driver on a Docker Engine.
type Driver struct {
	cli     *client.Client
	opts    Options
	log     *slog.Logger
	gateway atomic.Value // netip.Addr of the pod network, set by EnsureNetwork
	pause   pauseImage   // the infra containers' image, once built (infra.go)
	// memBytes is the Engine's memory, read once for the pods' memory
	// limits (stats.go).
	memBytes atomic.Uint64

	// secretsMu serialises the writing and removal of secret files, and
	// the mount and unmount of their tmpfs, across pods.
	secretsMu    sync.Mutex
	fs           secretsFS // the kernel's side of the tmpfs (secretsfs_linux.go)
	tmpfsRefused bool      // a mount was refused: files stay on disk, said once
}

// secretsFS is what the driver asks of the kernel to keep secret files on
// a tmpfs; hostSecretsFS implements it (secretsfs_linux.go,
// secretsfs_other.go), tests put a fake.
type secretsFS interface {
	// onTmpfs reports whether dir lies on a tmpfs, its own or a parent's.
	onTmpfs(dir string) (bool, error)
	// isTmpfsMountPoint reports whether dir itself is a tmpfs's mount point.
	isTmpfsMountPoint(dir string) (bool, error)
	// mount mounts a tmpfs for secret files at dir.
	mount(dir string) error
	// unmount unmounts the file system at dir.
	unmount(dir string) error
}

var _ secretsFS = hostSecretsFS{}

// NewClient returns a Docker client for the engine Docker's own conventions
// name (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH), negotiating the API
// version with it.
func NewClient() (*client.Client, error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("create docker client: %w", err)
	}
	return cli, nil
}

// New returns a driver on cli. It starts nothing and makes no request.
func New(cli *client.Client, opts Options) *Driver {
	if opts.Network == "" {
		opts.Network = DefaultNetwork
	}
	if opts.Bridge == "" {
		opts.Bridge = DefaultBridge
	}
	if opts.SecretsDir == "" {
		opts.SecretsDir = filepath.Join(os.TempDir(), "dev-secrets")
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Driver{cli: cli, opts: opts, log: log.With("component", "docker"), fs: hostSecretsFS{}}
}

// Network returns the name of the Docker network pods attach to.
func (d *Driver) Network() string { return d.opts.Network }

// notFoundError marks a Docker not-found error as agent.ErrNotFound while
// keeping Docker's message and classification.
type notFoundError struct{ err error }

func (e notFoundError) Error() string        { return e.err.Error() }
func (e notFoundError) Unwrap() error        { return e.err }
func (e notFoundError) Is(target error) bool { return target == agent.ErrNotFound }

// classify wraps Docker not-found errors so errors.Is(err, agent.ErrNotFound)
// holds.
func classify(err error) error {
	if err != nil && cerrdefs.IsNotFound(err) {
		return notFoundError{err}
	}
	return err
}

// EnsureNetwork makes the bridge network Options.Network own subnet, with the
// subnet's first address as gateway on bridge device Options.Bridge. An
// existing network with another subnet (or bridge) is recreated when no
// container is attached to it, and is an error otherwise.
func (d *Driver) EnsureNetwork(ctx context.Context, subnet string) error {
	prefix, err := netip.ParsePrefix(subnet)
	if err != nil {
		return fmt.Errorf("ensure network %s: parse subnet: %w", d.opts.Network, err)
	}
	prefix = prefix.Masked()
	gateway := prefix.Addr().Next()
	if !prefix.Contains(gateway) {
		return fmt.Errorf("ensure network %s: subnet %s has no host address", d.opts.Network, prefix)
	}

	d.gateway.Store(gateway)
	nw, err := d.cli.NetworkInspect(ctx, d.opts.Network, network.InspectOptions{})
	switch {
	case err == nil && nw.Name == d.opts.Network:
		if d.networkMatches(nw, prefix, gateway) {
			return nil
		}
		if len(nw.Containers) > 0 {
			return fmt.Errorf("ensure network %s: it exists with subnet %s and %d attached containers, want subnet %s: "+
				"remove those containers (dev down) or the network (docker network rm %s) and retry",
				d.opts.Network, networkSubnets(nw), len(nw.Containers), prefix, d.opts.Network)
		}
		d.log.Info("recreating pod network", "network", d.opts.Network, "old", networkSubnets(nw), "new", prefix.String())
		if err := d.cli.NetworkRemove(ctx, nw.ID); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("remove network %s: %w", d.opts.Network, err)
		}
	case err == nil || cerrdefs.IsNotFound(err):
		// Missing (a name-prefix match on another network does not count).
	default:
		return fmt.Errorf("inspect network %s: %w", d.opts.Network, err)
	}

	options := map[string]string{bridgeNameOption: d.opts.Bridge}
	if d.opts.MTU > 0 {
		options[mtuOption] = strconv.Itoa(d.opts.MTU)
	}
	_, err = d.cli.NetworkCreate(ctx, d.opts.Network, network.CreateOptions{
		Driver: "bridge",
		IPAM: &network.IPAM{
			Driver: "default",
			Config: []network.IPAMConfig{{Subnet: prefix.String(), Gateway: gateway.String()}},
		},
		Options: options,
		Labels:  map[string]string{api.LabelManaged: "true"},
	})
	if err != nil {
		if cerrdefs.IsConflict(err) {
			// Created concurrently: accept it if it is what we want.
			if nw, ierr := d.cli.NetworkInspect(ctx, d.opts.Network, network.InspectOptions{}); ierr == nil && d.networkMatches(nw, prefix, gateway) {
				return nil
			}
		}
		return fmt.Errorf("create network %s (subnet %s, bridge %s): %w", d.opts.Network, prefix, d.opts.Bridge, err)
	}
	d.log.Info("created pod network", "network", d.opts.Network, "subnet", prefix.String(), "bridge", d.opts.Bridge)
	return nil
}

func (d *Driver) networkMatches(nw network.Inspect, prefix netip.Prefix, gateway netip.Addr) bool {
	if nw.Driver != "bridge" || nw.Options[bridgeNameOption] != d.opts.Bridge || len(nw.IPAM.Config) != 1 {
		return false
	}
	if d.opts.MTU > 0 && nw.Options[mtuOption] != strconv.Itoa(d.opts.MTU) {
		return false
	}
	c := nw.IPAM.Config[0]
	got, err := netip.ParsePrefix(c.Subnet)
	if err != nil || got.Masked() != prefix {
		return false
	}
	return c.Gateway == "" || c.Gateway == gateway.String()
}

func networkSubnets(nw network.Inspect) string {
	var s []string
	for _, c := range nw.IPAM.Config {
		s = append(s, c.Subnet)
	}
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ",")
}

// Create creates the container of pod from spec, replacing any leftover
// container of the same name. Named volumes are created on demand, missing
// bind-mount sources are created as directories (as compose does) and secrets
// are written under Options.SecretsDir and bind-mounted read-only. No ports
// are published and no Docker restart policy is set: the node proxy publishes
// ports and the agent restarts containers.
func (d *Driver) Create(ctx context.Context, pod *api.Pod, spec *api.ServiceSpec) (string, error) {
	return d.create(ctx, pod, spec, pod.Name, true, nil)
}

// CreateSidecar implements agent.Driver: the sidecar's container, named
// api.SidecarContainer, joins the pod's infra container like the app's.
func (d *Driver) CreateSidecar(ctx context.Context, pod *api.Pod, spec *api.ServiceSpec) (string, error) {
	return d.create(ctx, pod, spec, api.SidecarContainer(pod.Name, spec.Name), true, func(cfg *container.Config) {
		cfg.Labels[LabelSidecar] = spec.Name
	})
}

// create is Create with tweak (when not nil) applied to the container's
// config: one-off pods attach their streams (see exec.go). With infra, the
// container joins the pod's infra container (infra.go), made first when
// missing; without, it has its own place on the pod network (a one-off
// pod).
func (d *Driver) create(ctx context.Context, pod *api.Pod, spec *api.ServiceSpec, name string, infra bool, tweak func(*container.Config)) (string, error) {
	infraStarted := func() error { return nil }
	image, err := d.resolveImage(ctx, spec)
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", name, err)
	}
	if err := d.removeLeftover(ctx, name); err != nil {
		return "", fmt.Errorf("create container %s: %w", name, err)
	}

	project := pod.Project
	if project == "" {
		project = spec.Project
	}
	mounts, err := d.mounts(ctx, project, spec.Volumes)
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", name, err)
	}
	secretMounts, err := d.writeSecrets(name, spec)
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", name, err)
	}
	mounts = append(mounts, secretMounts...)

	exposed, err := exposedPorts(spec)
	if err != nil {
		d.removeSecrets(name)
		return "", fmt.Errorf("create container %s: %w", name, err)
	}

	cfg := &container.Config{
		Hostname:     spec.Hostname,
		User:         spec.User,
		Env:          envList(spec.Environment),
		Image:        image,
		WorkingDir:   spec.WorkingDir,
		Labels:       d.withCluster(containerLabels(pod, spec, project, d.opts.Node)),
		ExposedPorts: exposed,
		Tty:          spec.Tty,
		OpenStdin:    spec.StdinOpen,
		StopSignal:   spec.StopSignal,
		Healthcheck:  healthConfig(spec.Healthcheck),
	}
	if cfg.Hostname == "" {
		cfg.Hostname = name
	}
	if spec.Command != nil {
		cfg.Cmd = strslice.StrSlice(spec.Command)
	}
	if spec.Entrypoint != nil {
		cfg.Entrypoint = strslice.StrSlice(spec.Entrypoint)
	}
	if spec.StopGracePeriod != nil {
		secs := int(math.Ceil(time.Duration(*spec.StopGracePeriod).Seconds()))
		cfg.StopTimeout = &secs
	}

	hc := &container.HostConfig{
		NetworkMode: container.NetworkMode(d.opts.Network),
		CapAdd:      spec.CapAdd,
		CapDrop:     spec.CapDrop,
		Sysctls:     spec.Sysctls,
		Init:        spec.Init,
		Mounts:      mounts,
		Resources: container.Resources{
			NanoCPUs:          spec.Resources.Limits.NanoCPUs,
			Memory:            spec.Resources.Limits.MemoryBytes,
			MemoryReservation: spec.Resources.Reservations.MemoryBytes,
		},
	}
	if p := spec.Resources.Limits.Pids; p > 0 {
		hc.Resources.PidsLimit = &p
	}
	nc := &network.NetworkingConfig{
		EndpointsConfig: map[string]*network.EndpointSettings{d.opts.Network: {}},
	}
	if infra {
		// The network's settings are the infra container's: hostname,
		// exposed ports, DNS and net.* sysctls go there (Docker refuses
		// them on a container that joins another's network).
		id, started, err := d.ensureInfra(ctx, pod, spec, project)
		if err != nil {
			d.removeSecrets(name)
			return "", fmt.Errorf("create container %s: %w", name, err)
		}
		infraStarted = started // it starts while the app container is made
		cfg.Hostname, cfg.ExposedPorts = "", nil
		hc.NetworkMode = container.NetworkMode("container:" + id)
		hc.IpcMode = container.IpcMode("container:" + id)
		hc.Sysctls = netSysctls(spec.Sysctls, false)
		nc = nil
		if spec.PID == api.PIDPod {
			hc.PidMode = container.PidMode("container:" + id)
		}
	} else if spec.HostNetwork {
		cfg.Hostname, cfg.ExposedPorts = "", nil
		hc.NetworkMode, nc = network.NetworkHost, nil
	} else {
		d.dns(hc, project)
	}
	if spec.PID == api.PIDHost {
		hc.PidMode = container.PidMode(api.PIDHost)
	}
	if tweak != nil {
		tweak(cfg)
	}

	resp, err := d.cli.ContainerCreate(ctx, cfg, hc, nc, nil, name)
	if serr := infraStarted(); serr != nil {
		d.removeSecrets(name)
		if err == nil {
			_ = d.cli.ContainerRemove(ctx, resp.ID, container.RemoveOptions{Force: true})
		}
		return "", fmt.Errorf("create container %s: %w", name, serr)
	}
	if err != nil {
		d.removeSecrets(name)
		if cerrdefs.IsNotFound(err) {
			// The image went away between the check and the create.
			return "", fmt.Errorf("create container %s: image %s: %w (%w)", name, spec.Image, agent.ErrImageNotFound, err)
		}
		return "", fmt.Errorf("create container %s: %w", name, err)
	}
	for _, w := range resp.Warnings {
		d.log.Warn("docker warning", "pod", name, "warning", w)
	}
	d.log.Debug("created container", "pod", name, "id", resp.ID, "image", image)
	return resp.ID, nil
}

// dns points a container that owns its network namespace at the cluster
// DNS server on the pod network's gateway.
func (d *Driver) dns(hc *container.HostConfig, project string) {
	if gw, ok := d.gateway.Load().(netip.Addr); ok && d.opts.DNSDomain != "" {
		hc.DNS = []string{gw.String()}
		hc.DNSSearch = []string{project + "." + strings.TrimSuffix(d.opts.DNSDomain, ".")}
	}
}

// resolveImage returns spec.ImageID when that image exists locally, else
// spec.Image when it exists, else an error wrapping agent.ErrImageNotFound.
func (d *Driver) resolveImage(ctx context.Context, spec *api.ServiceSpec) (string, error) {
	if spec.ImageID != "" {
		_, err := d.cli.ImageInspect(ctx, spec.ImageID)
		if err == nil {
			return spec.ImageID, nil
		}
		if !cerrdefs.IsNotFound(err) {
			return "", fmt.Errorf("inspect image %s: %w", spec.ImageID, err)
		}
	}
	if spec.Image == "" {
		return "", fmt.Errorf("service %s has no image: %w", spec.Name, agent.ErrImageNotFound)
	}
	if _, err := d.cli.ImageInspect(ctx, spec.Image); err != nil {
		if cerrdefs.IsNotFound(err) {
			return "", fmt.Errorf("image %s is not on this node (build it or `docker load` it here): %w", spec.Image, agent.ErrImageNotFound)
		}
		return "", fmt.Errorf("inspect image %s: %w", spec.Image, err)
	}
	return spec.Image, nil
}

// removeLeftover removes a container named exactly name, if any.
func (d *Driver) removeLeftover(ctx context.Context, name string) error {
	c, err := d.cli.ContainerInspect(ctx, name)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("inspect leftover container: %w", err)
	}
	if strings.TrimPrefix(c.Name, "/") != name {
		return nil // an ID-prefix match, not our name
	}
	if c.Config == nil || !d.mine(c.Config.Labels) {
		return inTheWay(name)
	}
	d.log.Info("removing leftover container", "name", name, "id", c.ID)
	err = d.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove leftover container %s: %w", c.ID, err)
	}
	return nil
}

func containerLabels(pod *api.Pod, spec *api.ServiceSpec, project, node string) map[string]string {
	labels := make(map[string]string, len(spec.Labels)+len(pod.Labels)+6)
	for k, v := range spec.Labels {
		labels[k] = v
	}
	for k, v := range pod.Labels {
		labels[k] = v
	}
	service := pod.Service
	if service == "" {
		service = spec.Name
	}
	labels[api.LabelManaged] = "true"
	labels[api.LabelPod] = pod.Name
	labels[api.LabelProject] = project
	labels[api.LabelService] = service
	labels[api.LabelNode] = node
	labels[api.LabelSpec] = pod.SpecHash
	return labels
}

// mine reports whether a container with these labels is one this
// cluster's dev made, and so one it may remove: labelled managed, and of
// this cluster (a container made before the cluster label existed has
// none).
func (d *Driver) mine(labels map[string]string) bool {
	return labels[api.LabelManaged] == "true" && api.InCluster(labels, d.opts.Cluster)
}

// inTheWay is the error for a container dev did not make that holds a
// name dev needs: never removed, never joined.
func inTheWay(name string) error {
	return fmt.Errorf("a container named %s that this cluster's dev did not make is in the way: remove or rename it (docker rm -f %s)", name, name)
}

// withCluster adds the cluster label when the driver has one.
func (d *Driver) withCluster(labels map[string]string) map[string]string {
	if d.opts.Cluster != "" {
		labels[api.LabelCluster] = d.opts.Cluster
	}
	return labels
}

func envList(env map[string]string) []string {
	if len(env) == 0 {
		return nil
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func healthConfig(h *api.Healthcheck) *container.HealthConfig {
	if h == nil {
		return nil
	}
	if h.Disable {
		return &container.HealthConfig{Test: []string{"NONE"}}
	}
	dur := func(d *api.Duration) time.Duration {
		if d == nil {
			return 0
		}
		return time.Duration(*d)
	}
	return &container.HealthConfig{
		Test:        h.Test,
		Interval:    dur(h.Interval),
		Timeout:     dur(h.Timeout),
		StartPeriod: dur(h.StartPeriod),
		Retries:     h.Retries,
	}
}

// exposedPorts collects the container ports of spec.Ports and spec.Expose
// ("80", "80/udp", "8000-8010/tcp").
func exposedPorts(spec *api.ServiceSpec) (nat.PortSet, error) {
	set := nat.PortSet{}
	for _, p := range spec.Ports {
		proto := p.Proto()
		port, err := nat.NewPort(proto, strconv.Itoa(int(p.Target)))
		if err != nil {
			return nil, fmt.Errorf("parse port %d/%s: %w", p.Target, proto, err)
		}
		set[port] = struct{}{}
	}
	for _, e := range spec.Expose {
		proto, ports := nat.SplitProtoPort(e)
		lo, hi, err := nat.ParsePortRangeToInt(ports)
		if err != nil || lo == 0 {
			return nil, fmt.Errorf("parse expose %q: want PORT[-PORT][/PROTO]", e)
		}
		for p := lo; p <= hi; p++ {
			port, err := nat.NewPort(proto, strconv.Itoa(p))
			if err != nil {
				return nil, fmt.Errorf("parse expose %q: %w", e, err)
			}
			set[port] = struct{}{}
		}
	}
	if len(set) == 0 {
		return nil, nil
	}
	return set, nil
}

// VolumeName is the Docker volume of compose volume name in project.
func VolumeName(project, name string) string { return project + "_" + name }

func (d *Driver) mounts(ctx context.Context, project string, vols []api.VolumeMount) ([]mount.Mount, error) {
	var out []mount.Mount
	for _, v := range vols {
		if v.Target == "" || !path.IsAbs(v.Target) {
			return nil, fmt.Errorf("mount %q: target must be an absolute path", v.Target)
		}
		switch v.Type {
		case api.MountVolume, "":
			m := mount.Mount{Type: mount.TypeVolume, Target: v.Target, ReadOnly: v.ReadOnly}
			if v.Source != "" {
				name, err := d.ensureVolume(ctx, project, v.Source)
				if err != nil {
					return nil, err
				}
				m.Source = name
			}
			out = append(out, m)
		case api.MountBind:
			if !filepath.IsAbs(v.Source) {
				return nil, fmt.Errorf("bind mount %s: source %q must be an absolute host path", v.Target, v.Source)
			}
			onHost := filepath.Join(d.opts.HostRoot, v.Source)
			if _, err := os.Stat(onHost); errors.Is(err, os.ErrNotExist) {
				if err := os.MkdirAll(onHost, 0o755); err != nil {
					return nil, fmt.Errorf("create bind mount source %s: %w", v.Source, err)
				}
			}
			out = append(out, mount.Mount{Type: mount.TypeBind, Source: v.Source, Target: v.Target, ReadOnly: v.ReadOnly})
		case api.MountTmpfs:
			out = append(out, mount.Mount{Type: mount.TypeTmpfs, Target: v.Target, ReadOnly: v.ReadOnly})
		default:
			return nil, fmt.Errorf("mount %s: unsupported type %q (want volume, bind or tmpfs)", v.Target, v.Type)
		}
	}
	return out, nil
}

// ensureVolume creates the Docker volume of a project's named volume unless
// it exists, and returns its name.
func (d *Driver) ensureVolume(ctx context.Context, project, source string) (string, error) {
	name := VolumeName(project, source)
	if _, err := d.cli.VolumeInspect(ctx, name); err == nil {
		return name, nil
	} else if !cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("inspect volume %s: %w", name, err)
	}
	_, err := d.cli.VolumeCreate(ctx, volume.CreateOptions{
		Name:   name,
		Driver: "local",
		Labels: map[string]string{
			api.LabelManaged: "true",
			api.LabelProject: project,
			LabelVolume:      source,
		},
	})
	if err != nil {
		return "", fmt.Errorf("create volume %s: %w", name, err)
	}
	d.log.Info("created volume", "volume", name)
	return name, nil
}

// Start starts a created or exited container.
func (d *Driver) Start(ctx context.Context, id string) error {
	err := d.cli.ContainerStart(ctx, id, container.StartOptions{})
	if err == nil {
		return nil
	}
	// A container in a pod joins its infra container's namespaces, which
	// must run first (after a reboot, or a `docker stop` of the infra): start
	// it, then try again. Asked only on a failure: the common start costs
	// one call.
	if c, ierr := d.cli.ContainerInspect(ctx, id); ierr == nil && c.HostConfig != nil && c.HostConfig.NetworkMode.IsContainer() {
		infra := c.HostConfig.NetworkMode.ConnectedContainer()
		if ic, ierr := d.cli.ContainerInspect(ctx, infra); ierr == nil && ic.State != nil && !ic.State.Running {
			if err := d.cli.ContainerStart(ctx, infra, container.StartOptions{}); err != nil {
				return fmt.Errorf("start container %s: start its pod's infra container: %w", id, classify(err))
			}
			err = d.cli.ContainerStart(ctx, id, container.StartOptions{})
		}
	}
	if err != nil {
		return fmt.Errorf("start container %s: %w", id, classify(err))
	}
	return nil
}

// Stop sends signal (empty: the container's stop signal) and kills the
// container after grace; a negative grace uses the container's own stop
// timeout (from stop_grace_period, else the engine's 10s). Stopping a
// container that is not running is not an error.
func (d *Driver) Stop(ctx context.Context, id string, signal string, grace time.Duration) error {
	var timeout *int
	if grace >= 0 {
		secs := int(math.Ceil(grace.Seconds()))
		timeout = &secs
	}
	if signal == "" {
		if err := d.cli.ContainerStop(ctx, id, container.StopOptions{Timeout: timeout}); err != nil {
			return fmt.Errorf("stop container %s: %w", id, classify(err))
		}
		return nil
	}
	// API 1.41 (Engine 20.10) ignores StopOptions.Signal, so signal, wait
	// and kill by hand.
	c, err := d.cli.ContainerInspect(ctx, id)
	if err != nil {
		return fmt.Errorf("stop container %s: %w", id, classify(err))
	}
	if c.State == nil || !c.State.Running {
		return nil
	}
	if grace < 0 {
		grace = 10 * time.Second
		if c.Config != nil && c.Config.StopTimeout != nil {
			grace = time.Duration(*c.Config.StopTimeout) * time.Second
		}
	}
	waitCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	waitc, errc := d.cli.ContainerWait(waitCtx, c.ID, container.WaitConditionNotRunning)
	if err := d.cli.ContainerKill(ctx, c.ID, signal); err != nil {
		if cerrdefs.IsConflict(err) {
			return nil // no longer running
		}
		return fmt.Errorf("stop container %s: send %s: %w", id, signal, classify(err))
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-waitc:
		return nil
	case err := <-errc:
		if ctx.Err() != nil {
			return fmt.Errorf("stop container %s: %w", id, ctx.Err())
		}
		if cerrdefs.IsNotFound(err) {
			return nil
		}
		// Fall through to a kill, which is idempotent enough.
	case <-timer.C:
	case <-ctx.Done():
		return fmt.Errorf("stop container %s: %w", id, ctx.Err())
	}
	// SIGKILL through stop with a zero timeout: Docker then waits for the exit.
	zero := 0
	if err := d.cli.ContainerStop(ctx, c.ID, container.StopOptions{Timeout: &zero}); err != nil {
		return fmt.Errorf("stop container %s: %w", id, classify(err))
	}
	return nil
}

// Remove force-removes the container, its anonymous volumes and the pod's
// secret files. A missing container is not an error.
func (d *Driver) Remove(ctx context.Context, id string) error {
	name := id // when the container is gone, id may still be its name
	if c, err := d.cli.ContainerInspect(ctx, id); err == nil {
		if c.ContainerJSONBase != nil && c.Name != "" {
			name = strings.TrimPrefix(c.Name, "/")
		}
	} else if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	return d.removeContainer(ctx, id, name)
}

// removeContainer force-removes container id (anonymous volumes too) and
// the secret files kept for it under its name. A missing container is not
// an error.
func (d *Driver) removeContainer(ctx context.Context, id, name string) error {
	err := d.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	d.removeSecrets(name)
	return nil
}

// Inspect returns the container's state; errors.Is(err, agent.ErrNotFound)
// when it does not exist.
func (d *Driver) Inspect(ctx context.Context, id string) (agent.Container, error) {
	c, err := d.cli.ContainerInspect(ctx, id)
	if err != nil {
		return agent.Container{}, fmt.Errorf("inspect container %s: %w", id, classify(err))
	}
	return d.withInfra(ctx, c, d.toContainer(c)), nil
}

// withInfra fills in the pod's address and the state of its infra
// container for a container that joins one.
func (d *Driver) withInfra(ctx context.Context, c container.InspectResponse, out agent.Container) agent.Container {
	if c.HostConfig == nil || !c.HostConfig.NetworkMode.IsContainer() {
		return out
	}
	ic, err := d.cli.ContainerInspect(ctx, c.HostConfig.NetworkMode.ConnectedContainer())
	if err != nil {
		out.InfraState = agent.InfraMissing
		return out
	}
	infra := d.toContainer(ic)
	out.InfraState = infra.State
	if infra.Running() {
		out.IP = infra.IP
	}
	return out
}

func (d *Driver) toContainer(c container.InspectResponse) agent.Container {
	out := agent.Container{}
	if c.ContainerJSONBase != nil {
		out.ID = c.ID
		out.Name = strings.TrimPrefix(c.Name, "/")
		if s := c.State; s != nil {
			out.State = string(s.Status)
			out.ExitCode = s.ExitCode
			out.OOMKilled = s.OOMKilled
			out.Error = s.Error
			out.StartedAt = parseTime(s.StartedAt)
			out.FinishedAt = parseTime(s.FinishedAt)
			if s.Health != nil && s.Health.Status != container.NoHealthcheck {
				out.Health = string(s.Health.Status)
			}
		}
	}
	if c.Config != nil {
		out.Labels = c.Config.Labels
		out.Pod = c.Config.Labels[api.LabelPod]
		out.Project = c.Config.Labels[api.LabelProject]
		out.SpecHash = c.Config.Labels[api.LabelSpec]
	}
	if c.NetworkSettings != nil {
		if ep := c.NetworkSettings.Networks[d.opts.Network]; ep != nil {
			out.IP = ep.IPAddress
		}
	}
	if c.HostConfig != nil && c.HostConfig.NetworkMode.IsHost() {
		// In the node's network: the node's address on the pod network
		// (the gateway) reaches it from every pod, on this node and
		// across the overlay, as a pod IP does.
		if gw, ok := d.gateway.Load().(netip.Addr); ok {
			out.IP = gw.String()
		}
	}
	return out
}

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t
}

func managedFilter() filters.Args {
	return filters.NewArgs(filters.Arg("label", api.LabelManaged+"=true"))
}

// List returns every container labelled dev.managed=true, running or not.
func (d *Driver) List(ctx context.Context) ([]agent.Container, error) {
	sums, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: managedFilter()})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]agent.Container, 0, len(sums))
	for _, s := range sums {
		c, err := d.cli.ContainerInspect(ctx, s.ID)
		if err != nil {
			if cerrdefs.IsNotFound(err) {
				continue // removed meanwhile
			}
			return nil, fmt.Errorf("list containers: inspect %s: %w", s.ID, err)
		}
		out = append(out, d.withInfra(ctx, c, d.toContainer(c)))
	}
	return out, nil
}

// Events streams the pod name (label dev.pod) of each managed container that
// changes. Exec events (one set per healthcheck run) are left out; the
// resulting health_status events are kept. Both channels close when ctx ends;
// an error from the engine is sent once and ends the stream.
func (d *Driver) Events(ctx context.Context) (<-chan string, <-chan error) {
	out := make(chan string, 64)
	errc := make(chan error, 1)
	f := managedFilter()
	f.Add("type", string(events.ContainerEventType))
	msgs, derrs := d.cli.Events(ctx, events.ListOptions{Filters: f})
	go func() {
		defer close(out)
		defer close(errc)
		for {
			select {
			case <-ctx.Done():
				return
			case err, ok := <-derrs:
				if !ok || ctx.Err() != nil {
					return
				}
				if errors.Is(err, io.EOF) {
					err = errors.New("engine closed the stream")
				}
				errc <- fmt.Errorf("watch docker events: %w", err)
				return
			case m := <-msgs:
				if strings.HasPrefix(string(m.Action), "exec_") {
					continue
				}
				pod := m.Actor.Attributes[api.LabelPod]
				if pod == "" {
					continue
				}
				select {
				case out <- pod:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, errc
}

// Logs streams the container's stdout and stderr as one plain stream (Docker
// multiplexes them unless the container has a TTY). tail < 0 means all.
func (d *Driver) Logs(ctx context.Context, id string, follow bool, tail int) (io.ReadCloser, error) {
	c, err := d.cli.ContainerInspect(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("read logs of %s: %w", id, classify(err))
	}
	t := "all"
	if tail >= 0 {
		t = strconv.Itoa(tail)
	}
	rc, err := d.cli.ContainerLogs(ctx, c.ID, container.LogsOptions{
		ShowStdout: true,
		ShowStderr: true,
		Follow:     follow,
		Tail:       t,
	})
	if err != nil {
		return nil, fmt.Errorf("read logs of %s: %w", id, classify(err))
	}
	if c.Config != nil && c.Config.Tty {
		return rc, nil
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := stdcopy.StdCopy(pw, pw, rc)
		rc.Close()
		pw.CloseWithError(err) // nil: EOF
	}()
	return &demuxed{PipeReader: pr, src: rc}, nil
}

// demuxed is the read side of a demultiplexed log stream; closing it stops
// the copy.
type demuxed struct {
	*io.PipeReader
	src io.Closer
}

func (r *demuxed) Close() error {
	r.src.Close()
	return r.PipeReader.Close()
}

// RemoveVolumes removes project's named volumes (labels dev.project=<project>
// and dev.managed=true). A volume still in use is an error naming it.
func (d *Driver) RemoveVolumes(ctx context.Context, project string) error {
	f := managedFilter()
	f.Add("label", api.LabelProject+"="+project)
	resp, err := d.cli.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		return fmt.Errorf("list volumes of %s: %w", project, err)
	}
	var errs []error
	for _, v := range resp.Volumes {
		if err := d.cli.VolumeRemove(ctx, v.Name, false); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove volume %s: %w", v.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Ping implements agent.Driver: the Engine's /_ping.
func (d *Driver) Ping(ctx context.Context) error {
	if _, err := d.cli.Ping(ctx); err != nil {
		return fmt.Errorf("ping docker engine: %w", err)
	}
	return nil
}

// Resources reports the engine's CPUs (in nano-CPUs) and total memory.
func (d *Driver) Resources(ctx context.Context) (api.ResourceAmounts, error) {
	info, err := d.cli.Info(ctx)
	if err != nil {
		return api.ResourceAmounts{}, fmt.Errorf("read docker info: %w", err)
	}
	return api.ResourceAmounts{NanoCPUs: int64(info.NCPU) * 1e9, MemoryBytes: info.MemTotal}, nil
}

// SaveImage implements agent.Driver: docker save of one image.
func (d *Driver) SaveImage(ctx context.Context, ref string) (io.ReadCloser, error) {
	if _, err := d.cli.ImageInspect(ctx, ref); err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil, fmt.Errorf("save image %s: %w", ref, agent.ErrImageNotFound)
		}
		return nil, fmt.Errorf("save image %s: %w", ref, err)
	}
	rc, err := d.cli.ImageSave(ctx, []string{ref})
	if err != nil {
		return nil, fmt.Errorf("save image %s: %w", ref, err)
	}
	return rc, nil
}
