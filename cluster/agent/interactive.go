package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/devhq/dev/cluster/api"
)

// Labels of one-off pods (`dev run`). Their containers carry the usual
// dev.* labels (dev.pod is the one-off pod's name) but have no pod record in
// the cluster state: the replication controllers never see them, and the
// agent that runs one is the only one that knows it.
const (
	// LabelOneOff marks the container of a one-off pod.
	LabelOneOff = "dev.oneoff"
	// LabelRm marks a one-off container to be removed once it exits.
	LabelRm = "dev.rm"
)

// Exec runs a command in the running container of a pod of this node.
func (a *Agent) Exec(ctx context.Context, pod string, req api.ExecRequest, stdio api.IO) (int, error) {
	p, ok := a.st.Pod(pod)
	if !ok {
		return 0, fmt.Errorf("exec in %s: no such pod", pod)
	}
	if p.Node != a.opts.Node {
		return 0, fmt.Errorf("exec in %s: pod runs on node %s, not %s", pod, p.Node, a.opts.Node)
	}
	name, err := a.containerOf(p, req.Container)
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", pod, err)
	}
	c, err := a.d.Inspect(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return 0, fmt.Errorf("exec in %s: the pod has no container %s yet (%s)", pod, name, stateOf(p))
	}
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", pod, err)
	}
	if !c.Running() {
		return 0, fmt.Errorf("exec in %s: the pod is not running (%s); start it with `dev start %s`", pod, c.State, p.Service)
	}
	if c.Paused() {
		return 0, fmt.Errorf("exec in %s: the pod is paused; unpause it with `dev unpause %s`", pod, p.Service)
	}
	return a.d.Exec(ctx, c.ID, req, stdio)
}

func stateOf(p api.Pod) string {
	if p.Status.State == "" {
		return api.PodPending
	}
	return p.Status.State
}

// RunOneOff runs a one-off pod of a service on this node, as `docker compose
// run` does: a container from the service's template (with the request's
// command, environment, user...), attached to stdio, on the pod network with
// the cluster DNS. It has no pod record, so no replication controller counts
// or replaces it and the agent neither restarts nor adopts it. When the
// session ends early (the client went away) the container is stopped; with
// req.Rm it is removed when the session ends.
func (a *Agent) RunOneOff(ctx context.Context, project, service string, req api.RunRequest, stdio api.IO) (int, error) {
	rc, ok := a.st.RC(api.RCKey(project, service))
	if !ok {
		return 0, fmt.Errorf("run %s: no service %s in project %s", service, service, project)
	}
	name := req.Name
	if name == "" {
		name = api.OneOffName(project, service)
	}
	// The name must be a one-off's: creating the container replaces any
	// container of that name.
	if err := api.CheckOneOffName(project, service, name); err != nil {
		return 0, fmt.Errorf("run %s: %w", service, err)
	}
	spec, err := a.openFiles(ctx, "", req.Files, rc.Template)
	if err != nil {
		return 0, fmt.Errorf("run %s: %w", service, err)
	}
	spec.Environment = withDiscoveryEnv(a.st, spec)
	for _, kv := range req.Env {
		k, v, _ := strings.Cut(kv, "=")
		spec.Environment[k] = v
	}
	if req.Cmd != nil {
		spec.Command = req.Cmd
	}
	if req.Entrypoint != nil {
		spec.Entrypoint = req.Entrypoint
	}
	if req.User != "" {
		spec.User = req.User
	}
	if req.WorkingDir != "" {
		spec.WorkingDir = req.WorkingDir
	}
	spec.ContainerName = ""
	spec.Healthcheck = nil // nothing waits for a one-off's health
	labels := map[string]string{LabelOneOff: "true"}
	if req.Rm {
		labels[LabelRm] = "true"
	}
	pod := &api.Pod{
		Name: name, Project: project, Service: service, Labels: labels, SpecHash: rc.SpecHash,
	}

	a.oneOffs.add(name)
	defer a.oneOffs.remove(name)
	defer func() {
		// The session is over. A container still running lost its client
		// (it went away): stop it, as `docker compose run` passes ^C on.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if c, err := a.d.Inspect(cctx, name); err == nil && c.Running() {
			signal, grace := stopOf(spec)
			if err := a.d.Stop(cctx, c.ID, signal, grace); err != nil {
				a.log.Warn("stop one-off container", "pod", name, "err", err)
			}
		}
		if req.Rm {
			if err := a.d.Remove(cctx, name); err != nil {
				a.log.Warn("remove one-off container", "pod", name, "err", err)
			}
		}
	}()
	code, err := a.d.RunAttached(ctx, pod, &spec, req.Tty, stdio)
	if errors.Is(err, ErrImageNotFound) {
		ref := imageRef(spec)
		if ferr := a.c.FetchImage(ctx, ref); ferr == nil {
			code, err = a.d.RunAttached(ctx, pod, &spec, req.Tty, stdio)
		} else {
			err = fmt.Errorf("image %s is not on node %s nor on its peers (%v): build or load it (dev up --build): %w", spec.Image, a.opts.Node, ferr, err)
		}
	}
	return code, err
}

// oneOffSet is the set of one-off pods this agent is running now: gc leaves
// their containers alone.
type oneOffSet struct {
	mu    sync.Mutex
	names map[string]bool
}

func (s *oneOffSet) add(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.names == nil {
		s.names = map[string]bool{}
	}
	s.names[name] = true
}

func (s *oneOffSet) remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.names, name)
}

func (s *oneOffSet) has(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.names[name]
}

// gcOneOff decides about a one-off container gc found: one of this agent's
// live sessions stays; one left by a session that ended without cleaning up
// (the agent restarted) is removed when it asked for --rm or when its
// project is gone (`dev down`); one kept with --rm=false stays otherwise,
// like `docker compose run --rm=false`.
func (a *Agent) gcOneOff(ctx context.Context, c Container) {
	if a.oneOffs.has(c.Pod) {
		return
	}
	_, projectExists := a.st.Project(c.Project)
	if c.Labels[LabelRm] != "true" && projectExists {
		return
	}
	a.log.Info("removing one-off container", "container", c.Name)
	if err := a.d.Remove(ctx, c.ID); err != nil {
		a.log.Warn("remove one-off container", "container", c.Name, "err", err)
	}
}
