package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// `dev stop|start|restart` act on the containers of pods, on the node that
// runs them, as compose does: stop keeps the container (and the pod record,
// so its replication controller still counts it and creates no
// replacement), start starts it again, restart stops and starts it.
//
// A stopped pod stays stopped although its restart policy says otherwise:
// `dev stop` sets the pod's Stopped field through raft, and the pod worker
// keeps the container of a Stopped pod stopped (and stops it, should it run
// again). `dev start`/`dev restart` clear the field, and so do `dev up`,
// `dev scale` and a rollback of the service (the state machine does), as
// `docker compose up` starts stopped containers. The field is in the
// replicated state, so it outlives an agent restart and the pod's node.

// StoppedMessage is the status message of a pod stopped by `dev stop`.
const StoppedMessage = api.PodStoppedMessage

// Pod actions (kill, pause and unpause: control.go).
const (
	ActionStop    = api.ActionStop
	ActionStart   = api.ActionStart
	ActionRestart = api.ActionRestart
)

// acting holds the pods whose containers a start, restart or kill is
// moving right now: their worker leaves an exited container (the service's
// or a sidecar's) alone meanwhile, rather than start it itself and count
// that as a crash restart, and stops no running container of a stopped
// pod. A mark lasts one action, never longer.
type acting struct {
	mu sync.Mutex
	m  map[string]bool
}

func (s *acting) set(pod string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]bool{}
	}
	if on {
		s.m[pod] = true
	} else {
		delete(s.m, pod)
	}
}

func (s *acting) has(pod string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[pod]
}

// PodAction stops, starts or restarts the container of a pod of this node
// and returns the pod once the agent has reported its new state (or as last
// known after 15s). grace, when not nil, replaces the service's stop grace
// period.
func (a *Agent) PodAction(ctx context.Context, pod, action string, grace *time.Duration) (api.Pod, error) {
	p, rc, err := a.localPod(action, pod)
	if err != nil {
		return api.Pod{}, err
	}
	c, err := a.d.Inspect(ctx, pod)
	missing := errors.Is(err, ErrNotFound)
	if err != nil && !missing {
		return api.Pod{}, fmt.Errorf("%s %s: %w", action, pod, err)
	}
	signal, g := stopOf(rc.Template)
	if grace != nil {
		g = *grace
	}
	setStopped := func(stopped bool) error {
		if p.Stopped == stopped {
			return nil
		}
		if _, err := a.c.Apply(ctx, &state.SetPodStopped{Name: pod, Stopped: stopped}); err != nil {
			return fmt.Errorf("%s %s: record it: %w", action, pod, err)
		}
		return nil
	}

	switch action {
	case ActionStop:
		if missing {
			return api.Pod{}, fmt.Errorf("stop %s: the pod has no container yet (%s); retry once it runs", pod, stateOf(p))
		}
		// Recorded first: from then on the worker keeps it stopped.
		if err := setStopped(true); err != nil {
			return api.Pod{}, err
		}
		if c.Running() {
			if err := a.d.Stop(ctx, c.ID, signal, g); err != nil {
				return api.Pod{}, fmt.Errorf("stop %s: %w", pod, err)
			}
		}
		a.kick(pod)
		return a.awaitPod(ctx, pod, func(p api.Pod) bool {
			return p.Stopped && p.Status.State == api.PodExited && p.Status.ContainerID == c.ID
		})
	case ActionStart, ActionRestart:
		a.acting.set(pod, true)
		err := setStopped(false)
		if err == nil && !missing && !c.Running() && filesGone(a.d, pod, &rc.Template) {
			// Its secret files went with a reboot: the worker makes the
			// container again, with them, rather than start this one.
			if err = a.d.Remove(ctx, c.ID); err == nil {
				missing = true
			}
		}
		if err == nil && !missing && (action == ActionRestart || !c.Running()) {
			if action == ActionRestart && c.Running() {
				err = a.d.Stop(ctx, c.ID, signal, g)
			}
			if err == nil {
				err = a.d.Start(ctx, c.ID)
			}
			if err != nil {
				err = fmt.Errorf("%s %s: %w", action, pod, err)
			}
		}
		a.acting.set(pod, false)
		a.kick(pod) // no container: the worker creates one
		if err != nil {
			return api.Pod{}, err
		}
		return a.awaitPod(ctx, pod, func(p api.Pod) bool {
			if p.Status.State != api.PodRunning {
				return false
			}
			if missing || (action == ActionStart && c.Running()) {
				return true
			}
			return p.Status.ContainerID == c.ID && !p.Status.StartedAt.Equal(c.StartedAt)
		})
	}
	return api.Pod{}, fmt.Errorf("%s %s: unknown action (want stop, start or restart)", action, pod)
}

// awaitPod waits until the store shows the pod satisfying cond, at most 15s;
// on timeout it returns the pod as last known.
func (a *Agent) awaitPod(ctx context.Context, name string, cond func(api.Pod) bool) (api.Pod, error) {
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		changed := a.st.Changed()
		p, ok := a.st.Pod(name)
		if !ok {
			return api.Pod{}, fmt.Errorf("pod %s was removed meanwhile", name)
		}
		if cond(p) {
			return p, nil
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return p, ctx.Err()
			}
			return p, nil
		case <-changed:
		}
	}
}
