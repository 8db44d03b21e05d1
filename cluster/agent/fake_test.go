package agent_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/devhq/dev/cluster/agent"
	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// call is one recorded driver call.
type call struct {
	Op     string // create, start, stop, remove
	Pod    string
	Signal string        // stop only
	Grace  time.Duration // stop only
}

// fakeDriver is an in-memory container engine. Containers are found by ID
// or by name (the pod name), as Docker does.
type fakeDriver struct {
	node string // the dev.node label Create puts on containers

	mu         sync.Mutex
	containers map[string]*agent.Container // by name
	missing    map[string]bool             // images that are not on the engine
	calls      []call
	nextID     int
	nextIP     int
	subnets    []string
	files      map[string]map[string]string // container ID -> path -> content (CopyTo)
	sub        chan string                  // current Events subscriber, nil if none
	specs      map[string]api.ServiceSpec   // the spec of each Create, by pod
	// secretFiles: the containers (by name) whose secret and config files
	// are on the node, written by Create, gone with Remove or dropFiles.
	secretFiles map[string]bool
	engineDown  bool            // Ping fails
	ignoring    map[string]bool // containers (by name) whose process ignores signals but SIGKILL
	exitDelay   time.Duration   // how long after a signal that ends it a process exits
	pingHang    bool            // Ping hangs until its context ends
	pingFails   int             // Ping fails this many more times
	pings       int             // Ping calls
}

var _ agent.Driver = (*fakeDriver)(nil)

func newFakeDriver(node string) *fakeDriver {
	return &fakeDriver{node: node, containers: map[string]*agent.Container{}, missing: map[string]bool{}}
}

// find returns the container by ID or name; f.mu is held.
func (f *fakeDriver) find(id string) *agent.Container {
	if c, ok := f.containers[id]; ok {
		return c
	}
	for _, c := range f.containers {
		if c.ID == id {
			return c
		}
	}
	return nil
}

// notify emits a change event for pod, never blocking; f.mu is held.
func (f *fakeDriver) notify(pod string) {
	if f.sub == nil {
		return
	}
	select {
	case f.sub <- pod:
	default:
	}
}

func copyContainer(c *agent.Container) agent.Container {
	out := *c
	out.Labels = make(map[string]string, len(c.Labels))
	for k, v := range c.Labels {
		out.Labels[k] = v
	}
	return out
}

func (f *fakeDriver) EnsureNetwork(_ context.Context, subnet string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.subnets = append(f.subnets, subnet)
	return nil
}

func (f *fakeDriver) Create(_ context.Context, pod *api.Pod, spec *api.ServiceSpec) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{Op: "create", Pod: pod.Name})
	if f.specs == nil {
		f.specs = map[string]api.ServiceSpec{}
	}
	f.specs[pod.Name] = *spec
	if f.missing[spec.Image] {
		return "", fmt.Errorf("create container %s: image %s: %w", pod.Name, spec.Image, agent.ErrImageNotFound)
	}
	if len(spec.Secrets) > 0 || len(spec.Configs) > 0 {
		if f.secretFiles == nil {
			f.secretFiles = map[string]bool{}
		}
		f.secretFiles[pod.Name] = true
	}
	f.nextID++
	labels := map[string]string{}
	for k, v := range pod.Labels {
		labels[k] = v
	}
	labels[api.LabelManaged] = "true"
	labels[api.LabelPod] = pod.Name
	labels[api.LabelProject] = pod.Project
	labels[api.LabelService] = pod.Service
	labels[api.LabelNode] = f.node
	labels[api.LabelSpec] = pod.SpecHash
	f.containers[pod.Name] = &agent.Container{
		ID: fmt.Sprintf("c%03d", f.nextID), Name: pod.Name, Pod: pod.Name, Project: pod.Project,
		SpecHash: pod.SpecHash, Labels: labels, State: "created", InfraState: "running", // Create makes the infra container
	}
	f.notify(pod.Name)
	return f.containers[pod.Name].ID, nil
}

func (f *fakeDriver) CreateSidecar(ctx context.Context, pod *api.Pod, spec *api.ServiceSpec) (string, error) {
	p := *pod
	p.Name = api.SidecarContainer(pod.Name, spec.Name)
	id, err := f.Create(ctx, &p, spec)
	if err == nil {
		f.mu.Lock()
		c := f.containers[p.Name]
		c.Pod, c.Labels[api.LabelPod] = pod.Name, pod.Name
		f.mu.Unlock()
	}
	return id, err
}

func (f *fakeDriver) Start(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.find(id)
	if c == nil {
		return fmt.Errorf("start container %s: %w", id, agent.ErrNotFound)
	}
	f.calls = append(f.calls, call{Op: "start", Pod: c.Pod})
	if c.IP == "" {
		f.nextIP++
		c.IP = fmt.Sprintf("10.213.1.%d", f.nextIP+1)
	}
	c.State, c.ExitCode, c.StartedAt, c.FinishedAt = "running", 0, time.Now().UTC(), time.Time{}
	f.notify(c.Pod)
	return nil
}

func (f *fakeDriver) Stop(_ context.Context, id string, signal string, grace time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.find(id)
	if c == nil {
		return fmt.Errorf("stop container %s: %w", id, agent.ErrNotFound)
	}
	f.calls = append(f.calls, call{Op: "stop", Pod: c.Pod, Signal: signal, Grace: grace})
	if c.Running() {
		c.State, c.ExitCode, c.FinishedAt = "exited", 0, time.Now().UTC()
	}
	f.notify(c.Pod)
	return nil
}

func (f *fakeDriver) Remove(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.find(id)
	if c == nil {
		return nil
	}
	f.calls = append(f.calls, call{Op: "remove", Pod: c.Pod})
	delete(f.containers, c.Name)
	delete(f.secretFiles, c.Name)
	f.notify(c.Pod)
	return nil
}

// Kill: SIGKILL, SIGTERM and the service's stop signal end the process
// (code 128+n, 0 for a stop signal it handles), as a process without
// other handlers; other signals are handled and it runs on. A process of
// ignoring survives all but SIGKILL; with exitDelay set, it exits that
// long after the signal, as a real process does.
func (f *fakeDriver) Kill(_ context.Context, id, signal string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.find(id)
	if c == nil {
		return fmt.Errorf("kill container %s: %w", id, agent.ErrNotFound)
	}
	f.calls = append(f.calls, call{Op: "kill", Pod: c.Pod, Signal: signal})
	if !c.Running() {
		return fmt.Errorf("kill container %s: container is not running", id)
	}
	code := -1
	switch {
	case signal == "SIGKILL":
		code = 137
	case f.ignoring[c.Name]:
	case signal == "SIGTERM":
		code = 143
	case c.Name == c.Pod && signal != "" && signal == f.specs[c.Pod].StopSignal:
		code = 0
	}
	if code < 0 {
		f.notify(c.Pod)
		return nil
	}
	exit := func() {
		c.State, c.ExitCode, c.FinishedAt = "exited", code, time.Now().UTC()
		f.notify(c.Pod)
	}
	if f.exitDelay == 0 {
		exit()
		return nil
	}
	time.AfterFunc(f.exitDelay, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if c.Running() {
			exit()
		}
	})
	return nil
}

// ignore makes the process of container (by name) ignore every signal
// but SIGKILL.
func (f *fakeDriver) ignore(container string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ignoring == nil {
		f.ignoring = map[string]bool{}
	}
	f.ignoring[container] = true
}

// setExitDelay makes processes exit d after the signal that ends them.
func (f *fakeDriver) setExitDelay(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.exitDelay = d
}

func (f *fakeDriver) Pause(_ context.Context, id string) error { return f.setPaused(id, true) }

func (f *fakeDriver) Unpause(_ context.Context, id string) error { return f.setPaused(id, false) }

func (f *fakeDriver) setPaused(id string, paused bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.find(id)
	if c == nil {
		return fmt.Errorf("pause container %s: %w", id, agent.ErrNotFound)
	}
	op := "pause"
	if !paused {
		op = "unpause"
	}
	f.calls = append(f.calls, call{Op: op, Pod: c.Pod})
	switch {
	case !c.Running():
		return fmt.Errorf("%s container %s: container is not running", op, id)
	case paused:
		c.State = agent.StatePaused
	default:
		c.State = "running"
	}
	f.notify(c.Pod)
	return nil
}

// Image: the image of the spec the container was created from, with an ID
// and size made from its name.
func (f *fakeDriver) Image(_ context.Context, id, _ string) (api.ContainerImage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.find(id)
	if c == nil {
		return api.ContainerImage{}, fmt.Errorf("image of %s: %w", id, agent.ErrNotFound)
	}
	ref := f.specs[c.Name].Image
	return api.ContainerImage{Repository: ref, Tag: "latest", ImageID: "sha256:" + ref, Size: int64(len(ref))}, nil
}

// Top: one process, the container's name as its command.
func (f *fakeDriver) Top(_ context.Context, id string) (api.ProcessList, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.find(id)
	if c == nil {
		return api.ProcessList{}, fmt.Errorf("top %s: %w", id, agent.ErrNotFound)
	}
	if !c.Running() {
		return api.ProcessList{}, fmt.Errorf("top %s: container is not running", id)
	}
	return api.ProcessList{Titles: []string{"PID", "CMD"}, Processes: [][]string{{"1", c.Name}}}, nil
}

// HasFiles: the container's files were written by Create and are not gone.
func (f *fakeDriver) HasFiles(container string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.secretFiles[container]
}

func (f *fakeDriver) RemovePod(_ context.Context, pod string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{Op: "remove-pod", Pod: pod})
	return nil
}

func (f *fakeDriver) Inspect(_ context.Context, id string) (agent.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.find(id)
	if c == nil {
		return agent.Container{}, fmt.Errorf("inspect container %s: %w", id, agent.ErrNotFound)
	}
	return copyContainer(c), nil
}

func (f *fakeDriver) List(context.Context) ([]agent.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]agent.Container, 0, len(f.containers))
	for _, c := range f.containers {
		out = append(out, copyContainer(c))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (f *fakeDriver) Events(ctx context.Context) (<-chan string, <-chan error) {
	ch := make(chan string, 64)
	errc := make(chan error)
	f.mu.Lock()
	f.sub = ch
	f.mu.Unlock()
	go func() {
		<-ctx.Done()
		f.mu.Lock()
		if f.sub == ch {
			f.sub = nil
		}
		close(ch)
		close(errc)
		f.mu.Unlock()
	}()
	return ch, errc
}

func (f *fakeDriver) Logs(_ context.Context, id string, _ bool, _ int) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.find(id)
	if c == nil {
		return nil, fmt.Errorf("logs of %s: %w", id, agent.ErrNotFound)
	}
	return io.NopCloser(strings.NewReader("hello from " + c.Name + "\n")), nil
}

func (f *fakeDriver) RemoveVolumes(context.Context, string) error { return nil }

// Ping fails while engineDown is set, and the next pingFails times; it
// hangs until its context ends while pingHang is set.
func (f *fakeDriver) Ping(ctx context.Context) error {
	f.mu.Lock()
	f.pings++
	hang := f.pingHang
	fail := f.engineDown || f.pingFails > 0
	if f.pingFails > 0 {
		f.pingFails--
	}
	f.mu.Unlock()
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	if fail {
		return errors.New("engine does not answer")
	}
	return nil
}

// setPing makes Ping hang (hang), or fail its next fails calls.
func (f *fakeDriver) setPing(hang bool, fails int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pingHang, f.pingFails = hang, fails
}

// pingCount is how many times Ping was called.
func (f *fakeDriver) pingCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pings
}

func (f *fakeDriver) setEngineDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.engineDown = down
}

func (f *fakeDriver) Resources(context.Context) (api.ResourceAmounts, error) {
	return api.ResourceAmounts{NanoCPUs: 4e9, MemoryBytes: 8 << 30}, nil
}

// Test controls.

// exit makes the container's process end with code, as if it crashed or finished.
func (f *fakeDriver) exit(pod string, code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.containers[pod]
	if c == nil {
		panic("exit: no container for " + pod)
	}
	c.State, c.ExitCode, c.FinishedAt = "exited", code, time.Now().UTC()
	f.notify(pod)
}

// vanish removes a container behind the agent's back (docker rm -f).
func (f *fakeDriver) vanish(pod string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.containers, pod)
	f.notify(pod)
}

// infraDies stops the infra container of a pod behind the agent's back:
// its app container runs on, without the pod's network.
func (f *fakeDriver) infraDies(pod string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.containers[pod]
	if c == nil {
		panic("infraDies: no container for " + pod)
	}
	c.InfraState, c.IP = "exited", ""
	f.notify(pod)
}

// dropFiles loses the secret and config files of a container, as a host
// reboot empties the tmpfs that holds them.
func (f *fakeDriver) dropFiles(container string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.secretFiles, container)
}

// add puts a pre-existing container on the engine.
func (f *fakeDriver) add(c agent.Container) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cc := copyContainer(&c)
	f.containers[c.Name] = &cc
}

func (f *fakeDriver) setMissing(image string, missing bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.missing[image] = missing
}

func (f *fakeDriver) container(pod string) (agent.Container, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[pod]
	if !ok {
		return agent.Container{}, false
	}
	return copyContainer(c), true
}

// count returns how many times op was called for pod.
func (f *fakeDriver) count(op, pod string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c.Op == op && c.Pod == pod {
			n++
		}
	}
	return n
}

// callsFor returns the recorded calls for pod, in order.
func (f *fakeDriver) callsFor(pod string) []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []call
	for _, c := range f.calls {
		if c.Pod == pod {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeDriver) networks() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.subnets...)
}

// fakeCluster applies commands to a real store the way the raft FSM does
// (encoded, decoded, one Update per command), and registers nodes with a
// fixed pod subnet.
type fakeCluster struct {
	st *state.Store

	mu          sync.Mutex
	idx         uint64
	registerErr error
	// files are what a manager opens for OpenFiles, by digest; queries
	// the asks it got.
	files   map[string][]byte
	queries []string
	// registrations counts RegisterNode calls (heartbeats);
	// everUnreachable is set once one reported the Engine unreachable.
	registrations   int
	everUnreachable bool
}

// heartbeats returns the RegisterNode calls so far, and whether one said
// the Engine is unreachable.
func (c *fakeCluster) heartbeats() (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.registrations, c.everUnreachable
}

// OpenFiles implements agent.Cluster as a manager would: every file it has.
func (c *fakeCluster) OpenFiles(_ context.Context, pod string) (map[string][]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queries = append(c.queries, pod)
	return c.files, nil
}

var _ agent.Cluster = (*fakeCluster)(nil)

func (c *fakeCluster) Apply(_ context.Context, cmd state.Command) (uint64, error) {
	b, err := state.Encode(cmd)
	if err != nil {
		return 0, err
	}
	dec, err := state.Decode(b)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.idx++
	return c.idx, c.st.Update(c.idx, func(tx *state.Txn) error { return tx.Apply(dec) })
}

func (c *fakeCluster) RegisterNode(ctx context.Context, n api.Node) (api.Node, error) {
	c.mu.Lock()
	err := c.registerErr
	c.registrations++
	c.everUnreachable = c.everUnreachable || n.EngineUnreachable
	c.mu.Unlock()
	if err != nil {
		return api.Node{}, err
	}
	n.PodSubnet = "10.213.1.0/24"
	n.Status = api.NodeReady
	n.Heartbeat = time.Now().UTC()
	if _, err := c.Apply(ctx, &state.PutNode{Node: n}); err != nil {
		return api.Node{}, err
	}
	got, _ := c.st.Node(n.Name)
	return got, nil
}

func (f *fakeDriver) SaveImage(context.Context, string) (io.ReadCloser, error) {
	return nil, agent.ErrImageNotFound
}

func (f *fakeDriver) LoadImage(context.Context, io.Reader, string) error { return nil }

// FetchImage: no peers in these tests.
func (c *fakeCluster) FetchImage(context.Context, string) error {
	return errors.New("no peers")
}

// Exec echoes the command line, then stdin, to stdout, and exits 0.
func (f *fakeDriver) Exec(_ context.Context, id string, req api.ExecRequest, stdio api.IO) (int, error) {
	f.mu.Lock()
	c := f.find(id)
	running := c != nil && c.Running()
	f.mu.Unlock()
	if !running {
		return 0, fmt.Errorf("exec in %s: not running", id)
	}
	fmt.Fprintln(stdio.Stdout, strings.Join(req.Cmd, " "))
	if stdio.Stdin != nil {
		if _, err := io.Copy(stdio.Stdout, stdio.Stdin); err != nil {
			return 0, err
		}
	}
	return 0, nil
}

// RunAttached creates the one-off container, "runs" it (printing its
// command) and leaves it exited with code 0.
func (f *fakeDriver) RunAttached(ctx context.Context, pod *api.Pod, spec *api.ServiceSpec, _ bool, stdio api.IO) (int, error) {
	if _, err := f.Create(ctx, pod, spec); err != nil {
		return 0, err
	}
	fmt.Fprintln(stdio.Stdout, strings.Join(spec.Command, " "))
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.containers[pod.Name]
	c.State, c.ExitCode, c.StartedAt, c.FinishedAt = "exited", 0, time.Now().UTC(), time.Now().UTC()
	f.notify(pod.Name)
	return 0, nil
}

// CopyTo records the archive's regular files under dir, by container.
func (f *fakeDriver) CopyTo(_ context.Context, id, dir string, r io.Reader) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.find(id)
	if c == nil {
		return fmt.Errorf("copy to %s: %w", id, agent.ErrNotFound)
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return err
		}
		if f.files == nil {
			f.files = map[string]map[string]string{}
		}
		if f.files[c.ID] == nil {
			f.files[c.ID] = map[string]string{}
		}
		f.files[c.ID][path.Join(dir, h.Name)] = string(b)
	}
}

// RemoveFiles forgets the recorded files at or below paths.
func (f *fakeDriver) RemoveFiles(_ context.Context, id string, paths []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.find(id)
	if c == nil || !c.Running() {
		return fmt.Errorf("remove files in %s: not running", id)
	}
	for name := range f.files[c.ID] {
		for _, p := range paths {
			if name == p || strings.HasPrefix(name, p+"/") {
				delete(f.files[c.ID], name)
			}
		}
	}
	return nil
}

// fileSet returns the recorded files of a pod's container.
func (f *fakeDriver) fileSet(pod string) map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]string{}
	if c := f.containers[pod]; c != nil {
		for k, v := range f.files[c.ID] {
			out[k] = v
		}
	}
	return out
}

// CopyFrom archives the recorded file at p (files only).
func (f *fakeDriver) CopyFrom(ctx context.Context, id, p string) (io.ReadCloser, api.PathStat, error) {
	st, err := f.StatPath(ctx, id, p)
	if err != nil {
		return nil, st, err
	}
	f.mu.Lock()
	content := f.files[f.find(id).ID][p]
	f.mu.Unlock()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: st.Name, Typeflag: tar.TypeReg, Mode: 0o644, Size: st.Size})
	_, _ = tw.Write([]byte(content))
	_ = tw.Close()
	return io.NopCloser(&buf), st, nil
}

// StatPath describes a recorded file.
func (f *fakeDriver) StatPath(_ context.Context, id, p string) (api.PathStat, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.find(id)
	if c == nil {
		return api.PathStat{}, fmt.Errorf("stat %s: %w", id, agent.ErrNotFound)
	}
	content, ok := f.files[c.ID][p]
	if !ok {
		return api.PathStat{}, fmt.Errorf("stat %s:%s: %w", id, p, agent.ErrNotFound)
	}
	return api.PathStat{Name: path.Base(p), Size: int64(len(content)), Mode: 0o644}, nil
}
