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
// A stopped pod must stay stopped although its restart policy says
// otherwise: the agent keeps a "stopped by user" mark per pod, which the pod
// worker honours for an exited container. The mark holds for one container
// and one version of the service's controller: `dev up` (which re-applies
// every service of the project) or `dev scale` of the service lift it and
// start the pod again, as `docker compose up` starts stopped containers. The
// worker reports such a pod as exited with StoppedMessage; that status, kept
// in the replicated store, is how the mark survives an agent restart.

// StoppedMessage is the status message of a pod stopped by `dev stop`.
const StoppedMessage = api.PodStoppedMessage

// Pod actions.
const (
	ActionStop    = "stop"
	ActionStart   = "start"
	ActionRestart = "restart"
)

type stopMark struct {
	container string // ID of the container the user stopped
	rcIndex   uint64 // ModifyIndex of the service's controller at the time
}

// userStops holds the "stopped by user" marks, by pod name.
type userStops struct {
	mu sync.Mutex
	m  map[string]stopMark
}

func (s *userStops) set(pod string, m stopMark) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]stopMark{}
	}
	s.m[pod] = m
}

func (s *userStops) clear(pod string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, pod)
}

func (s *userStops) get(pod string) (stopMark, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.m[pod]
	return m, ok
}

func (s *userStops) snapshot() map[string]stopMark {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]stopMark, len(s.m))
	for k, v := range s.m {
		out[k] = v
	}
	return out
}

// stoppedByUser reports whether the exited container containerID of pod was
// stopped by the user and must stay stopped. A mark that no longer applies
// (another container, the service re-applied or scaled) is dropped.
func (a *Agent) stoppedByUser(pod string, rc api.ReplicationController, hasRC bool, containerID string) bool {
	m, ok := a.stops.get(pod)
	if !ok {
		return false
	}
	if !hasRC || m.container != containerID || rc.ModifyIndex != m.rcIndex {
		a.stops.clear(pod)
		return false
	}
	return true
}

// restoreStops rebuilds the marks of this node's pods from their reported
// statuses, when the agent starts.
func (a *Agent) restoreStops() {
	for _, p := range a.st.Pods(state.PodFilter{Node: a.opts.Node}) {
		if p.Deleting || p.Status.State != api.PodExited || p.Status.Message != StoppedMessage {
			continue
		}
		rc, ok := a.st.RC(api.RCKey(p.Project, p.Service))
		if !ok || rc.ModifyIndex > p.ModifyIndex {
			continue // the service changed since the stop: it runs again
		}
		a.stops.set(p.Name, stopMark{container: p.Status.ContainerID, rcIndex: rc.ModifyIndex})
	}
}

// kickStopped wakes the workers of stopped pods whose mark no longer holds
// (the service was re-applied or scaled), so that they start them again.
func (a *Agent) kickStopped() {
	for pod, m := range a.stops.snapshot() {
		p, ok := a.st.Pod(pod)
		if !ok || p.Node != a.opts.Node {
			a.stops.clear(pod)
			continue
		}
		if rc, ok := a.st.RC(api.RCKey(p.Project, p.Service)); !ok || rc.ModifyIndex != m.rcIndex {
			a.kick(pod)
		}
	}
}

// PodAction stops, starts or restarts the container of a pod of this node
// and returns the pod once the agent has reported its new state (or as last
// known after 15s). grace, when not nil, replaces the service's stop grace
// period.
func (a *Agent) PodAction(ctx context.Context, pod, action string, grace *time.Duration) (api.Pod, error) {
	p, ok := a.st.Pod(pod)
	switch {
	case !ok:
		return api.Pod{}, fmt.Errorf("%s %s: no such pod", action, pod)
	case p.Node != a.opts.Node:
		return api.Pod{}, fmt.Errorf("%s %s: pod runs on node %s, not %s", action, pod, p.Node, a.opts.Node)
	case p.Deleting:
		return api.Pod{}, fmt.Errorf("%s %s: the pod is being removed", action, pod)
	}
	rc, hasRC := a.st.RC(api.RCKey(p.Project, p.Service))
	if !hasRC {
		return api.Pod{}, fmt.Errorf("%s %s: its service %s is being removed", action, pod, p.Service)
	}
	c, err := a.d.Inspect(ctx, pod)
	missing := errors.Is(err, ErrNotFound)
	if err != nil && !missing {
		return api.Pod{}, fmt.Errorf("%s %s: %w", action, pod, err)
	}
	signal, g := rc.Template.StopSignal, defaultGrace
	if rc.Template.StopGracePeriod != nil {
		g = time.Duration(*rc.Template.StopGracePeriod)
	}
	if grace != nil {
		g = *grace
	}
	mark := stopMark{container: c.ID, rcIndex: rc.ModifyIndex}

	switch action {
	case ActionStop:
		if missing {
			return api.Pod{}, fmt.Errorf("stop %s: the pod has no container yet (%s); retry once it runs", pod, stateOf(p))
		}
		a.stops.set(pod, mark) // before the container exits: the worker must not restart it
		if c.Running() {
			if err := a.d.Stop(ctx, c.ID, signal, g); err != nil {
				return api.Pod{}, fmt.Errorf("stop %s: %w", pod, err)
			}
		}
		a.kick(pod)
		return a.awaitPod(ctx, pod, func(p api.Pod) bool {
			return p.Status.State == api.PodExited && p.Status.Message == StoppedMessage && p.Status.ContainerID == c.ID
		})
	case ActionStart, ActionRestart:
		if !missing && (action == ActionRestart || !c.Running()) {
			// A mark meanwhile keeps the worker from starting the exited
			// container itself (and counting that as a crash restart).
			a.stops.set(pod, mark)
			var err error
			if action == ActionRestart && c.Running() {
				err = a.d.Stop(ctx, c.ID, signal, g)
			}
			if err == nil {
				err = a.d.Start(ctx, c.ID)
			}
			a.stops.clear(pod)
			if err != nil {
				a.kick(pod)
				return api.Pod{}, fmt.Errorf("%s %s: %w", action, pod, err)
			}
		}
		a.stops.clear(pod)
		a.kick(pod) // no container: the worker creates one
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
