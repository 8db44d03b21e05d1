package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// defaultGrace is the stop grace period when the pod's template is unknown.
const defaultGrace = 10 * time.Second

// podWorker drives one pod's container, one step at a time:
//
//	pod gone or deleting -> stop -> remove -> forget the pod -> exit
//	no container          -> create (or report failed and back off)
//	container of an older template -> remove
//	created               -> start
//	exited                -> restart per restart policy (with backoff), or report exited
//	created or exited, its secret files gone (a reboot) -> remove, to be made again
//	running               -> report running / health / IP
type podWorker struct {
	a    *Agent
	name string
	hint chan struct{}
	log  *slog.Logger

	spec     *api.ServiceSpec // template the container was made from, when known
	restarts int
	backoff  // of the service's container's restarts
	// drainUntil is when a deleting pod, out of the endpoints, may be stopped.
	drainUntil time.Time
	sidecars   map[string]*sidecarState // by sidecar name (sidecars.go)
}

func (w *podWorker) kick() {
	select {
	case w.hint <- struct{}{}:
	default:
	}
}

func (w *podWorker) run(ctx context.Context) {
	if p, ok := w.a.st.Pod(w.name); ok {
		w.restarts = p.Status.Restarts
	}
	for {
		wait, done := w.reconcile(ctx)
		if done || ctx.Err() != nil {
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-w.hint:
			t.Stop()
		case <-t.C:
		}
	}
}

// reconcile takes steps until the container matches the pod or must wait.
// It returns how long to wait at most before the next look, and whether the
// worker is finished.
func (w *podWorker) reconcile(ctx context.Context) (time.Duration, bool) {
	const idle = 30 * time.Second
	for range 8 { // a bounded number of steps per pass
		next, wait, done, err := w.step(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return 0, true
			}
			w.log.Warn("pod step failed", "err", err)
			return time.Second, false
		}
		if done {
			return 0, true
		}
		if !next {
			if wait == 0 {
				wait = idle
			}
			return wait, false
		}
	}
	return 0, false
}

// step performs at most one action. next reports that another step should
// follow at once.
func (w *podWorker) step(ctx context.Context) (next bool, wait time.Duration, done bool, err error) {
	a := w.a
	pod, ok := a.st.Pod(w.name)
	mine := ok && pod.Node == a.opts.Node
	c, ierr := a.d.Inspect(ctx, w.name)
	exists := ierr == nil
	if ierr != nil && !errors.Is(ierr, ErrNotFound) {
		return false, 0, false, fmt.Errorf("inspect: %w", ierr)
	}
	if exists && ((c.Labels[api.LabelNode] != "" && c.Labels[api.LabelNode] != a.opts.Node) || !a.ours(c)) {
		exists = false // another node's or cluster's container on a shared engine: not ours
	}

	// Teardown.
	if !mine || pod.Deleting {
		if exists && c.Running() && ok && pod.Status.State == api.PodRunning && a.opts.DrainDelay > 0 && w.stillServed(pod) {
			// The pod just left the endpoints: give proxies a moment to stop
			// sending it new connections before it is stopped.
			if w.drainUntil.IsZero() {
				w.drainUntil = time.Now().Add(a.opts.DrainDelay)
			}
			if wait := time.Until(w.drainUntil); wait > 0 {
				return false, wait, false, nil
			}
		}
		if stopped, err := w.stopSidecars(ctx, w.name); err != nil || stopped {
			return stopped, 0, false, err
		}
		if exists && c.Running() {
			sig, grace := w.stopParams(pod)
			if err := a.d.Stop(ctx, c.ID, sig, grace); err != nil {
				return false, 0, false, fmt.Errorf("stop: %w", err)
			}
			return true, 0, false, nil
		}
		if exists {
			if err := a.d.Remove(ctx, c.ID); err != nil {
				return false, 0, false, fmt.Errorf("remove: %w", err)
			}
			return true, 0, false, nil
		}
		// The app container is gone: then the sidecars' and the infra
		// container, which held the pod's address until now.
		if err := a.d.RemovePod(ctx, w.name); err != nil {
			return false, 0, false, err
		}
		if ok && mine {
			if _, err := a.c.Apply(ctx, &state.DeletePods{Names: []string{w.name}}); err != nil {
				return false, 0, false, fmt.Errorf("forget pod: %w", err)
			}
		}
		return false, 0, true, nil
	}

	rc, hasRC := a.st.RC(api.RCKey(pod.Project, pod.Service))
	if exists && c.SpecHash != pod.SpecHash {
		// A container of another template holds the name: replace it.
		if err := a.d.Remove(ctx, c.ID); err != nil {
			return false, 0, false, fmt.Errorf("remove outdated container: %w", err)
		}
		return true, 0, false, nil
	}

	neverCreated := pod.Status.ContainerID == "" && hasRC && rc.CreateStopped
	if !exists && pod.Stopped && !neverCreated {
		// Stopped, and its container removed behind our back: nothing is
		// created until the user starts it again. (A pod of `dev up
		// --no-start` gets its container created, not started.)
		return false, 0, false, w.report(ctx, pod, api.PodStatus{State: api.PodExited, Message: StoppedMessage, Restarts: w.restarts})
	}
	if !exists {
		if !hasRC || rc.SpecHash != pod.SpecHash {
			// The template is being replaced; the controller will delete this pod.
			return false, 0, false, nil
		}
		if wait := time.Until(w.notUntil); wait > 0 {
			return false, wait, false, nil
		}
		spec, err := a.openFiles(ctx, pod.Name, nil, rc.Template)
		if err != nil {
			// Pending, not failed: the leader may be changing hands, and a
			// rolling update counts failed pods.
			w.fail(w.a.opts.MaxBackoff)
			return false, time.Until(w.notUntil), false, w.report(ctx, pod, api.PodStatus{State: api.PodPending, Message: err.Error(), Restarts: w.restarts})
		}
		spec.Environment = withDiscoveryEnv(a.st, spec)
		if pod.Status.ContainerID != "" {
			w.restarts++ // the container vanished behind our back
		}
		_, err = a.d.Create(ctx, &pod, &spec)
		if errors.Is(err, ErrImageNotFound) {
			// No registry: copy the image from a node that has it.
			ref := imageRef(spec)
			if ferr := a.c.FetchImage(ctx, ref); ferr == nil {
				_, err = a.d.Create(ctx, &pod, &spec)
			} else {
				w.log.Info("image not available from peers", "image", ref, "err", ferr)
			}
		}
		if err != nil {
			w.fail(w.a.opts.MaxBackoff)
			msg := err.Error()
			if errors.Is(err, ErrImageNotFound) {
				msg = fmt.Sprintf("image %s not found on node %s: build or load it (dev up --build)", spec.Image, a.opts.Node)
			}
			return false, time.Until(w.notUntil), false, w.report(ctx, pod, api.PodStatus{State: api.PodFailed, Message: msg, Restarts: w.restarts})
		}
		w.spec = &spec
		return true, 0, false, nil
	}
	if w.spec == nil && hasRC && rc.SpecHash == c.SpecHash {
		spec := rc.Template
		w.spec = &spec // adopted
	}

	switch {
	case c.Running() && c.InfraState != "" && c.InfraState != "running":
		// The pod's infra container is gone or stopped under a running
		// app container, which has lost the pod's network: the pod starts
		// afresh (as Kubernetes does when a sandbox dies).
		w.log.Warn("the pod's infra container is not running; recreating the pod's container", "infra", c.InfraState)
		if err := a.d.Remove(ctx, c.ID); err != nil {
			return false, 0, false, fmt.Errorf("remove container of a dead pod sandbox: %w", err)
		}
		return true, 0, false, nil // the next step makes it again, counted as a restart
	case c.Running() && pod.Stopped && !a.acting.has(w.name):
		// Stopped by the user, and running again (started behind our back,
		// or the stop reached the record before the container): stop it,
		// its sidecars first.
		if stopped, err := w.stopSidecars(ctx, w.name); err != nil || stopped {
			return stopped, 0, false, err
		}
		sig, grace := w.stopParams(pod)
		if err := a.d.Stop(ctx, c.ID, sig, grace); err != nil {
			return false, 0, false, fmt.Errorf("stop (dev stop): %w", err)
		}
		return true, 0, false, nil
	case c.Running():
		w.ran(c.StartedAt)
		acted, sidecars, err := w.stepSidecars(ctx, pod)
		if err != nil || acted {
			if err != nil {
				w.log.Warn("sidecar", "err", err)
				return false, time.Second, false, nil
			}
			return true, 0, false, nil
		}
		st := api.PodStatus{
			State: api.PodRunning, Health: c.Health, IP: c.IP, ContainerID: c.ID,
			Restarts: w.restarts, StartedAt: c.StartedAt, Sidecars: sidecars, Paused: c.Paused(),
		}
		wait := w.pollInterval()
		for _, sc := range sidecars {
			if sc.State != api.PodRunning {
				wait = time.Second // a sidecar waits out its backoff
			}
		}
		return false, wait, false, w.report(ctx, pod, st)
	case c.State == "created" && !pod.Stopped:
		if filesGone(a.d, w.name, w.spec) {
			return w.recreateForFiles(ctx, c)
		}
		if err := a.d.Start(ctx, c.ID); err != nil {
			w.fail(w.a.opts.MaxBackoff)
			return false, time.Until(w.notUntil), false, w.report(ctx, pod, api.PodStatus{
				State: api.PodFailed, ContainerID: c.ID, Restarts: w.restarts,
				Message: fmt.Sprintf("start container: %v", err),
			})
		}
		return true, 0, false, nil
	default: // exited or dead
		exited := api.PodStatus{
			State: api.PodExited, ContainerID: c.ID, ExitCode: c.ExitCode,
			Restarts: w.restarts, StartedAt: c.StartedAt, Message: c.Error,
		}
		if c.OOMKilled {
			exited.Message = "out of memory"
		}
		// A container the user stopped (`dev stop`) stays stopped whatever
		// the restart policy says (see lifecycle.go); one a start or
		// restart is moving is left to it.
		if pod.Stopped {
			if stopped, err := w.stopSidecars(ctx, w.name); err != nil || stopped {
				return stopped, 0, false, err
			}
			exited.Message = StoppedMessage
			return false, 0, false, w.report(ctx, pod, exited)
		}
		if a.acting.has(w.name) {
			return false, time.Second, false, nil
		}
		if !w.shouldRestart(pod, c.ExitCode) {
			return false, 0, false, w.report(ctx, pod, exited)
		}
		if wait := time.Until(w.notUntil); wait > 0 {
			return false, wait, false, w.report(ctx, pod, exited)
		}
		if filesGone(a.d, w.name, w.spec) {
			return w.recreateForFiles(ctx, c)
		}
		if err := a.d.Start(ctx, c.ID); err != nil {
			w.fail(w.a.opts.MaxBackoff)
			return false, time.Until(w.notUntil), false, fmt.Errorf("restart: %w", err)
		}
		w.restarts++
		w.fail(w.a.opts.MaxBackoff)
		w.log.Info("restarted container", "exit_code", c.ExitCode, "restarts", w.restarts)
		return true, 0, false, nil
	}
}

// filesGone reports whether container, made from spec, bind-mounts secret
// or config files that are no longer on the node: after a host reboot the
// tmpfs that held them is empty, and the container would not start. An
// unknown spec (nil) says nothing.
func filesGone(d Driver, container string, spec *api.ServiceSpec) bool {
	return spec != nil && (len(spec.Secrets) > 0 || len(spec.Configs) > 0) && !d.HasFiles(container)
}

// recreateForFiles removes the pod's container whose files are gone: the
// next step makes it again, which opens and writes them (counted as a
// restart, as any container made again).
func (w *podWorker) recreateForFiles(ctx context.Context, c Container) (bool, time.Duration, bool, error) {
	w.log.Info("secret files gone (host rebooted?): recreating the container")
	if err := w.a.d.Remove(ctx, c.ID); err != nil {
		return false, 0, false, fmt.Errorf("remove container whose secret files are gone: %w", err)
	}
	return true, 0, false, nil
}

func (w *podWorker) shouldRestart(pod api.Pod, exitCode int) bool {
	policy := api.RestartAlways
	if w.spec != nil {
		policy = w.spec.RestartPolicy()
	}
	return restartsAfter(policy, exitCode)
}

// restartsAfter says whether a container that exited with exitCode is
// started again under restart policy (api.RestartsAfter: `dev rm` asks the
// same).
func restartsAfter(policy string, exitCode int) bool { return api.RestartsAfter(policy, exitCode) }

// backoff spaces the restarts of a container that keeps failing.
type backoff struct {
	failures int       // consecutive quick exits
	notUntil time.Time // no restart before this
}

// ran forgets the failures of a container that has run for 10 s since
// started: it is no longer failing quickly.
func (b *backoff) ran(started time.Time) {
	if !started.IsZero() && time.Since(started) > 10*time.Second {
		b.failures = 0
	}
}

// fail doubles the delay before the next restart, from 100 ms up to limit.
func (b *backoff) fail(limit time.Duration) {
	b.notUntil = time.Now().Add(min(100*time.Millisecond<<min(b.failures, 10), limit))
	b.failures++
}

// pollInterval is how often a running pod is looked at without events: its
// health changes come through engine events, so this is only a safety net.
func (w *podWorker) pollInterval() time.Duration {
	if w.spec != nil && w.spec.Healthcheck != nil && w.spec.Healthcheck.Interval != nil {
		return max(time.Duration(*w.spec.Healthcheck.Interval), time.Second)
	}
	return 30 * time.Second
}

func (w *podWorker) stopParams(pod api.Pod) (string, time.Duration) {
	spec := w.spec
	if spec == nil {
		if rc, ok := w.a.st.RC(api.RCKey(pod.Project, pod.Service)); ok {
			spec = &rc.Template
		}
	}
	if spec == nil {
		return "", defaultGrace
	}
	return stopOf(*spec)
}

// stopOf is how a container of spec is stopped: its stop signal (empty:
// the image's) and its grace period (stop_grace_period, else 10 s).
func stopOf(spec api.ServiceSpec) (signal string, grace time.Duration) {
	grace = defaultGrace
	if spec.StopGracePeriod != nil {
		grace = time.Duration(*spec.StopGracePeriod)
	}
	return spec.StopSignal, grace
}

// report writes the pod's status when it differs from what the store has.
func (w *podWorker) report(ctx context.Context, pod api.Pod, st api.PodStatus) error {
	if sameStatus(pod.Status, st) {
		return nil
	}
	_, err := w.a.c.Apply(ctx, &state.PodStatus{Name: pod.Name, Node: w.a.opts.Node, Status: st})
	if err != nil {
		return fmt.Errorf("report status: %w", err)
	}
	return nil
}

func sameStatus(a, b api.PodStatus) bool {
	return a.State == b.State && a.Health == b.Health && a.IP == b.IP && a.Paused == b.Paused &&
		a.ContainerID == b.ContainerID && a.ExitCode == b.ExitCode &&
		a.Restarts == b.Restarts && a.Message == b.Message && a.StartedAt.Equal(b.StartedAt) &&
		slices.Equal(a.Sidecars, b.Sidecars)
}

// withDiscoveryEnv returns the spec's environment plus, for every service of
// its project that has a virtual IP when the pod is created,
// <SVC>_SERVICE_HOST and <SVC>_SERVICE_PORT (Kubernetes' env-var discovery).
// Values the user set win.
func withDiscoveryEnv(st *state.Store, spec api.ServiceSpec) map[string]string {
	env := make(map[string]string, len(spec.Environment)+8)
	for _, rc := range st.RCs(spec.Project) {
		if rc.VIP == "" {
			continue
		}
		prefix := strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(rc.Service))
		env[prefix+"_SERVICE_HOST"] = rc.VIP
		if ports := rc.Template.ServicePorts(); len(ports) > 0 {
			env[prefix+"_SERVICE_PORT"] = strconv.Itoa(int(ports[0].Target))
		}
	}
	for k, v := range spec.Environment {
		env[k] = v
	}
	return env
}

// stillServed reports whether the pod's service goes on (a scale-down, an
// update): its VIP forwards every port to the pod, so the pod must leave
// the endpoints before it stops. A service removed whole (`dev down`) has
// nobody to hand its clients to.
func (w *podWorker) stillServed(pod api.Pod) bool {
	_, ok := w.a.st.RC(api.RCKey(pod.Project, pod.Service))
	return ok
}
