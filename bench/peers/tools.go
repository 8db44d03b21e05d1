package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	imagetypes "github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/devhq/dev/cluster/agent/docker"
)

// service is one compose service of a workload.
type service struct {
	Name     string
	Replicas int
	Env      map[string]string
}

// workload is the same work handed to every tool: a compose project.
type workload struct {
	Project  string
	Services []service
	// Publish, when set, publishes container port 8080 on this host port,
	// for the tools that can publish it from many replicas (dev).
	Publish int
	// Health gives every service the test image's healthcheck.
	Health bool
}

func (w *workload) total() int {
	n := 0
	for _, s := range w.Services {
		n += s.Replicas
	}
	return n
}

// flavour is the dialect of compose file a tool reads.
type flavour int

const (
	flavourDev flavour = iota
	flavourCompose
	flavourSwarm
)

// composeYAML renders w for a tool. image is the image reference to use.
// Replicas go into deploy.replicas for dev and swarm; docker-compose gets
// them with --scale.
func composeYAML(w *workload, image string, f flavour) string {
	var b strings.Builder
	if f == flavourSwarm {
		b.WriteString("version: \"3.8\"\n")
	}
	b.WriteString("services:\n")
	for _, s := range w.Services {
		fmt.Fprintf(&b, "  %s:\n    image: %s\n", s.Name, image)
		if len(s.Env) > 0 {
			b.WriteString("    environment:\n")
			for _, k := range slices.Sorted(maps.Keys(s.Env)) {
				fmt.Fprintf(&b, "      %s: %q\n", k, s.Env[k])
			}
		}
		if w.Health {
			b.WriteString("    healthcheck:\n      test: [\"CMD\", \"/app\", \"health\"]\n      interval: 1s\n      timeout: 2s\n      retries: 3\n")
		}
		if f == flavourDev && w.Publish > 0 {
			fmt.Fprintf(&b, "    ports:\n      - \"%d:8080\"\n", w.Publish)
		}
		switch f {
		case flavourDev:
			if s.Replicas != 1 {
				fmt.Fprintf(&b, "    deploy:\n      replicas: %d\n", s.Replicas)
			}
		case flavourSwarm:
			fmt.Fprintf(&b, "    deploy:\n      replicas: %d\n      endpoint_mode: dnsrr\n", s.Replicas)
		}
	}
	return b.String()
}

// writeCompose writes w's compose file for a tool under dir/<project>/ and
// returns its path. The path stays the same across changes of w, as when a
// user edits the file.
func writeCompose(dir string, w *workload, image string, f flavour) (string, error) {
	d := filepath.Join(dir, w.Project)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", fmt.Errorf("write compose file: %w", err)
	}
	p := filepath.Join(d, "compose.yaml")
	if err := os.WriteFile(p, []byte(composeYAML(w, image, f)), 0o644); err != nil {
		return "", fmt.Errorf("write compose file: %w", err)
	}
	return p, nil
}

// tool is one of the peers doing the work.
type tool interface {
	// Name is the Record's Tool.
	Name() string
	// Prefix starts the tool's project names, so tools never share one.
	Prefix() string
	// Up deploys w, the first time or after a change, and returns when the
	// tool's command (or API calls) returned.
	Up(ctx context.Context, w *workload) error
	// Scale sets service svc of the deployed w to w's replica count.
	Scale(ctx context.Context, w *workload, svc string) error
	// Wait returns once w's services run with their replica counts.
	Wait(ctx context.Context, w *workload) error
	// Down removes w and returns once its containers are gone.
	Down(ctx context.Context, w *workload) error
	// Labels says how the tool's containers are labelled.
	Labels() labelScheme
	// Cleanup removes everything the tool created; it runs on failure too.
	Cleanup(ctx context.Context)
}

// projects remembers the projects a tool deployed, for its cleanup.
type projects struct {
	mu    sync.Mutex
	files map[string]string // project -> compose file
}

func (p *projects) add(project, file string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.files == nil {
		p.files = map[string]string{}
	}
	p.files[project] = file
}

func (p *projects) file(project string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.files[project]
}

func (p *projects) all() map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.files)
}

// ---------------------------------------------------------------- dev

const (
	devNetwork = "devpeers"
	devBridge  = "devpeers0"
	// devNode is the agent's node name. It must differ from any other
	// agent's on this Engine: an agent removes containers labelled with its
	// node name that belong to no pod it knows (orphans).
	devNode = "devpeers"
)

// devTool drives a private `dev agent` through the dev CLI.
type devTool struct {
	bin, data, dir, image string
	dc                    *client.Client
	opTimeout             time.Duration
	env                   []string
	ps                    projects

	agent     *exec.Cmd
	agentDone chan struct{}
	stopOnce  sync.Once
}

// newDevTool starts `dev agent` in the background on free ports and waits
// until its node is ready.
func newDevTool(ctx context.Context, bin, work, image string, dc *client.Client, opTimeout time.Duration) (*devTool, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("dev binary: %w (build it with `make build` or pass -dev)", err)
	}
	data, err := os.MkdirTemp("", "devpeers-agent-")
	if err != nil {
		return nil, fmt.Errorf("create agent data dir: %w", err)
	}
	t := &devTool{bin: bin, data: data, dir: filepath.Join(work, "dev"), image: image, dc: dc, opTimeout: opTimeout}
	t.env = append(os.Environ(), "DEV_HOST=unix://"+filepath.Join(data, "dev.sock"), "DEV_DATA_DIR="+data)
	// A network left by an interrupted earlier run would be reused with the
	// wrong subnet: remove it (and its containers) first.
	if err := removeContainers(ctx, dc, "dev.node="+devNode); err != nil {
		return nil, err
	}
	if err := removeNetwork(ctx, dc, devNetwork); errors.Is(err, errLeakedEndpoints) {
		warn("dev: reusing network %s left by an earlier run: %v", devNetwork, err)
	} else if err != nil {
		return nil, err
	}
	ports, err := freePorts(4)
	if err != nil {
		os.RemoveAll(data)
		return nil, err
	}
	logf, err := os.Create(filepath.Join(data, "agent.log"))
	if err != nil {
		os.RemoveAll(data)
		return nil, fmt.Errorf("create agent log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "agent", "--data-dir", data, "--advertise-addr", "127.0.0.1",
		"--raft-port", strconv.Itoa(ports[0]), "--gossip-port", strconv.Itoa(ports[1]), "--api-port", strconv.Itoa(ports[2]),
		"--cluster-cidr", "10.223.0.0/16", "--service-cidr", "10.224.0.0/16", "--dns-addr", "127.0.0.1:"+strconv.Itoa(ports[3]),
		"--network", devNetwork, "--bridge", devBridge, "--node-name", devNode)
	cmd.Env = t.env
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C in the terminal must not stop the
	// agent before the cleanup has taken the pods down through it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(data)
		return nil, fmt.Errorf("start dev agent: %w", err)
	}
	t.agent = cmd
	t.agentDone = make(chan struct{})
	go func() { cmd.Wait(); close(t.agentDone) }() //nolint:errcheck // the exit shows in alive()
	log.Printf("dev: agent pid %d, data dir %s, ports raft %d gossip %d api %d dns %d", cmd.Process.Pid, data, ports[0], ports[1], ports[2], ports[3])

	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err = waitUntil(wctx, "wait for the dev agent's node to be ready", func(ctx context.Context) (bool, string, error) {
		if err := t.alive(); err != nil {
			return false, "", err
		}
		out, err := outputCmd(ctx, t.env, bin, "nodes", "-o", "json")
		if err != nil {
			return false, firstLine(err.Error()), nil
		}
		var nodes []struct {
			Name   string `json:"name"`
			Status string `json:"status"`
		}
		if err := json.Unmarshal(out, &nodes); err != nil {
			return false, "dev nodes: " + err.Error(), nil
		}
		for _, n := range nodes {
			if n.Name == devNode && n.Status == "ready" {
				return true, "", nil
			}
		}
		return false, fmt.Sprintf("nodes %v", nodes), nil
	})
	if err != nil {
		t.Cleanup(context.Background())
		return nil, err
	}
	return t, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// alive fails, with the end of the agent's log, when the agent has exited.
func (t *devTool) alive() error {
	select {
	case <-t.agentDone:
		b, _ := os.ReadFile(filepath.Join(t.data, "agent.log"))
		return fmt.Errorf("dev agent exited: %v\n%s", t.agent.ProcessState, tail(string(b), 2000))
	default:
		return nil
	}
}

func (t *devTool) Name() string   { return "dev" }
func (t *devTool) Prefix() string { return "peersdev" }
func (t *devTool) Labels() labelScheme {
	return labelScheme{project: "dev.project", service: "dev.service"}
}

func (t *devTool) cli(ctx context.Context, args ...string) error {
	if err := t.alive(); err != nil {
		return err
	}
	return runCmd(ctx, t.env, t.bin, args...)
}

func (t *devTool) Up(ctx context.Context, w *workload) error {
	f, err := writeCompose(t.dir, w, t.image, flavourDev)
	if err != nil {
		return err
	}
	t.ps.add(w.Project, f)
	return t.cli(ctx, "up", "-d", "-p", w.Project, "-f", f, "--timeout", t.opTimeout.String())
}

func (t *devTool) Scale(ctx context.Context, w *workload, svc string) error {
	n := 0
	for _, s := range w.Services {
		if s.Name == svc {
			n = s.Replicas
		}
	}
	return t.cli(ctx, "scale", "-p", w.Project, "-f", t.ps.file(w.Project), fmt.Sprintf("%s=%d", svc, n), "--timeout", t.opTimeout.String())
}

func (t *devTool) Wait(ctx context.Context, w *workload) error {
	return waitContainers(ctx, t.dc, t.Labels(), w)
}

func (t *devTool) Down(ctx context.Context, w *workload) error {
	if err := t.cli(ctx, "down", "-v", "-p", w.Project, "-f", t.ps.file(w.Project), "--timeout", t.opTimeout.String()); err != nil {
		return err
	}
	return waitGone(ctx, t.dc, t.Labels(), w.Project)
}

// Cleanup takes every project down through the agent, stops the agent,
// removes what may be left and the pod network. It runs once.
func (t *devTool) Cleanup(ctx context.Context) {
	t.stopOnce.Do(func() {
		for p, f := range t.ps.all() {
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			if err := t.cli(cctx, "down", "-v", "-p", p, "-f", f, "--timeout", "50s"); err != nil {
				warn("cleanup: dev down %s: %v", p, err)
			}
			cancel()
		}
		if t.agent != nil && t.agent.Process != nil {
			t.agent.Process.Signal(syscall.SIGTERM) //nolint:errcheck // it may have exited
			select {
			case <-t.agentDone:
			case <-time.After(20 * time.Second):
				warn("cleanup: dev agent did not stop in 20s; killing it")
				t.agent.Process.Kill() //nolint:errcheck // it may have exited
				<-t.agentDone
			}
		}
		if err := removeContainers(ctx, t.dc, "dev.node="+devNode); err != nil {
			warn("cleanup: %v", err)
		}
		if err := removeNetwork(ctx, t.dc, devNetwork); err != nil {
			warn("cleanup: %v", err)
		}
		os.RemoveAll(t.data)
	})
}

// ---------------------------------------------------------------- docker-compose

// composeTool drives Debian's docker-compose 1.29.
type composeTool struct {
	bin, dir, image string
	dc              *client.Client
	ps              projects
}

func newComposeTool(work, image string, dc *client.Client) (*composeTool, error) {
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		return nil, fmt.Errorf("find docker-compose: %w (apt-get install docker-compose)", err)
	}
	return &composeTool{bin: bin, dir: filepath.Join(work, "compose"), image: image, dc: dc}, nil
}

func (t *composeTool) Name() string   { return "docker-compose" }
func (t *composeTool) Prefix() string { return "peersdc" }
func (t *composeTool) Labels() labelScheme {
	return labelScheme{project: "com.docker.compose.project", service: "com.docker.compose.service"}
}

// compose runs docker-compose with the project flags before the command, as
// 1.29 wants them (`docker-compose -p P -f F up`, not `up -p`).
func (t *composeTool) compose(ctx context.Context, project string, args ...string) error {
	full := append([]string{"--ansi", "never", "-p", project, "-f", t.ps.file(project)}, args...)
	return runCmd(ctx, os.Environ(), t.bin, full...)
}

func (t *composeTool) Up(ctx context.Context, w *workload) error {
	f, err := writeCompose(t.dir, w, t.image, flavourCompose)
	if err != nil {
		return err
	}
	t.ps.add(w.Project, f)
	args := []string{"up", "-d"}
	for _, s := range w.Services {
		if s.Replicas != 1 {
			args = append(args, "--scale", fmt.Sprintf("%s=%d", s.Name, s.Replicas))
		}
	}
	return t.compose(ctx, w.Project, args...)
}

func (t *composeTool) Scale(ctx context.Context, w *workload, svc string) error {
	for _, s := range w.Services {
		if s.Name == svc {
			return t.compose(ctx, w.Project, "up", "-d", "--scale", fmt.Sprintf("%s=%d", svc, s.Replicas))
		}
	}
	return fmt.Errorf("scale: no service %s", svc)
}

func (t *composeTool) Wait(ctx context.Context, w *workload) error {
	return waitContainers(ctx, t.dc, t.Labels(), w)
}

func (t *composeTool) Down(ctx context.Context, w *workload) error {
	if err := t.compose(ctx, w.Project, "down", "-v", "--remove-orphans", "-t", "10"); err != nil {
		return err
	}
	return waitGone(ctx, t.dc, t.Labels(), w.Project)
}

func (t *composeTool) Cleanup(ctx context.Context) {
	for p := range t.ps.all() {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		if err := t.compose(cctx, p, "down", "-v", "--remove-orphans", "-t", "5"); err != nil {
			warn("cleanup: docker-compose down %s: %v", p, err)
		}
		cancel()
		if err := removeContainers(ctx, t.dc, "com.docker.compose.project="+p); err != nil {
			warn("cleanup: %v", err)
		}
		if err := removeNetwork(ctx, t.dc, p+"_default"); err != nil {
			warn("cleanup: %v", err)
		}
	}
}

// ---------------------------------------------------------------- raw

const (
	rawNetwork = "devpeers-raw"
	rawLabel   = "devpeers.raw"
)

// rawTool is the limit: the containers created and started with parallel
// Engine API calls, nothing else. With pods set ("raw-pod") each replica is
// what a dev pod is to the Engine: an infra container on the network that
// holds the namespaces, then the app container joining them; the infra's
// start overlaps the app's create, as dev's driver does.
type rawTool struct {
	dc    *client.Client
	image string
	pods  bool
	pause string // the infra containers' image (pods only)
}

// rawInfraLabel marks raw-pod's infra containers with their project; they
// carry no devpeers.project label so that counting sees app containers only.
const rawInfraLabel = "devpeers.infra-of"

// newRawTool creates the bridge network the raw containers join (not timed:
// dev's pod network also exists before its measurements). For pods it
// takes dev's pause image when the Engine has one (dev ran first), else the
// test image sleeping.
func newRawTool(ctx context.Context, dc *client.Client, image string) (*rawTool, error) {
	t := &rawTool{dc: dc, image: image}
	t.Cleanup(ctx) // leftovers of an interrupted run
	if ok, err := networkExists(ctx, dc, rawNetwork); err != nil {
		return nil, err
	} else if ok {
		return t, nil // leaked by the Engine in an earlier run (warned): reuse it
	}
	_, err := dc.NetworkCreate(ctx, rawNetwork, network.CreateOptions{Driver: "bridge", Labels: map[string]string{rawLabel: "true"}})
	if err != nil {
		return nil, fmt.Errorf("create network %s: %w", rawNetwork, err)
	}
	return t, nil
}

func (t *rawTool) Name() string {
	if t.pods {
		return "raw-pod"
	}
	return "raw"
}

func (t *rawTool) Prefix() string {
	if t.pods {
		return "peersrawpod"
	}
	return "peersraw"
}
func (t *rawTool) Labels() labelScheme {
	return labelScheme{project: "devpeers.project", service: "devpeers.service"}
}

// findPause picks the infra containers' image: dev's pause image once the
// Engine has one (dev's first pod builds it), else the test image sleeping.
func (t *rawTool) findPause(ctx context.Context) error {
	if !t.pods || (t.pause != "" && t.pause != t.image) {
		return nil
	}
	imgs, err := t.dc.ImageList(ctx, imagetypes.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", docker.PauseImageRepo))})
	if err != nil {
		return fmt.Errorf("list pause images: %w", err)
	}
	t.pause = t.image
	for _, im := range imgs {
		if len(im.RepoTags) > 0 {
			t.pause = im.RepoTags[0]
		}
	}
	return nil
}

// Up creates and starts, all in parallel, every replica of w that does not
// exist yet (named <project>-<service>-<n>).
func (t *rawTool) Up(ctx context.Context, w *workload) error {
	if err := t.findPause(ctx); err != nil {
		return err
	}
	existing, err := listContainers(ctx, t.dc, t.Labels(), w.Project, true)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, c := range existing {
		have[c.Name] = true
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, s := range w.Services {
		for i := 1; i <= s.Replicas; i++ {
			name := fmt.Sprintf("%s-%s-%d", w.Project, s.Name, i)
			if have[name] {
				continue
			}
			wg.Go(func() {
				if err := t.run(ctx, w, s, name); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (t *rawTool) run(ctx context.Context, w *workload, s service, name string) error {
	env := make([]string, 0, len(s.Env))
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		env = append(env, k+"="+s.Env[k])
	}
	cfg := &container.Config{
		Image:    t.image,
		Hostname: name,
		Env:      env,
		Labels:   map[string]string{rawLabel: "true", "devpeers.project": w.Project, "devpeers.service": s.Name},
	}
	if w.Health {
		cfg.Healthcheck = &container.HealthConfig{Test: []string{"CMD", "/app", "health"}, Interval: time.Second, Timeout: 2 * time.Second, Retries: 3}
	}
	hc := &container.HostConfig{NetworkMode: container.NetworkMode(rawNetwork)}
	infraStarted := func() error { return nil }
	if t.pods {
		infra, err := t.infra(ctx, w, name)
		if err != nil {
			return err
		}
		done := make(chan error, 1)
		go func() { done <- t.dc.ContainerStart(ctx, infra, container.StartOptions{}) }()
		infraStarted = func() error {
			if err := <-done; err != nil {
				return fmt.Errorf("start infra container of %s: %w", name, err)
			}
			return nil
		}
		cfg.Hostname = ""
		hc = &container.HostConfig{NetworkMode: container.NetworkMode("container:" + infra), IpcMode: container.IpcMode("container:" + infra)}
	}
	c, err := t.dc.ContainerCreate(ctx, cfg, hc, nil, nil, name)
	if err != nil {
		_ = infraStarted()
		return fmt.Errorf("create container %s: %w", name, err)
	}
	if err := infraStarted(); err != nil {
		return err
	}
	if err := t.dc.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		return fmt.Errorf("start container %s: %w", name, err)
	}
	return nil
}

// infra creates a pod's infra container (not started): the network and a
// shareable IPC namespace, as dev's driver makes it.
func (t *rawTool) infra(ctx context.Context, w *workload, name string) (string, error) {
	cfg := &container.Config{
		Image:    t.pause,
		Hostname: name,
		Labels:   map[string]string{rawLabel: "true", rawInfraLabel: w.Project},
	}
	if t.pause == t.image {
		cfg.Cmd = []string{"sleep"}
	}
	hc := &container.HostConfig{NetworkMode: container.NetworkMode(rawNetwork), IpcMode: container.IPCModeShareable}
	c, err := t.dc.ContainerCreate(ctx, cfg, hc, nil, nil, docker.InfraName(name))
	if err != nil {
		return "", fmt.Errorf("create infra container of %s: %w", name, err)
	}
	return c.ID, nil
}

func (t *rawTool) Scale(ctx context.Context, w *workload, _ string) error { return t.Up(ctx, w) }

func (t *rawTool) Wait(ctx context.Context, w *workload) error {
	return waitContainers(ctx, t.dc, t.Labels(), w)
}

func (t *rawTool) Down(ctx context.Context, w *workload) error {
	if err := removeContainers(ctx, t.dc, "devpeers.project="+w.Project); err != nil {
		return err
	}
	if err := removeContainers(ctx, t.dc, rawInfraLabel+"="+w.Project); err != nil {
		return err
	}
	return waitGone(ctx, t.dc, t.Labels(), w.Project)
}

func (t *rawTool) Cleanup(ctx context.Context) {
	if err := removeContainers(ctx, t.dc, rawLabel+"=true"); err != nil {
		warn("cleanup: %v", err)
	}
	if err := removeNetwork(ctx, t.dc, rawNetwork); err != nil {
		warn("cleanup: %v", err)
	}
}

// ---------------------------------------------------------------- swarm

// swarmTool drives `docker stack deploy` on a single-node swarm it creates
// on the root engine and leaves afterwards.
type swarmTool struct {
	dc        *client.Client
	dir       string
	imageID   string
	ps        projects
	inited    bool
	hadGWBr   bool // docker_gwbridge existed before swarm init
	leaveOnce sync.Once
}

func newSwarmTool(work, imageID string, dc *client.Client) *swarmTool {
	return &swarmTool{dc: dc, dir: filepath.Join(work, "swarm"), imageID: imageID}
}

// Init makes this Engine a single-node swarm manager on 127.0.0.1. It
// refuses an Engine already in a swarm: that swarm is not ours to leave.
func (t *swarmTool) Init(ctx context.Context) error {
	info, err := t.dc.Info(ctx)
	if err != nil {
		return fmt.Errorf("engine info: %w", err)
	}
	if st := info.Swarm.LocalNodeState; st != swarm.LocalNodeStateInactive {
		return fmt.Errorf("the engine is already in swarm state %q, not created by this run; not touching it", st)
	}
	t.hadGWBr, err = networkExists(ctx, t.dc, "docker_gwbridge")
	if err != nil {
		return err
	}
	ictx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	t.inited = true // a half-done init is left too
	if err := runCmd(ictx, os.Environ(), "docker", "swarm", "init", "--advertise-addr", "127.0.0.1"); err != nil {
		return fmt.Errorf("swarm init: %w", err)
	}
	return nil
}

func (t *swarmTool) Name() string   { return "swarm" }
func (t *swarmTool) Prefix() string { return "peerssw" }
func (t *swarmTool) Labels() labelScheme {
	return labelScheme{project: "com.docker.stack.namespace", service: "com.docker.swarm.service.name", trimProject: true}
}

func (t *swarmTool) Up(ctx context.Context, w *workload) error {
	// The image by ID: the engine then does not try to pull it from a
	// registry (there is none) before starting each task.
	f, err := writeCompose(t.dir, w, t.imageID, flavourSwarm)
	if err != nil {
		return err
	}
	t.ps.add(w.Project, f)
	return runCmd(ctx, os.Environ(), "docker", "stack", "deploy", "--resolve-image", "never", "-c", f, w.Project)
}

func (t *swarmTool) Scale(ctx context.Context, w *workload, svc string) error {
	for _, s := range w.Services {
		if s.Name == svc {
			return runCmd(ctx, os.Environ(), "docker", "service", "scale", "-d", fmt.Sprintf("%s_%s=%d", w.Project, svc, s.Replicas))
		}
	}
	return fmt.Errorf("scale: no service %s", svc)
}

// Wait polls the swarm's tasks until each service has its replica count of
// tasks Running (with a healthcheck, swarm reports Running once healthy).
func (t *swarmTool) Wait(ctx context.Context, w *workload) error {
	return waitUntil(ctx, "wait for the tasks of "+w.Project+" to run", func(ctx context.Context) (bool, string, error) {
		svcs, err := t.dc.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.stack.namespace="+w.Project))})
		if err != nil {
			return false, "", fmt.Errorf("list services: %w", err)
		}
		names := map[string]string{}
		for _, s := range svcs {
			names[s.ID] = strings.TrimPrefix(s.Spec.Name, w.Project+"_")
		}
		tasks, err := t.dc.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("desired-state", "running"))})
		if err != nil {
			return false, "", fmt.Errorf("list tasks: %w", err)
		}
		running := map[string]int{}
		total := 0
		for _, task := range tasks {
			if name, ok := names[task.ServiceID]; ok && task.Status.State == swarm.TaskStateRunning {
				running[name]++
				total++
			}
		}
		var missing []string
		for _, s := range w.Services {
			if running[s.Name] != s.Replicas {
				missing = append(missing, fmt.Sprintf("%s %d/%d", s.Name, running[s.Name], s.Replicas))
			}
		}
		if len(missing) == 0 && total == w.total() {
			return true, "", nil
		}
		if len(missing) > 5 {
			missing = append(missing[:5], "...")
		}
		return false, fmt.Sprintf("%d services, %d tasks running; not yet: %s", len(svcs), total, strings.Join(missing, ", ")), nil
	})
}

// Down removes the stack and waits until its services, containers and
// network are gone (`docker stack rm` returns before they are).
func (t *swarmTool) Down(ctx context.Context, w *workload) error {
	if err := runCmd(ctx, os.Environ(), "docker", "stack", "rm", w.Project); err != nil {
		return err
	}
	return t.waitStackGone(ctx, w.Project)
}

func (t *swarmTool) waitStackGone(ctx context.Context, project string) error {
	return waitUntil(ctx, "wait for stack "+project+" to go", func(ctx context.Context) (bool, string, error) {
		svcs, err := t.dc.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.stack.namespace="+project))})
		if err != nil {
			return false, "", fmt.Errorf("list services: %w", err)
		}
		cs, err := listContainers(ctx, t.dc, t.Labels(), project, true)
		if err != nil {
			return false, "", err
		}
		nw, err := networkExists(ctx, t.dc, project+"_default")
		if err != nil {
			return false, "", err
		}
		return len(svcs) == 0 && len(cs) == 0 && !nw,
			fmt.Sprintf("%d services, %d containers, network left: %v", len(svcs), len(cs), nw), nil
	})
}

// Cleanup removes the stacks, leaves the swarm (force: the only manager)
// and removes docker_gwbridge when swarm init created it. It runs once.
func (t *swarmTool) Cleanup(ctx context.Context) {
	t.leaveOnce.Do(func() {
		if !t.inited {
			return
		}
		for p := range t.ps.all() {
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			if err := runCmd(cctx, os.Environ(), "docker", "stack", "rm", p); err != nil {
				warn("cleanup: docker stack rm %s: %v", p, err)
			} else if err := t.waitStackGone(cctx, p); err != nil {
				warn("cleanup: %v", err)
			}
			cancel()
		}
		lctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := runCmd(lctx, os.Environ(), "docker", "swarm", "leave", "--force"); err != nil {
			warn("cleanup: %v", err)
		} else {
			log.Printf("swarm: left the swarm")
		}
		for p := range t.ps.all() {
			if err := removeContainers(lctx, t.dc, "com.docker.stack.namespace="+p); err != nil {
				warn("cleanup: %v", err)
			}
		}
		if !t.hadGWBr {
			if err := removeNetwork(lctx, t.dc, "docker_gwbridge"); err != nil {
				warn("cleanup: %v", err)
			}
		}
	})
}
