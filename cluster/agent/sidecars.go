package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/devhq/dev/cluster/api"
)

// Sidecars (a compose service with `network_mode: service:X`) are more
// containers of X's pods: made in the pod's namespaces once its service's
// container exists, restarted per their own restart policy, stopped with
// the pod (`dev stop`, removal) before the service's container, and removed
// with the pod's infra container.

// sidecarState is the pod worker's memory of one sidecar container.
type sidecarState struct {
	restarts int
	backoff
}

func (w *podWorker) sidecarSpecs() []api.ServiceSpec {
	if w.spec == nil {
		return nil
	}
	return w.spec.Sidecars
}

func (w *podWorker) sidecar(name string) *sidecarState {
	if w.sidecars == nil {
		w.sidecars = map[string]*sidecarState{}
	}
	s, ok := w.sidecars[name]
	if !ok {
		s = &sidecarState{}
		w.sidecars[name] = s
	}
	return s
}

// stepSidecars takes at most one step towards every sidecar of the pod
// running: it returns acted when it did something (another step follows),
// and the sidecars' states to report otherwise. A sidecar that cannot be
// made or started is reported failed and tried again after a backoff; only
// an engine that cannot be asked is an error.
func (w *podWorker) stepSidecars(ctx context.Context, pod api.Pod) (acted bool, states []api.ContainerStatus, err error) {
	a := w.a
	for _, spec := range w.sidecarSpecs() {
		name := api.SidecarContainer(pod.Name, spec.Name)
		s := w.sidecar(spec.Name)
		st := api.ContainerStatus{Name: spec.Name, State: api.PodPending, Restarts: s.restarts}
		c, ierr := a.d.Inspect(ctx, name)
		missing := errors.Is(ierr, ErrNotFound)
		switch {
		case ierr != nil && !missing:
			return false, nil, fmt.Errorf("inspect sidecar %s: %w", spec.Name, ierr)
		case !missing && c.SpecHash != pod.SpecHash:
			if err := a.d.Remove(ctx, c.ID); err != nil {
				return false, nil, fmt.Errorf("remove outdated sidecar %s: %w", spec.Name, err)
			}
			return true, nil, nil
		case missing:
			if wait := time.Until(s.notUntil); wait > 0 {
				states = append(states, st)
				continue
			}
			// An adopted pod's spec is the state's, its files sealed. Not
			// getting them is pending (the leader may be changing hands),
			// not failed.
			state := api.PodPending
			spec, err := a.openFiles(ctx, pod.Name, nil, spec)
			if err == nil {
				state = api.PodFailed
				spec.Environment = withDiscoveryEnv(a.st, spec)
				var id string
				id, err = a.d.CreateSidecar(ctx, &pod, &spec)
				if errors.Is(err, ErrImageNotFound) {
					if ferr := a.c.FetchImage(ctx, imageRef(spec)); ferr == nil {
						id, err = a.d.CreateSidecar(ctx, &pod, &spec)
					}
				}
				if err == nil {
					err = a.d.Start(ctx, id)
				}
			}
			if err != nil {
				s.fail(w.a.opts.MaxBackoff)
				w.log.Warn("sidecar not made", "sidecar", spec.Name, "err", err)
				st.State = state
				states = append(states, st)
				continue
			}
			return true, nil, nil
		case c.Running():
			s.ran(c.StartedAt)
			st.State, st.Health, st.Paused = api.PodRunning, c.Health, c.Paused()
		default: // created, exited or dead
			st.State, st.ExitCode = api.PodExited, c.ExitCode
			// Not while an action moves the pod (`dev kill` waits for its
			// exits before it records the pod stopped).
			restart := (c.State == "created" || restartsAfter(spec.RestartPolicy(), c.ExitCode)) && !a.acting.has(w.name)
			if restart && time.Until(s.notUntil) <= 0 {
				if filesGone(a.d, name, &spec) {
					// Made again at the next step, with its files.
					w.log.Info("secret files gone (host rebooted?): recreating the container", "sidecar", spec.Name)
					if err := a.d.Remove(ctx, c.ID); err != nil {
						return false, nil, fmt.Errorf("remove sidecar %s whose secret files are gone: %w", spec.Name, err)
					}
					if c.State != "created" {
						s.restarts++
					}
					return true, nil, nil
				}
				if err := a.d.Start(ctx, c.ID); err != nil {
					s.fail(w.a.opts.MaxBackoff)
					w.log.Warn("sidecar not started", "sidecar", spec.Name, "err", err)
					st.State = api.PodFailed
					states = append(states, st)
					continue
				}
				if c.State != "created" {
					s.restarts++
					s.fail(w.a.opts.MaxBackoff)
				}
				return true, nil, nil
			}
		}
		states = append(states, st)
	}
	return false, states, nil
}

// stopSidecars stops the pod's running sidecars, each with its own stop
// signal and grace: before the service's container, as a pod is stopped
// or removed. It reports whether it stopped one.
func (w *podWorker) stopSidecars(ctx context.Context, pod string) (bool, error) {
	for _, spec := range w.sidecarSpecs() {
		c, err := w.a.d.Inspect(ctx, api.SidecarContainer(pod, spec.Name))
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("inspect sidecar %s: %w", spec.Name, err)
		}
		if !c.Running() {
			continue
		}
		signal, grace := stopOf(spec)
		if err := w.a.d.Stop(ctx, c.ID, signal, grace); err != nil {
			return false, fmt.Errorf("stop sidecar %s: %w", spec.Name, err)
		}
		return true, nil
	}
	return false, nil
}

// imageRef is the image a container is made from: the resolved ID when
// known.
func imageRef(spec api.ServiceSpec) string {
	if spec.ImageID != "" {
		return spec.ImageID
	}
	return spec.Image
}

// containerOf is the Docker container of a pod's container named container:
// the service's own for "" or the service's name, else a sidecar's.
func (a *Agent) containerOf(p api.Pod, container string) (string, error) {
	if container == "" || container == p.Service {
		return p.Name, nil
	}
	names := []string{p.Service}
	if rc, ok := a.st.RC(api.RCKey(p.Project, p.Service)); ok {
		for _, sc := range rc.Template.Sidecars {
			if sc.Name == container {
				return api.SidecarContainer(p.Name, container), nil
			}
			names = append(names, sc.Name)
		}
	}
	return "", fmt.Errorf("the pod has no container %s; its containers: %s", container, strings.Join(names, ", "))
}
