package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
)

var (
	warnMu   sync.Mutex
	warnings []string
)

// warn logs a problem that does not invalidate the figures (most are
// cleanup troubles) and keeps it for the summary.
func warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	log.Printf("warning: %s", msg)
	warnMu.Lock()
	defer warnMu.Unlock()
	warnings = append(warnings, msg)
}

// pollInterval is how often the Engine (or a port) is asked whether the work is done.
const pollInterval = 50 * time.Millisecond

// labelScheme says how a tool labels its containers: the project label and
// the service label (whose value may carry a "<project>_" prefix, as swarm's do).
type labelScheme struct {
	project string
	service string
	// trimProject strips "<project>_" from the service label's value.
	trimProject bool
}

// ctr is one container of a project as the Engine lists it.
type ctr struct {
	ID      string
	Name    string
	Service string
	State   string // running, created, exited...
	Health  string // "", starting, healthy, unhealthy
}

func (c ctr) ready(health bool) bool {
	return c.State == "running" && (!health || c.Health == "healthy")
}

// listContainers lists the containers of project (all states when all is set).
func listContainers(ctx context.Context, dc *client.Client, ls labelScheme, project string, all bool) ([]ctr, error) {
	cs, err := dc.ContainerList(ctx, container.ListOptions{
		All:     all,
		Filters: filters.NewArgs(filters.Arg("label", ls.project+"="+project)),
	})
	if err != nil {
		return nil, fmt.Errorf("list containers of %s: %w", project, err)
	}
	out := make([]ctr, 0, len(cs))
	for _, c := range cs {
		svc := c.Labels[ls.service]
		if ls.trimProject {
			svc = strings.TrimPrefix(svc, project+"_")
		}
		name := ""
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		out = append(out, ctr{ID: c.ID, Name: name, Service: svc, State: c.State, Health: healthOf(c.Status)})
	}
	return out, nil
}

// healthOf reads the health from the Engine's status text ("Up 2 seconds (healthy)").
func healthOf(status string) string {
	switch {
	case strings.Contains(status, "(healthy)"):
		return "healthy"
	case strings.Contains(status, "(health: starting)"):
		return "starting"
	case strings.Contains(status, "(unhealthy)"):
		return "unhealthy"
	}
	return ""
}

// converged reports whether cs holds exactly the replicas w asks for, each
// running (and healthy when w has a healthcheck), and a short description
// of what is missing otherwise.
func converged(cs []ctr, w *workload) (bool, string) {
	ready := map[string]int{}
	total := 0
	for _, c := range cs {
		if c.State == "running" {
			total++
		}
		if c.ready(w.Health) {
			ready[c.Service]++
		}
	}
	var missing []string
	for _, s := range w.Services {
		if ready[s.Name] != s.Replicas {
			missing = append(missing, fmt.Sprintf("%s %d/%d", s.Name, ready[s.Name], s.Replicas))
		}
	}
	if len(missing) == 0 && total == w.total() {
		return true, ""
	}
	if len(missing) > 5 {
		missing = append(missing[:5], "...")
	}
	return false, fmt.Sprintf("%d running (want %d); not ready: %s", total, w.total(), strings.Join(missing, ", "))
}

// waitUntil calls check every pollInterval until it reports done, fails, or
// ctx ends; the error then carries check's last status.
func waitUntil(ctx context.Context, what string, check func(context.Context) (bool, string, error)) error {
	last := ""
	for {
		done, status, err := check(ctx)
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if err == nil && done {
			return nil
		}
		if status != "" {
			last = status
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last seen: %s)", what, ctx.Err(), last)
		case <-time.After(pollInterval):
		}
	}
}

// waitContainers waits until the Engine lists w's containers converged.
func waitContainers(ctx context.Context, dc *client.Client, ls labelScheme, w *workload) error {
	return waitUntil(ctx, "wait for "+w.Project+" to run", func(ctx context.Context) (bool, string, error) {
		cs, err := listContainers(ctx, dc, ls, w.Project, false)
		if err != nil {
			return false, "", err
		}
		ok, status := converged(cs, w)
		return ok, status, nil
	})
}

// waitGone waits until the Engine lists no container of project, in any state.
func waitGone(ctx context.Context, dc *client.Client, ls labelScheme, project string) error {
	return waitUntil(ctx, "wait for the containers of "+project+" to go", func(ctx context.Context) (bool, string, error) {
		cs, err := listContainers(ctx, dc, ls, project, true)
		if err != nil {
			return false, "", err
		}
		return len(cs) == 0, fmt.Sprintf("%d containers left", len(cs)), nil
	})
}

// removeContainers force-removes every container matching the label filter.
func removeContainers(ctx context.Context, dc *client.Client, label string) error {
	cs, err := dc.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", label))})
	if err != nil {
		return fmt.Errorf("list containers %s: %w", label, err)
	}
	errs := make(chan error, len(cs))
	for _, c := range cs {
		go func() {
			err := dc.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
			if err != nil && !cerrdefs.IsNotFound(err) {
				err = fmt.Errorf("remove container %s: %w", c.ID[:12], err)
			} else {
				err = nil
			}
			errs <- err
		}()
	}
	var all []error
	for range cs {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// errLeakedEndpoints marks a network the Engine refuses to remove although
// no container is attached to it: Docker 20.10 sometimes leaks a network's
// endpoint count when many containers go at once, and only a restart of
// dockerd clears it. Callers reuse such a network or leave it, with a note.
var errLeakedEndpoints = errors.New("the Engine still counts endpoints on it although no container is attached (a Docker 20.10 leak; a dockerd restart clears it)")

// removeNetwork removes a network, retrying for up to 10 s while endpoints
// are being released (2 s once no container is attached any more); a
// missing network is not an error.
func removeNetwork(ctx context.Context, dc *client.Client, name string) error {
	var err error
	empty := 0 // failed attempts while no container was attached
	for range 40 {
		err = dc.NetworkRemove(ctx, name)
		if err == nil || cerrdefs.IsNotFound(err) {
			return nil
		}
		if nw, ierr := dc.NetworkInspect(ctx, name, network.InspectOptions{}); ierr == nil && len(nw.Containers) == 0 {
			if empty++; empty >= 8 {
				return fmt.Errorf("remove network %s: %w", name, errLeakedEndpoints)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("remove network %s: %w", name, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("remove network %s: %w", name, err)
}

// networkExists reports whether the Engine has a network of that name.
func networkExists(ctx context.Context, dc *client.Client, name string) (bool, error) {
	_, err := dc.NetworkInspect(ctx, name, network.InspectOptions{})
	if err == nil {
		return true, nil
	}
	if cerrdefs.IsNotFound(err) {
		return false, nil
	}
	return false, fmt.Errorf("inspect network %s: %w", name, err)
}

// hasEnv reports whether container id's environment holds kv ("K=V").
func hasEnv(ctx context.Context, dc *client.Client, id, kv string) (bool, error) {
	c, err := dc.ContainerInspect(ctx, id)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("inspect container %s: %w", id[:12], err)
	}
	return c.Config != nil && slices.Contains(c.Config.Env, kv), nil
}

// runCmd runs a command to completion; its output goes into the error when
// it fails. A cancelled ctx sends SIGTERM, then SIGKILL 5 s later.
func runCmd(ctx context.Context, env []string, name string, args ...string) error {
	_, err := outputCmd(ctx, env, name, args...)
	return err
}

// outputCmd is runCmd returning the command's standard output.
func outputCmd(ctx context.Context, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var stdout bytes.Buffer
	both := &lockedBuffer{}
	cmd.Stdout = io.MultiWriter(&stdout, both)
	cmd.Stderr = both
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail(both.String(), 1500))
	}
	return stdout.Bytes(), nil
}

// lockedBuffer is a bytes.Buffer two copying goroutines (stdout and
// stderr) may write at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// freePorts returns n distinct ports free for TCP and UDP on every address.
func freePorts(n int) ([]int, error) {
	var held []io.Closer
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100 {
			return nil, errors.New("find free ports: no luck after 100 tries")
		}
		l, err := net.Listen("tcp", ":0")
		if err != nil {
			return nil, fmt.Errorf("find free ports: %w", err)
		}
		held = append(held, l)
		p := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf(":%d", p))
		if err != nil {
			continue
		}
		held = append(held, u)
		ports = append(ports, p)
	}
	return ports, nil
}

// waitHTTP waits until a GET of url answers 200.
func waitHTTP(ctx context.Context, url string) error {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	return waitUntil(ctx, "wait for "+url+" to answer", func(ctx context.Context) (bool, string, error) {
		_, err := get(ctx, hc, url)
		if err != nil {
			return false, err.Error(), nil
		}
		return true, "", nil
	})
}

// waitReplicasAnswer waits until n distinct replicas ("hello from NAME")
// have answered GETs of url, each on a new connection.
func waitReplicasAnswer(ctx context.Context, url string, n int) error {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	seen := map[string]bool{}
	return waitUntil(ctx, fmt.Sprintf("wait for %d replicas to answer on %s", n, url), func(ctx context.Context) (bool, string, error) {
		// Up to 2n requests per poll: a round-robin over n ready endpoints
		// shows every one of them.
		for range 2 * n {
			body, err := get(ctx, hc, url)
			if err != nil {
				return false, fmt.Sprintf("%d/%d replicas answered; %v", len(seen), n, err), nil
			}
			seen[body] = true
			if len(seen) >= n {
				return true, "", nil
			}
		}
		return false, fmt.Sprintf("%d/%d replicas answered", len(seen), n), nil
	})
}

func get(ctx context.Context, hc *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return strings.TrimSpace(string(b)), nil
}
