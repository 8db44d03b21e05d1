package cli

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/devhq/dev/cluster/agent/docker"
	"github.com/devhq/dev/cluster/api"
)

// How an agent is started when none answers (--agent).
const (
	agentAuto      = "auto"      // a process when root on the Engine's host, else a container
	agentProcess   = "process"   // `dev agent` in the background, as this user (root)
	agentContainer = "container" // a privileged container on the Engine
)

// Labels of the agent's container and image.
const (
	labelAgent        = docker.LabelAgent        // "true" on the agent's container and image
	labelAgentVersion = docker.LabelAgentVersion // the dev version the image was built from
	labelAgentArgs    = "dev.agent.args"         // the user's agent flags (JSON), for an upgrade
	labelAgentEngine  = "dev.agent.engine"       // the Engine's socket on its host
	agentImageRepo    = docker.AgentImageRepo
	agentDataMount    = "/var/lib/dev" // the named volume, in the container
	// agentHostRoot is where the container sees the host's root file system
	// (bound there): the host's iptables and modprobe run chrooted in it.
	// Not /proc/1/root: reaching another mount namespace's root through
	// /proc needs ptrace rights over the host's init, which some hosts deny.
	agentHostRoot = "/host"
)

// agentBox is the agent's container on one Docker Engine: its name, its
// data volume and the host folder holding its socket derive from one name
// (--agent-container, default dev-agent).
type agentBox struct {
	dc   *client.Client
	name string
}

func (b agentBox) volume() string { return b.name + "-data" }

// runDir is the host folder with the agent's socket and the pods' secret
// files (tmpfs on most hosts). The same path inside the container, so that
// the secrets' bind mounts name host paths.
func (b agentBox) runDir() string { return "/run/" + b.name }

// Socket is the agent's unix socket on the host: root:docker, mode 0660, so
// that root and every user of the docker group find the same agent.
func (b agentBox) socket() string { return b.runDir() + "/dev.sock" }

// isRunning says whether an inspected container (nil: none) runs.
func isRunning(c *container.InspectResponse) bool {
	return c != nil && c.State != nil && c.State.Running
}

// inspect returns the agent's container, nil when there is none.
func (b agentBox) inspect(ctx context.Context) (*container.InspectResponse, error) {
	c, err := b.dc.ContainerInspect(ctx, b.name)
	if cerrdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("inspect agent container %s: %w", b.name, err)
	}
	return &c, nil
}

// agentImage builds the agent's image from the dev binary at exe (FROM
// scratch, no registry) unless the Engine e has it; it returns the image
// reference, tagged with the binary's digest.
func (b agentBox) agentImage(ctx context.Context, e *engine, exe string) (string, error) {
	bin, err := os.ReadFile(exe)
	if err != nil {
		return "", fmt.Errorf("read dev binary: %w", err)
	}
	if err := checkAgentBinary(bin, e.osType, e.arch); err != nil {
		return "", err
	}
	return docker.AgentImage(ctx, b.dc, bin, Version)
}

// checkAgentBinary says why a binary cannot run FROM scratch on an engine
// of that OS and architecture: it must be a static Linux executable of the
// engine's architecture.
func checkAgentBinary(bin []byte, osType, arch string) error {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("the agent's image needs a Linux dev binary, and this one is not (%v): pass one built with GOOS=linux CGO_ENABLED=0 as --agent-binary", err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("this dev binary is dynamically linked and cannot run in the agent's FROM scratch image: build it with CGO_ENABLED=0 (as `make build` does), or pass such a binary as --agent-binary")
		}
	}
	want := map[string]elf.Machine{"x86_64": elf.EM_X86_64, "amd64": elf.EM_X86_64, "aarch64": elf.EM_AARCH64, "arm64": elf.EM_AARCH64}
	if osType != "" && osType != "linux" {
		return fmt.Errorf("the Docker Engine runs %s containers; the agent needs a Linux engine", osType)
	}
	if m, ok := want[arch]; ok && m != f.Machine {
		return fmt.Errorf("this dev binary is for %s and the Docker Engine runs on %s: pass a dev binary for %s as --agent-binary", f.Machine, arch, arch)
	}
	return nil
}

// config is the agent's container: in the host's network, PID and UTS
// namespaces (it programs the host's network, reaches pods' files through
// /proc/PID/root and takes the host's name), the host's root file system
// at /host (it runs the host's iptables there), with the capabilities
// that needs and /proc/sys writable, its data in a named volume, the
// Engine's socket mounted, restarted by the Engine unless stopped.
//
// Not --privileged: that asks for every capability, and an Engine that
// lacks one itself (as on the machines dev is tested on, which lack
// CAP_SYS_RESOURCE) cannot start it. The capabilities below are what the
// agent uses; with the host's root bound read-write and the Engine's socket,
// the container is root on the host all the same, as the agent must be.
func (b agentBox) config(spec agentSpec) (*container.Config, *container.HostConfig) {
	cmd := append([]string{"agent", "--data-dir", agentDataMount, "--socket", b.socket(), "--socket-docker-group",
		"--secrets-dir", b.runDir() + "/secrets", "--secrets-tmpfs=false", "--host-root", agentHostRoot}, spec.args...)
	args, _ := json.Marshal(spec.args)
	cfg := &container.Config{
		Image: spec.image, Cmd: cmd,
		Env: append([]string{"DOCKER_HOST=unix:///var/run/docker.sock"}, spec.env...),
		Labels: map[string]string{labelAgent: "true", labelAgentVersion: Version,
			labelAgentArgs: string(args), labelAgentEngine: spec.engineSocket},
	}
	host := &container.HostConfig{
		NetworkMode: "host", PidMode: "host", UTSMode: "host",
		CapAdd: []string{
			"NET_ADMIN",       // links, routes, nftables, iptables, conntrack
			"SYS_ADMIN",       // what iptables and the bridge's settings need besides
			"SYS_PTRACE",      // /proc/PID/root (pods' files)
			"SYS_MODULE",      // modprobe br_netfilter
			"DAC_READ_SEARCH", // the host's and pods' files
		},
		SecurityOpt: []string{"seccomp=unconfined", "apparmor=unconfined"},
		// Sysctls of the host's network (route_localnet, bridge netfilter)
		// are written through /proc/sys: none of /proc read-only or masked.
		MaskedPaths: []string{}, ReadonlyPaths: []string{},
		// No restart until it has answered once (launch): an agent that
		// cannot start must not loop.
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		// Binds, not Mounts: the Engine creates a missing source folder. The
		// host's root is bound rslave where the host allows it, so that the
		// pods' mounts made later reach the agent and their unmounts too.
		Binds: []string{b.runDir() + ":" + b.runDir(), spec.engineSocket + ":/var/run/docker.sock", "/:" + agentHostRoot + ":rslave"},
		Mounts: []mount.Mount{{Type: mount.TypeVolume, Source: b.volume(), Target: agentDataMount,
			VolumeOptions: &mount.VolumeOptions{Labels: map[string]string{labelAgent: "true"}}}},
		LogConfig: container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "10m", "max-file": "3"}},
	}
	return cfg, host
}

// agentSpec is what an agent's container is made from: its image, the
// Engine's socket on the Engine's host, the user's agent flags and extra
// environment (a join token, kept out of the command line that every user
// of the host can read). The flags and the socket are recorded in labels,
// so that an upgrade makes the same agent from a newer binary's config.
type agentSpec struct {
	image        string
	engineSocket string
	args         []string
	env          []string
}

// specOf is the spec an existing agent container was made from, with
// another image.
func specOf(c *container.InspectResponse, image string) agentSpec {
	spec := agentSpec{image: image, engineSocket: c.Config.Labels[labelAgentEngine]}
	_ = json.Unmarshal([]byte(c.Config.Labels[labelAgentArgs]), &spec.args)
	if spec.engineSocket == "" {
		spec.engineSocket = "/var/run/docker.sock"
	}
	return spec
}

// errAgentExists says another CLI created the agent's container first.
var errAgentExists = errors.New("the agent's container exists")

// create creates and starts the agent's container.
func (b agentBox) create(ctx context.Context, cfg *container.Config, host *container.HostConfig) error {
	err := b.createStart(ctx, cfg, host)
	if err != nil && strings.Contains(err.Error(), "not a shared or slave mount") {
		// This host's / is private: bind it so (pods' later mounts stay out).
		_ = b.dc.ContainerRemove(ctx, b.name, container.RemoveOptions{Force: true})
		host.Binds = slices.Clone(host.Binds)
		for i, bind := range host.Binds {
			host.Binds[i] = strings.TrimSuffix(bind, ":rslave")
		}
		err = b.createStart(ctx, cfg, host)
	}
	return err
}

func (b agentBox) createStart(ctx context.Context, cfg *container.Config, host *container.HostConfig) error {
	_, err := b.dc.ContainerCreate(ctx, cfg, host, nil, nil, b.name)
	if cerrdefs.IsConflict(err) {
		return errAgentExists
	}
	if err != nil {
		return fmt.Errorf("create agent container %s: %w", b.name, err)
	}
	if err := b.dc.ContainerStart(ctx, b.name, container.StartOptions{}); err != nil {
		return fmt.Errorf("start agent container %s: %w", b.name, err)
	}
	return nil
}

// launch creates the agent's container from spec and waits until it
// answers through c; then the Engine restarts it unless stopped. One that
// does not answer is removed (its volume stays), with its last words in the
// error.
func (b agentBox) launch(ctx context.Context, spec agentSpec, c *api.HTTPClient) (*api.HTTPClient, error) {
	cfg, host := b.config(spec)
	err := b.create(ctx, cfg, host)
	if errors.Is(err, errAgentExists) {
		return b.wait(ctx, c, 60*time.Second) // another dev up made it first
	}
	if err != nil {
		return nil, err
	}
	ac, err := b.wait(ctx, c, 60*time.Second)
	if err != nil {
		_ = b.remove(context.WithoutCancel(ctx))
		return nil, err
	}
	if _, err := b.dc.ContainerUpdate(ctx, b.name, container.UpdateConfig{
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped}}); err != nil {
		return nil, fmt.Errorf("set the agent container's restart policy: %w", err)
	}
	return ac, nil
}

// remove stops and removes the agent's container; its volume stays.
func (b agentBox) remove(ctx context.Context) error {
	timeout := 30
	if err := b.dc.ContainerStop(ctx, b.name, container.StopOptions{Timeout: &timeout}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("stop agent container %s: %w", b.name, err)
	}
	if err := b.dc.ContainerRemove(ctx, b.name, container.RemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove agent container %s: %w", b.name, err)
	}
	return nil
}

// failure explains why the container stopped: its state and its last log
// lines.
func (b agentBox) failure(ctx context.Context) error {
	c, err := b.inspect(ctx)
	if err != nil || c == nil {
		return fmt.Errorf("the agent container %s is gone", b.name)
	}
	if isRunning(c) {
		return nil
	}
	rc, err := b.dc.ContainerLogs(ctx, b.name, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: "20"})
	var logs bytes.Buffer
	if err == nil {
		_, _ = stdcopy.StdCopy(&logs, &logs, rc)
		rc.Close()
	}
	code := 0
	if c.State != nil {
		code = c.State.ExitCode
	}
	return fmt.Errorf("the agent container %s exited (code %d): %s (`docker logs %s` has the rest)", b.name, code, lastErrorLine(logs.String()), b.name)
}

// wait waits until the agent answers with a leader, or its container
// stops. c reaches it (agentClient).
func (b agentBox) wait(ctx context.Context, c *api.HTTPClient, within time.Duration) (*api.HTTPClient, error) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := c.Status(sctx)
		cancel()
		if err == nil && st.Leader != "" {
			return c, nil
		}
		if err := b.failure(ctx); err != nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("the agent container %s did not answer within %s; see `docker logs %s`", b.name, within, b.name)
}

// engine describes where the Docker Engine is, for choosing how to run the
// agent.
type engine struct {
	dc *client.Client
	// socket is the Engine's unix socket on its host: the path of
	// DOCKER_HOST on this host, the usual one elsewhere.
	socket string
	// remote says why the Engine is not on this host ("" when it is).
	remote string
	// rootless: the Engine runs as a user, and cannot give the agent root.
	rootless bool
	// osType and arch are the Engine's (the agent's binary must match).
	osType, arch string
}

// dockerEngine connects to the Docker Engine Docker's own conventions name
// (DOCKER_HOST), with errors that say what to do.
func dockerEngine(ctx context.Context) (*engine, error) {
	dc, err := docker.NewClient()
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(dc.DaemonHost(), "ssh://") {
		dc.Close()
		return nil, fmt.Errorf("DOCKER_HOST=%s: dev does not speak ssh:// to an Engine yet; forward the Engine's socket "+
			"(`ssh -NL 127.0.0.1:2375:/var/run/docker.sock HOST &`) and set DOCKER_HOST=tcp://127.0.0.1:2375", dc.DaemonHost())
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	info, err := dc.Info(pctx)
	if err != nil {
		dc.Close()
		return nil, engineError(dc.DaemonHost(), err)
	}
	e := &engine{dc: dc, osType: info.OSType, arch: info.Architecture,
		rootless: slices.ContainsFunc(info.SecurityOptions, func(o string) bool { return strings.Contains(o, "name=rootless") })}
	host := dc.DaemonHost()
	sock, isUnix := strings.CutPrefix(host, "unix://")
	e.socket = "/var/run/docker.sock"
	switch {
	case !isUnix:
		e.remote = "the Docker Engine at " + host + " is not on this host"
	case strings.Contains(info.OperatingSystem, "Docker Desktop") || runtime.GOOS != "linux":
		e.remote = "the Docker Engine runs in a VM (" + info.OperatingSystem + ")"
	default:
		e.socket = sock
	}
	return e, nil
}

// agentClient is how the CLI reaches the agent's container: its socket when
// the Engine is on this host, else through exec sessions on the Engine.
func (b agentBox) agentClient(e *engine) (*api.HTTPClient, error) {
	if e.remote != "" {
		return b.client(), nil
	}
	return api.NewClient("unix://"+b.socket(), nil)
}

// engineError turns a failure to reach the Engine into what to do about it.
func engineError(host string, err error) error {
	sock, isUnix := strings.CutPrefix(host, "unix://")
	switch {
	case isUnix && errors.Is(err, os.ErrPermission): // EACCES on the socket, wrapped by the client
		return fmt.Errorf("permission denied on the Docker Engine's socket %s: your user may not use Docker. "+
			"Add it to the docker group with `sudo usermod -aG docker %s`, then log in again (or run `newgrp docker`)", sock, userName())
	case client.IsErrConnectionFailed(err) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("no Docker Engine answers at %s: start it (`sudo systemctl start docker`, or Docker Desktop), or point DOCKER_HOST at one", host)
	default:
		return fmt.Errorf("reach the Docker Engine at %s: %w", host, err)
	}
}

// userName is this user's login name, for commands to copy.
func userName() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "$USER"
}

// peerPID is the PID of the process serving the unix socket at path (an
// agent run as a process), from the kernel's peer credentials.
func peerPID(path string) (int, error) {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	raw, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *syscall.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, serr
	}
	return int(cred.Pid), nil
}

// lastErrorLine is the agent's last error in its log, else its last line.
func lastErrorLine(log string) string {
	lines := strings.Split(strings.TrimSpace(log), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := lines[i]; strings.HasPrefix(l, "Error: ") || strings.HasPrefix(l, "error: ") {
			return strings.TrimPrefix(strings.TrimPrefix(l, "Error: "), "error: ")
		}
	}
	if len(lines) > 0 && lines[len(lines)-1] != "" {
		return lines[len(lines)-1]
	}
	return "no log"
}
