package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/api"
)

// podPhase renders what a pod is doing, for progress lines.
func podPhase(p api.Pod) string {
	s := p.Status
	switch {
	case p.Deleting:
		return "removing"
	case p.Node == "" && s.Message != "":
		return "pending: " + s.Message
	case p.Node == "":
		return "scheduling"
	}
	switch s.State {
	case api.PodRunning:
		if s.Paused {
			return "paused"
		}
		switch s.Health {
		case api.HealthHealthy:
			return "healthy"
		case api.HealthStarting:
			return "running, waiting for healthy"
		case api.HealthUnhealthy:
			return "unhealthy"
		}
		return "running"
	case api.PodExited:
		return fmt.Sprintf("exited (%d)", s.ExitCode)
	case api.PodFailed:
		return "failed: " + s.Message
	}
	if s.Message != "" {
		return "creating: " + s.Message
	}
	return "creating"
}

// serviceState says whether a service has converged: exactly its replicas of
// pods from the current template, each running (and healthy when it has a
// healthcheck), or completed for a run-once service. err is set when it can
// no longer converge without the user's help.
func serviceState(s api.ServiceSpec, hash string, pods []api.Pod) (done bool, err error) {
	current := 0
	for _, p := range pods {
		if p.Service != s.Name {
			continue
		}
		if p.Deleting || p.SpecHash != hash {
			return false, nil // old pods still going away
		}
		current++
		st := p.Status
		switch st.State {
		case api.PodFailed:
			return false, fmt.Errorf("pod %s failed: %s", p.Name, st.Message)
		case api.PodExited:
			if !api.RestartsAfter(s.RestartPolicy(), st.ExitCode) {
				if st.ExitCode != 0 {
					return false, fmt.Errorf("pod %s exited with code %d; see `dev logs %s`", p.Name, st.ExitCode, s.Name)
				}
				continue // completed
			}
			return false, nil // will be restarted
		case api.PodRunning:
			if hc := s.Healthcheck; hc != nil && !hc.Disable && st.Health != api.HealthHealthy {
				return false, nil
			}
			if !sidecarsUp(s, st) {
				return false, nil
			}
		default:
			return false, nil
		}
	}
	return current == s.Replicas, nil
}

// serviceCreated says whether `dev up --no-start` is done with a service:
// its replicas of pods from the current template placed, each with its
// container created and left stopped (or running: it ran before). Pods of
// another template are not waited for.
func serviceCreated(s api.ServiceSpec, hash string, pods []api.Pod) (bool, error) {
	current := 0
	for _, p := range pods {
		if p.Service != s.Name || p.Deleting || p.SpecHash != hash {
			continue
		}
		current++
		st := p.Status
		switch {
		case st.State == api.PodFailed:
			return false, fmt.Errorf("pod %s failed: %s", p.Name, st.Message)
		case p.Node == "", st.ContainerID == "":
			return false, nil
		case st.State != api.PodExited && st.State != api.PodRunning:
			return false, nil
		}
	}
	return current == s.Replicas, nil
}

// sidecarsUp reports whether every sidecar of s runs in a pod with status
// st (and is healthy where it has a healthcheck), or has completed as its
// restart policy allows.
func sidecarsUp(s api.ServiceSpec, st api.PodStatus) bool {
	for _, sc := range s.Sidecars {
		i := slices.IndexFunc(st.Sidecars, func(c api.ContainerStatus) bool { return c.Name == sc.Name })
		if i < 0 {
			return false
		}
		c := st.Sidecars[i]
		switch c.State {
		case api.PodRunning:
			if hc := sc.Healthcheck; hc != nil && !hc.Disable && c.Health != api.HealthHealthy {
				return false
			}
		case api.PodExited:
			if c.ExitCode != 0 || api.RestartsAfter(sc.RestartPolicy(), c.ExitCode) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// waitProject blocks until every service of p has converged, showing each
// pod's phase, or until ctx ends. hashes are the template hashes to wait
// for by service; a service not in it waits for its spec's Hash (see
// storedProject).
func waitProject(ctx context.Context, c api.Client, p *api.Project, hashes map[string]string, prog progress) error {
	return waitServices(ctx, c, p, hashes, prog, serviceState)
}

// waitServices is waitProject with the test of a service's convergence.
func waitServices(ctx context.Context, c api.Client, p *api.Project, hashes map[string]string, prog progress,
	converged func(s api.ServiceSpec, hash string, pods []api.Pod) (bool, error)) error {
	var index uint64
	for {
		list, err := c.Pods(ctx, api.PodQuery{Project: p.Name, Index: index, Wait: 10 * time.Second})
		if err != nil {
			return fmt.Errorf("watch pods: %w", err)
		}
		index = list.Index
		for _, pod := range list.Pods {
			ph := podPhase(pod)
			prog.Set(pod.Name, ph, false)
		}
		if err := updateFailure(ctx, c, p, hashes); err != nil {
			return err
		}
		allDone := true
		names := make([]string, 0, len(p.Services))
		for _, s := range p.Services {
			names = append(names, s.Name)
		}
		sort.Strings(names)
		for _, name := range names {
			done, err := converged(*p.Service(name), templateHash(p, hashes, name), list.Pods)
			if err != nil {
				return err
			}
			allDone = allDone && done
		}
		if allDone {
			for _, pod := range list.Pods {
				prog.Set(pod.Name, podPhase(pod), true)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// waitGone blocks until none of pods is left in the project (with none
// named: until the project has no pods left), watching with blocking
// queries and showing each pod removing, then removed; or until ctx ends,
// with an error naming the pods left.
func waitGone(ctx context.Context, c podLister, project string, pods []string, prog progress) error {
	var index uint64
	seen := map[string]bool{}
	var left []string
	for {
		list, err := c.Pods(ctx, api.PodQuery{Project: project, Index: index, Wait: 10 * time.Second})
		if err != nil {
			if ctx.Err() != nil && len(left) > 0 {
				return fmt.Errorf("pods %s are still being removed: %w", strings.Join(left, ", "), ctx.Err())
			}
			return fmt.Errorf("watch pods: %w", err)
		}
		index = list.Index
		present := map[string]bool{}
		left = left[:0]
		for _, pod := range list.Pods {
			if len(pods) > 0 && !slices.Contains(pods, pod.Name) {
				continue
			}
			present[pod.Name] = true
			seen[pod.Name] = true
			left = append(left, pod.Name)
			prog.Set(pod.Name, "removing", false)
		}
		for name := range seen {
			if !present[name] {
				prog.Set(name, "removed", true)
			}
		}
		if len(left) == 0 {
			return nil
		}
	}
}

// updateFailure returns an error when the rolling update to p's version of
// a service was paused, or rolled back, because its new pods failed.
func updateFailure(ctx context.Context, c api.Client, p *api.Project, hashes map[string]string) error {
	projects, err := c.Projects(ctx)
	if err != nil {
		return fmt.Errorf("read services: %w", err)
	}
	for _, ps := range projects {
		if ps.Name != p.Name {
			continue
		}
		for _, rc := range ps.Services {
			u := rc.Update
			if p.Service(rc.Service) == nil || u == nil {
				continue
			}
			want := templateHash(p, hashes, rc.Service)
			switch {
			case u.State == api.UpdatePaused && rc.SpecHash == want:
				return fmt.Errorf("service %s: %s", rc.Service, u.Message)
			case (u.State == api.UpdateRollingBack || u.State == api.UpdateRolledBack) && rc.SpecHash != want:
				return fmt.Errorf("service %s: %s", rc.Service, u.Message)
			}
		}
	}
	return nil
}

// templateHash is the hash of the template p's service name waits for.
func templateHash(p *api.Project, hashes map[string]string, name string) string {
	if h, ok := hashes[name]; ok {
		return h
	}
	return p.Service(name).Hash()
}

// storedProject is project name as the cluster stores it, its services
// those keep says, with the hashes of their stored templates. The API
// shows templates redacted (secrets and configs as digests), so their own
// Hash would match no pod.
func storedProject(ctx context.Context, c api.Client, name string, keep func(service string) bool) (*api.Project, map[string]string, error) {
	projects, err := c.Projects(ctx)
	if err != nil {
		return nil, nil, err
	}
	p, hashes := &api.Project{Name: name}, map[string]string{}
	for _, ps := range projects {
		if ps.Name != name {
			continue
		}
		for _, rc := range ps.Services {
			if keep(rc.Service) {
				t := rc.Template
				t.Replicas = rc.Replicas
				p.Services = append(p.Services, t)
				hashes[rc.Service] = rc.SpecHash
			}
		}
	}
	return p, hashes, nil
}

type waitOptions struct {
	project     projectFlags
	downProject bool
}

// NewWaitCommand is `dev wait`, as `docker compose wait`.
func NewWaitCommand(g *globals) *cobra.Command {
	var o waitOptions
	cmd := &cobra.Command{
		Use:   "wait SERVICE...",
		Short: "Block until the services' pods stop, and print their exit codes (as docker compose wait)",
		Long: "Block until every pod of the services (as they are when dev wait starts) has stopped, on\n" +
			"whichever node, printing each one's exit code as it stops; dev wait then exits with the code\n" +
			"of the last pod to stop, as `docker compose wait`. The typical use is a service that runs\n" +
			"once (restart: \"no\", a migration, a job). --down-project then removes the project, as\n" +
			"`dev down`. A pod removed meanwhile is reported and has no exit code.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			project, c, err := o.project.connect(ctx, g, false)
			if err != nil {
				return err
			}
			code, err := waitStopped(ctx, c, project, args, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			if o.downProject {
				if _, err := c.DeleteProject(ctx, project); err != nil && !api.IsNotFound(err) {
					return fmt.Errorf("remove project %s: %w", project, err)
				}
				prog := newProgress(cmd.ErrOrStderr())
				err := waitGone(ctx, c, project, nil, prog)
				prog.Close()
				if err != nil {
					return fmt.Errorf("wait for pods of %s to stop: %w", project, err)
				}
			}
			if code != 0 {
				return &ExitError{Code: code}
			}
			return nil
		},
	}
	o.project.register(cmd)
	cmd.Flags().BoolVar(&o.downProject, "down-project", false, "remove the project (as dev down) once the pods have stopped")
	return cmd
}

// waitStopped blocks until every pod of services (those present at the
// first listing) has stopped (exited, or failed) or is gone, printing each
// as it does, and returns the exit code of the last one to stop. A failed
// pod (it could not run) counts as code 1 when it has none.
func waitStopped(ctx context.Context, c podLister, project string, services []string, out io.Writer) (int, error) {
	var index uint64
	var tracked []string // in name order
	done := map[string]bool{}
	code := 0
	for first := true; ; first = false {
		list, err := c.Pods(ctx, api.PodQuery{Project: project, Index: index, Wait: 30 * time.Second})
		if err != nil {
			return 0, fmt.Errorf("watch pods: %w", err)
		}
		byName := map[string]api.Pod{}
		for _, p := range list.Pods {
			if slices.Contains(services, p.Service) {
				byName[p.Name] = p
			}
		}
		if first {
			has := map[string]bool{}
			for name, p := range byName {
				if !p.Deleting {
					tracked = append(tracked, name)
					has[p.Service] = true
				}
			}
			for _, s := range services {
				if !has[s] {
					return 0, fmt.Errorf("no pods of service %s in project %s; `dev ps -p %s` lists them", s, project, project)
				}
			}
			sort.Strings(tracked)
		}
		index = list.Index
		for _, name := range tracked {
			if done[name] {
				continue
			}
			p, ok := byName[name]
			switch {
			case !ok:
				fmt.Fprintf(out, "pod %s was removed before it stopped\n", name)
			case p.Status.State == api.PodExited:
				code = p.Status.ExitCode
				fmt.Fprintf(out, "pod %s exited with status code %d\n", name, code)
			case p.Status.State == api.PodFailed:
				code = max(p.Status.ExitCode, 1)
				fmt.Fprintf(out, "pod %s failed (%s): status code %d\n", name, p.Status.Message, code)
			default:
				continue
			}
			done[name] = true
		}
		if len(done) == len(tracked) {
			return code, nil
		}
	}
}
