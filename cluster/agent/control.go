package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// `dev kill`, `dev pause|unpause` and `dev top` act on the running
// containers of a pod of this node: the service's container and its
// sidecars' (a pod is what a compose user calls the service's container;
// its sidecars are the containers of the services declared with
// network_mode: service:X, which `docker compose kill|pause|top` without a
// service reach too). The infra container, which only holds the pod's
// network, is left alone.
//
// Kill follows the Engine's rule for `docker kill` and the restart policy:
// SIGKILL, or the container's stop signal (stop_signal, else SIGTERM), is a
// stop that no restart policy undoes, so the pod is recorded stopped as
// `dev stop` does (`dev start` or `dev up` bring it back, as after `docker
// compose kill`); any other signal is the process's to handle (a reload),
// and should it exit from it, its restart policy applies.

// Kill, pause and unpause: the pod actions of this file.
const (
	ActionKill    = api.ActionKill
	ActionPause   = api.ActionPause
	ActionUnpause = api.ActionUnpause
)

// podContainer is one running container of a pod: its name in the pod
// (the service's, or a sidecar's) and the engine's view of it.
type podContainer struct {
	name string
	c    Container
}

// RefusedError is a pod action that the pod's state refuses: no such pod,
// a pod of another node, one being removed, one not running. It is the
// caller's to change, not a failure of the Engine; its message says what
// to do. Callers classify it by behaviour (Refused, NotFound) with
// errors.As.
type RefusedError struct {
	missing bool
	err     error
}

func (e *RefusedError) Error() string { return e.err.Error() }
func (e *RefusedError) Unwrap() error { return e.err }

// Refused reports that the pod's state refused the action.
func (e *RefusedError) Refused() bool { return true }

// NotFound reports whether the pod does not exist.
func (e *RefusedError) NotFound() bool { return e.missing }

func refused(missing bool, format string, a ...any) error {
	return &RefusedError{missing: missing, err: fmt.Errorf(format, a...)}
}

// localPod returns a pod of this node that is not being removed, and its
// controller: the checks every pod action (stop, start, restart, kill,
// pause, top) makes first.
func (a *Agent) localPod(action, pod string) (api.Pod, api.ReplicationController, error) {
	p, ok := a.st.Pod(pod)
	switch {
	case !ok:
		return p, api.ReplicationController{}, refused(true, "%s %s: no such pod", action, pod)
	case p.Node != a.opts.Node:
		return p, api.ReplicationController{}, refused(false, "%s %s: pod runs on node %s, not %s", action, pod, p.Node, a.opts.Node)
	case p.Deleting:
		return p, api.ReplicationController{}, refused(false, "%s %s: the pod is being removed", action, pod)
	}
	rc, ok := a.st.RC(api.RCKey(p.Project, p.Service))
	if !ok {
		return p, rc, refused(false, "%s %s: its service %s is being removed", action, pod, p.Service)
	}
	return p, rc, nil
}

// runningContainers lists the pod's running containers, sidecars first
// (they go before the service's container, as a pod is stopped), the
// service's last. None running is an error that says what to do.
func (a *Agent) runningContainers(ctx context.Context, action string, p api.Pod, rc api.ReplicationController) ([]podContainer, error) {
	names := make([]string, 0, 1+len(rc.Template.Sidecars))
	for _, sc := range rc.Template.Sidecars {
		names = append(names, sc.Name)
	}
	names = append(names, p.Service)
	var out []podContainer
	for _, n := range names {
		id := p.Name
		if n != p.Service {
			id = api.SidecarContainer(p.Name, n)
		}
		c, err := a.d.Inspect(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", action, p.Name, err)
		}
		if c.Running() {
			out = append(out, podContainer{name: n, c: c})
		}
	}
	if len(out) == 0 {
		return nil, refused(false, "%s %s: the pod is not running (%s); start it with `dev start %s`", action, p.Name, stateOf(p), p.Service)
	}
	return out, nil
}

// KillPod sends signal (api.NormalizeSignal; empty: SIGKILL) to the running
// containers of a pod of this node and returns the pod: once the agent has
// reported it exited when the signal stops it (see above), as it is
// otherwise.
//
// A signal that stops holds the pod's worker off (acting) from before it
// is sent until the service's container has exited, at most the service's
// stop grace period: the worker neither restarts what exits meanwhile nor
// stops gracefully what still runs, so the exit is the signal's (137 for
// SIGKILL). Only then is the pod recorded stopped. A process that outlives
// the wait (one that ignores SIGTERM, as `docker compose kill -s TERM`
// leaves it) runs on, not stopped; should it exit later, its restart
// policy applies.
func (a *Agent) KillPod(ctx context.Context, pod, signal string) (api.Pod, error) {
	sig, err := api.NormalizeSignal(signal)
	if err != nil {
		return api.Pod{}, fmt.Errorf("kill %s: %w", pod, err)
	}
	p, rc, err := a.localPod(ActionKill, pod)
	if err != nil {
		return api.Pod{}, err
	}
	stops := api.StopsContainer(sig, rc.Template.StopSignal)
	if stops {
		a.acting.set(pod, true)
		defer a.acting.set(pod, false)
	}
	cs, err := a.runningContainers(ctx, ActionKill, p, rc)
	if err != nil {
		return api.Pod{}, err
	}
	var errs []error
	for _, pc := range cs {
		if err := a.d.Kill(ctx, pc.c.ID, sig); err != nil {
			errs = append(errs, fmt.Errorf("kill %s: %s: %w", pod, pc.name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		a.kick(pod)
		return api.Pod{}, err
	}
	a.log.Info("killed pod", "pod", pod, "signal", sig, "stops", stops)
	if !stops {
		a.kick(pod)
		got, _ := a.st.Pod(pod)
		return got, nil
	}
	// The service's container when it ran, else the sidecars signalled.
	main := cs[len(cs)-1]
	wait := cs
	if main.name == p.Service {
		wait = cs[len(cs)-1:]
	}
	_, grace := stopOf(rc.Template)
	if dl, ok := ctx.Deadline(); ok {
		grace = min(grace, time.Until(dl)/2) // time left to record it and answer
	}
	exited, err := a.awaitExit(ctx, pod, wait, grace)
	if err != nil {
		a.kick(pod)
		return api.Pod{}, fmt.Errorf("kill %s: %w", pod, err)
	}
	if !exited {
		a.log.Info("killed pod runs on: the process outlived the signal", "pod", pod, "signal", sig, "waited", grace)
		a.kick(pod)
		got, _ := a.st.Pod(pod)
		return got, nil
	}
	if !p.Stopped {
		// From now on the worker restarts nothing.
		if _, err := a.c.Apply(ctx, &state.SetPodStopped{Name: pod, Stopped: true}); err != nil {
			a.kick(pod)
			return api.Pod{}, fmt.Errorf("kill %s: record it stopped: %w", pod, err)
		}
	}
	a.acting.set(pod, false)
	a.kick(pod)
	if main.name != p.Service {
		got, _ := a.st.Pod(pod)
		return got, nil
	}
	return a.awaitPod(ctx, pod, func(p api.Pod) bool {
		return p.Stopped && p.Status.State == api.PodExited && p.Status.ContainerID == main.c.ID
	})
}

// awaitExit waits until none of cs runs any more, at most wait; it reports
// whether they all exited. It looks again on every event of the pod's
// containers, and every second should an event be lost.
func (a *Agent) awaitExit(ctx context.Context, pod string, cs []podContainer, wait time.Duration) (bool, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		changed := a.podEvents(pod)
		running := false
		for _, pc := range cs {
			c, err := a.d.Inspect(ctx, pc.c.ID)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return false, fmt.Errorf("inspect %s: %w", pc.name, err)
			}
			running = running || c.Running()
		}
		if !running {
			return true, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-timer.C:
			return false, nil
		case <-changed:
		case <-time.After(time.Second):
		}
	}
}

// PausePod freezes (pause true) or thaws the running containers of a pod
// of this node, as `docker pause|unpause`, and returns the pod once the
// agent has reported it so (or as last known after 15 s). The pod stays
// running for its controller, its service and `dev stop`.
func (a *Agent) PausePod(ctx context.Context, pod string, pause bool) (api.Pod, error) {
	action, op := ActionUnpause, a.d.Unpause
	if pause {
		action, op = ActionPause, a.d.Pause
	}
	p, rc, err := a.localPod(action, pod)
	if err != nil {
		return api.Pod{}, err
	}
	cs, err := a.runningContainers(ctx, action, p, rc)
	if err != nil {
		return api.Pod{}, err
	}
	var errs []error
	for _, pc := range cs {
		if pc.c.Paused() == pause {
			continue
		}
		if err := op(ctx, pc.c.ID); err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %s: %w", action, pod, pc.name, err))
		}
	}
	a.kick(pod)
	if err := errors.Join(errs...); err != nil {
		return api.Pod{}, err
	}
	return a.awaitPod(ctx, pod, func(p api.Pod) bool {
		if p.Status.State != api.PodRunning || p.Status.Paused != pause {
			return false
		}
		for _, sc := range p.Status.Sidecars {
			if sc.State == api.PodRunning && sc.Paused != pause {
				return false
			}
		}
		return true
	})
}

// TopPod lists the processes of the running containers of a pod of this
// node (`dev top`): the service's first, then its sidecars'.
func (a *Agent) TopPod(ctx context.Context, pod string) (api.PodTop, error) {
	p, rc, err := a.localPod("top", pod)
	if err != nil {
		return api.PodTop{}, err
	}
	cs, err := a.runningContainers(ctx, "top", p, rc)
	if err != nil {
		return api.PodTop{}, err
	}
	out := api.PodTop{Pod: p.Name, Service: p.Service, Node: p.Node}
	// The service's container first: it is what the pod is.
	cs = append(cs[len(cs)-1:], cs[:len(cs)-1]...)
	for _, pc := range cs {
		procs, err := a.d.Top(ctx, pc.c.ID)
		if errors.Is(err, ErrNotFound) {
			continue // gone meanwhile
		}
		if err != nil {
			return api.PodTop{}, fmt.Errorf("top %s: %s: %w", pod, pc.name, err)
		}
		out.Containers = append(out.Containers, api.ContainerTop{Container: pc.name, ProcessList: procs})
	}
	return out, nil
}

// PodImages lists the images of the containers of a pod of this node
// (`dev images`): the service's first, then its sidecars', running or not;
// a container that is not there (not made yet, or removed) is left out.
func (a *Agent) PodImages(ctx context.Context, pod string) (api.PodImages, error) {
	p, rc, err := a.localPod("images", pod)
	if err != nil {
		return api.PodImages{}, err
	}
	out := api.PodImages{Pod: p.Name, Service: p.Service, Node: p.Node, Containers: []api.ContainerImage{}}
	specs := append([]api.ServiceSpec{rc.Template}, rc.Template.Sidecars...)
	for i, s := range specs {
		n, id := p.Service, p.Name
		if i > 0 {
			n, id = s.Name, api.SidecarContainer(p.Name, s.Name)
		}
		img, err := a.d.Image(ctx, id, s.Image)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return api.PodImages{}, fmt.Errorf("images %s: %s: %w", pod, n, err)
		}
		img.Container = n
		out.Containers = append(out.Containers, img)
	}
	return out, nil
}
