// Package agent is the node agent (the kubelet): it watches the pods assigned
// to its node, drives the container engine to match, one goroutine per pod,
// reports pod status, and adopts its running containers after a restart.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// Cluster is what the agent needs from the cluster: proposing commands and
// registering its node (the leader allocates the pod subnet).
type Cluster interface {
	Apply(ctx context.Context, cmd state.Command) (uint64, error)
	RegisterNode(ctx context.Context, n api.Node) (api.Node, error)
	// FetchImage copies an image this node lacks from a node that has it.
	FetchImage(ctx context.Context, ref string) error
	// OpenFiles gets the content of the sealed secrets and configs of a
	// pod this node runs, by digest: from a manager (this node, if it is
	// one).
	OpenFiles(ctx context.Context, pod string) (map[string][]byte, error)
}

// Options tune the agent.
type Options struct {
	Node    string
	Address string
	Labels  map[string]string
	// APIAddr is this node's HTTPS API address, recorded in its node entry.
	APIAddr string
	// Cluster is the cluster's identity (label dev.cluster): containers of
	// other clusters on a shared Engine are never touched.
	Cluster string
	// Resync is the period of a full pass over pods and containers.
	Resync time.Duration
	// Heartbeat is the period of node heartbeats.
	Heartbeat time.Duration
	// MaxBackoff caps the delay between restarts of a crashing container.
	MaxBackoff time.Duration
	// EngineTimeout bounds each probe of the Engine, made every Heartbeat
	// on a loop of its own (default: the heartbeat period, at least 2s);
	// an Engine that fails three probes in a row is reported
	// unreachable, and reachable again at its first answer.
	EngineTimeout time.Duration
	// DrainDelay is how long a running pod that is being deleted keeps
	// running after it left the service endpoints (default 1s; negative:
	// none), so that no new connection reaches a stopping container.
	DrainDelay time.Duration
}

// Agent is the node agent.
type Agent struct {
	st   *state.Store
	c    Cluster
	d    Driver
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	workers map[string]*podWorker
	// waiters are closed at the next kick of their pod (podEvents).
	waiters map[string][]chan struct{}
	wg      sync.WaitGroup

	// engineMu guards what the last probes of the Engine found: the
	// resources it reported last, how many probes in a row failed, and
	// whether it is reported unreachable.
	engineMu    sync.Mutex
	engineRes   api.ResourceAmounts
	engineFails int
	engineDown  bool

	acting  acting    // pods a start or restart is moving (lifecycle.go)
	oneOffs oneOffSet // one-off pods running now (interactive.go)
}

// New returns an agent; it starts nothing.
func New(st *state.Store, c Cluster, d Driver, opts Options, log *slog.Logger) *Agent {
	if opts.Resync == 0 {
		opts.Resync = 10 * time.Second
	}
	if opts.Heartbeat == 0 {
		opts.Heartbeat = 5 * time.Second
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = 10 * time.Second
	}
	if opts.DrainDelay == 0 {
		opts.DrainDelay = time.Second
	}
	if opts.EngineTimeout == 0 {
		opts.EngineTimeout = max(opts.Heartbeat, 2*time.Second)
	}
	return &Agent{
		st: st, c: c, d: d, opts: opts,
		log:     log.With("component", "agent", "node", opts.Node),
		workers: map[string]*podWorker{},
	}
}

// Run registers the node, prepares its pod network and keeps its pods in
// shape until ctx ends. The caller must have waited for the local state to
// catch up with the raft log, or the agent would take every running
// container for an orphan.
func (a *Agent) Run(ctx context.Context) error {
	defer a.wg.Wait()
	if err := a.probeEngine(ctx, true); err != nil && !a.engineAnswered() {
		return fmt.Errorf("read engine resources: %w", err)
	}
	node, err := a.register(ctx)
	if err != nil {
		return err
	}
	if err := a.d.EnsureNetwork(ctx, node.PodSubnet); err != nil {
		return fmt.Errorf("prepare pod network %s: %w", node.PodSubnet, err)
	}
	a.log.Info("node ready", "subnet", node.PodSubnet)

	events, errs := a.d.Events(ctx)
	resync := time.NewTicker(a.opts.Resync)
	defer resync.Stop()
	// Heartbeats go on beside pod work: a report held up by a leader that
	// is gone (until the next election) must not hold up pods. They report
	// what the Engine's probes, on a loop of their own, found last: an
	// Engine that hangs holds up no heartbeat.
	a.wg.Go(func() { a.heartbeats(ctx) })
	a.wg.Go(func() { a.probeEngineLoop(ctx) })

	seen := map[string]uint64{} // pod -> ModifyIndex last handed to its worker
	a.gc(ctx)
	for {
		changed := a.st.Changed()
		a.syncPods(ctx, seen, false)
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case name, ok := <-events:
			if ok {
				a.kick(name)
				continue
			}
			events = nil
		case err, ok := <-errs:
			if ok && ctx.Err() == nil {
				a.log.Warn("container events stream ended; resubscribing", "err", err)
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(time.Second):
				}
				events, errs = a.d.Events(ctx)
			} else if !ok {
				errs = nil
			}
		case <-resync.C:
			a.syncPods(ctx, seen, true)
			a.gc(ctx)
		}
	}
}

// heartbeats reports this node every Heartbeat, each report bounded by
// twice that, until ctx ends.
func (a *Agent) heartbeats(ctx context.Context) {
	tick := time.NewTicker(a.opts.Heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		hctx, cancel := context.WithTimeout(ctx, 2*a.opts.Heartbeat+time.Second)
		if _, err := a.register(hctx); err != nil && ctx.Err() == nil {
			a.log.Warn("heartbeat", "err", err)
		}
		cancel()
	}
}

// register records this node with what the Engine's probes found last.
func (a *Agent) register(ctx context.Context) (api.Node, error) {
	a.engineMu.Lock()
	res, down := a.engineRes, a.engineDown
	a.engineMu.Unlock()
	n, err := a.c.RegisterNode(ctx, api.Node{
		Name: a.opts.Node, Address: a.opts.Address, APIAddr: a.opts.APIAddr, Labels: a.opts.Labels,
		Status: api.NodeReady, Allocatable: res, Load: loadAverage(), EngineUnreachable: down,
	})
	if err != nil {
		return api.Node{}, fmt.Errorf("register node %s: %w", a.opts.Node, err)
	}
	return n, nil
}

// Probing the Engine: its reachability every Heartbeat (a Ping), its
// resources every engineResourcesEvery probes (they change seldom), and
// unreachable only after engineFailures failed probes in a row, so that
// one slow answer does not flip the node (a raft write, an event, a
// scheduler refusal) and back at the next probe.
const (
	engineFailures       = 3
	engineResourcesEvery = 12
)

// probeEngineLoop probes the Engine every Heartbeat until ctx ends, one
// probe at a time, each bounded by EngineTimeout.
func (a *Agent) probeEngineLoop(ctx context.Context) {
	tick := time.NewTicker(a.opts.Heartbeat)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		_ = a.probeEngine(ctx, n%engineResourcesEvery == 0) // logged, recorded
	}
}

// engineAnswered reports whether the Engine ever reported its resources.
func (a *Agent) engineAnswered() bool {
	a.engineMu.Lock()
	defer a.engineMu.Unlock()
	return a.engineRes != (api.ResourceAmounts{})
}

// probeEngine pings the Engine, and reads its resources when readRes is
// set (or they were never read, or it comes back), within EngineTimeout,
// and records what it found. An Engine that does not answer (refused, or
// hanging: its containers may still run) engineFailures times in a row is
// reported unreachable with the resources it reported last; the node is
// alive all the same, so that its pods are not made again elsewhere.
func (a *Agent) probeEngine(ctx context.Context, readRes bool) error {
	a.engineMu.Lock()
	readRes = readRes || a.engineDown || a.engineRes == (api.ResourceAmounts{})
	a.engineMu.Unlock()
	pctx, cancel := context.WithTimeout(ctx, a.opts.EngineTimeout)
	defer cancel()
	err := a.d.Ping(pctx)
	var res api.ResourceAmounts
	if err == nil && readRes {
		res, err = a.d.Resources(pctx)
	}
	a.engineMu.Lock()
	defer a.engineMu.Unlock()
	switch {
	case err == nil:
		if a.engineDown {
			a.log.Info("docker engine answers again")
		}
		if readRes {
			a.engineRes = res
		}
		a.engineFails, a.engineDown = 0, false
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("probe docker engine: %w", ctx.Err())
	}
	a.engineFails++
	if a.engineFails >= engineFailures && !a.engineDown {
		a.log.Warn("docker engine does not answer: reporting it unreachable (no new pods here, the pods here stay)",
			"err", err, "probes", a.engineFails, "timeout", a.opts.EngineTimeout)
		a.engineDown = true
	}
	return fmt.Errorf("probe docker engine: %w", err)
}

// syncPods starts a worker for every pod bound to this node and wakes the
// workers whose pod changed (all of them when full is set).
func (a *Agent) syncPods(ctx context.Context, seen map[string]uint64, full bool) {
	pods := a.st.Pods(state.PodFilter{Node: a.opts.Node})
	present := make(map[string]bool, len(pods))
	for _, p := range pods {
		present[p.Name] = true
		if !full && seen[p.Name] == p.ModifyIndex {
			continue
		}
		seen[p.Name] = p.ModifyIndex
		a.ensureWorker(ctx, p.Name).kick()
	}
	for name := range seen {
		if !present[name] {
			delete(seen, name)
			a.kick(name) // the pod is gone: its worker cleans up and exits
		}
	}
}

func (a *Agent) ensureWorker(ctx context.Context, name string) *podWorker {
	a.mu.Lock()
	defer a.mu.Unlock()
	if w, ok := a.workers[name]; ok {
		return w
	}
	w := &podWorker{a: a, name: name, hint: make(chan struct{}, 1), log: a.log.With("pod", name)}
	a.workers[name] = w
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		w.run(ctx)
		a.mu.Lock()
		if a.workers[name] == w {
			delete(a.workers, name)
		}
		a.mu.Unlock()
		// A new pod of the same name may have been bound while this worker
		// was finishing (and handed the kick meant for it): start its own.
		if p, ok := a.st.Pod(name); ok && p.Node == a.opts.Node && ctx.Err() == nil {
			a.ensureWorker(ctx, name).kick()
		}
	}()
	return w
}

// WaitIdle returns once no pod has a worker on this node: every pod bound
// here is gone from the state and its containers removed (a node that
// leaves waits for it), or when ctx ends.
func (a *Agent) WaitIdle(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		a.mu.Lock()
		n := len(a.workers)
		a.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d pods still being removed: %w", n, ctx.Err())
		case <-tick.C:
		}
	}
}

// kick wakes the worker of a pod, if it has one, and whoever waits on
// podEvents for it. It never blocks.
func (a *Agent) kick(name string) {
	a.mu.Lock()
	w := a.workers[name]
	waiters := a.waiters[name]
	delete(a.waiters, name)
	a.mu.Unlock()
	for _, ch := range waiters {
		close(ch)
	}
	if w != nil {
		w.kick()
	}
}

// podEvents returns a channel closed at the next kick of pod: an event of
// one of its containers, or an action on it.
func (a *Agent) podEvents(pod string) <-chan struct{} {
	ch := make(chan struct{})
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.waiters == nil {
		a.waiters = map[string][]chan struct{}{}
	}
	a.waiters[pod] = append(a.waiters[pod], ch)
	return ch
}

// gc removes managed containers of this node whose pod no longer exists or
// now belongs to another node.
func (a *Agent) gc(ctx context.Context) {
	cs, err := a.d.List(ctx)
	if err != nil {
		a.log.Warn("list containers", "err", err)
		return
	}
	for _, c := range cs {
		if c.Labels[api.LabelNode] != a.opts.Node || c.Pod == "" || !a.ours(c) {
			continue
		}
		if c.Labels[LabelOneOff] == "true" {
			a.gcOneOff(ctx, c) // no pod record by design
			continue
		}
		if p, ok := a.st.Pod(c.Pod); ok && p.Node == a.opts.Node {
			a.mu.Lock()
			_, has := a.workers[c.Pod]
			a.mu.Unlock()
			if !has {
				a.ensureWorker(ctx, c.Pod).kick()
			}
			continue
		}
		a.log.Info("removing orphan container", "container", c.Name)
		if err := a.d.Remove(ctx, c.ID); err != nil {
			a.log.Warn("remove orphan container", "container", c.Name, "err", err)
		}
	}
}

// Logs streams the logs of a pod running on this node.
func (a *Agent) Logs(ctx context.Context, pod, container string, follow bool, tail int) (io.ReadCloser, error) {
	p, ok := a.st.Pod(pod)
	if !ok {
		return nil, fmt.Errorf("logs of %s: no such pod", pod)
	}
	if p.Node != a.opts.Node {
		return nil, fmt.Errorf("logs of %s: pod runs on node %s, not %s", pod, p.Node, a.opts.Node)
	}
	name, err := a.containerOf(p, container)
	if err != nil {
		return nil, fmt.Errorf("logs of %s: %w", pod, err)
	}
	rc, err := a.d.Logs(ctx, name, follow, tail)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("logs of %s: no container yet", pod)
	}
	return rc, err
}

// SaveImage streams an image of this node's engine.
func (a *Agent) SaveImage(ctx context.Context, ref string) (io.ReadCloser, error) {
	return a.d.SaveImage(ctx, ref)
}

// RemoveVolumes removes a project's named volumes on this node.
func (a *Agent) RemoveVolumes(ctx context.Context, project string) error {
	return a.d.RemoveVolumes(ctx, project)
}

// ours reports whether a container belongs to this agent's cluster (old
// containers without the label count as ours).
func (a *Agent) ours(c Container) bool { return api.InCluster(c.Labels, a.opts.Cluster) }

// loadAverage is the host's one-minute load average, 0 where /proc/loadavg
// cannot be read.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _, _ := strings.Cut(string(b), " ")
	v, err := strconv.ParseFloat(f, 64)
	if err != nil {
		return 0
	}
	return v
}

// openFiles fills in the content of spec's sealed secrets and configs
// (its sidecars' too), when it has any: from files when given (a one-off,
// whose files the manager that placed it sent), else from a manager for
// pod. The replicated state holds them sealed, and a node gets the
// content of the pods it runs only. The content lives in the returned
// spec (memory) and in the files the driver writes for the containers.
func (a *Agent) openFiles(ctx context.Context, pod string, files map[string][]byte, spec api.ServiceSpec) (api.ServiceSpec, error) {
	sealed := false
	for _, m := range spec.Files() {
		if m.Content == nil && m.Sealed == nil && m.Digest != "" {
			// A digest without content, sealed or clear: written by a dev
			// that this one does not follow. Never an empty file instead.
			return spec, fmt.Errorf("the content of %s is missing from the state (upgrade dev on every node)", m.Name)
		}
		sealed = sealed || m.NeedsOpening()
	}
	if !sealed {
		return spec, nil
	}
	if files == nil && pod != "" {
		var err error
		if files, err = a.c.OpenFiles(ctx, pod); err != nil {
			return spec, fmt.Errorf("get the secrets and configs of %s: %w", spec.Name, err)
		}
	}
	var missing []string
	spec = spec.MapFiles(func(m api.SecretMount) api.SecretMount {
		if !m.NeedsOpening() {
			return m
		}
		content, ok := files[m.Digest]
		if !ok {
			missing = append(missing, m.Name)
			return m
		}
		m.Content = append([]byte{}, content...) // never nil: opened
		return m
	})
	switch {
	case len(missing) > 0 && pod == "":
		return spec, fmt.Errorf("get the secrets and configs of %s: no content for %s (a one-off gets them from the manager that places it: run it on a manager)", spec.Name, strings.Join(missing, ", "))
	case len(missing) > 0:
		return spec, fmt.Errorf("get the secrets and configs of %s: the manager gave no content for %s", spec.Name, strings.Join(missing, ", "))
	}
	return spec, nil
}
