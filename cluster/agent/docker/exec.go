package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/devhq/dev/cluster/api"
)

// Exec implements agent.Driver: docker exec with the process's streams
// attached through the engine's hijacked connection (raw with a TTY,
// multiplexed stdout/stderr without).
func (d *Driver) Exec(ctx context.Context, id string, req api.ExecRequest, stdio api.IO) (int, error) {
	if len(req.Cmd) == 0 {
		return 0, errors.New("exec: no command given")
	}
	opts := container.ExecOptions{
		User: req.User, Tty: req.Tty, Env: req.Env, WorkingDir: req.WorkingDir, Cmd: req.Cmd,
		AttachStdin: stdio.Stdin != nil, AttachStdout: true, AttachStderr: true,
	}
	created, err := d.cli.ContainerExecCreate(ctx, id, opts)
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", id, classify(err))
	}
	hj, err := d.cli.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{Tty: req.Tty})
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", id, classify(err))
	}
	defer hj.Close()
	if req.Tty {
		stop := d.forwardResize(ctx, stdio.Resize, func(ctx context.Context, s api.TermSize) error {
			return d.cli.ContainerExecResize(ctx, created.ID, container.ResizeOptions{Height: uint(s.Height), Width: uint(s.Width)})
		})
		defer stop()
	}
	if err := pump(ctx, hj, req.Tty, stdio); err != nil {
		return 0, fmt.Errorf("exec in %s: %w", id, err)
	}
	// The stream ends when the process does; the engine may take a moment
	// longer to record its exit code.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ins, err := d.cli.ContainerExecInspect(ctx, created.ID)
		if err != nil {
			return 0, fmt.Errorf("exec in %s: read exit code: %w", id, classify(err))
		}
		if !ins.Running {
			return ins.ExitCode, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("exec in %s: the command closed its output but is still running", id)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// RunAttached implements agent.Driver: create (with the streams to attach
// and, with stdin, StdinOnce so that the end of the client's input closes
// the process's), attach, start, copy, wait.
func (d *Driver) RunAttached(ctx context.Context, pod *api.Pod, spec *api.ServiceSpec, tty bool, stdio api.IO) (int, error) {
	withStdin := stdio.Stdin != nil
	id, err := d.create(ctx, pod, spec, pod.Name, false, func(cfg *container.Config) {
		cfg.Tty = tty
		cfg.OpenStdin, cfg.StdinOnce, cfg.AttachStdin = withStdin, withStdin, withStdin
		cfg.AttachStdout, cfg.AttachStderr = true, true
	})
	if err != nil {
		return 0, err
	}
	hj, err := d.cli.ContainerAttach(ctx, id, container.AttachOptions{Stream: true, Stdin: withStdin, Stdout: true, Stderr: true})
	if err != nil {
		return 0, fmt.Errorf("attach to %s: %w", pod.Name, classify(err))
	}
	defer hj.Close()
	waitCtx, cancelWait := context.WithCancel(ctx)
	defer cancelWait()
	waitc, errc := d.cli.ContainerWait(waitCtx, id, container.WaitConditionNextExit)
	if err := d.cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		if code := startFailureCode(err); code != 0 {
			fmt.Fprintf(stdio.Stderr, "%v\n", err)
			return code, nil
		}
		return 0, fmt.Errorf("start %s: %w", pod.Name, classify(err))
	}
	if tty {
		stop := d.forwardResize(ctx, stdio.Resize, func(ctx context.Context, s api.TermSize) error {
			return d.cli.ContainerResize(ctx, id, container.ResizeOptions{Height: uint(s.Height), Width: uint(s.Width)})
		})
		defer stop()
	}
	if err := pump(ctx, hj, tty, stdio); err != nil {
		return 0, fmt.Errorf("run %s: %w", pod.Name, err)
	}
	select {
	case w := <-waitc:
		if w.Error != nil && w.Error.Message != "" {
			return 0, fmt.Errorf("run %s: wait: %s", pod.Name, w.Error.Message)
		}
		return int(w.StatusCode), nil
	case err := <-errc:
		return 0, fmt.Errorf("run %s: wait: %w", pod.Name, classify(err))
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// startFailureCode maps a container start failure to the exit code the
// docker CLI gives it (cli/command/container/run.go): 127 when the command
// does not exist, 126 when it cannot be invoked; 0 for other failures. The
// engine reports these only as text.
func startFailureCode(err error) int {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "executable file not found"), strings.Contains(msg, "no such file or directory"):
		return 127
	case strings.Contains(msg, "permission denied"), strings.Contains(msg, "exec format error"):
		return 126
	}
	return 0
}

// pump copies stdin to the process and its output to stdio until the
// output ends (the process exited) or ctx ends.
func pump(ctx context.Context, hj types.HijackedResponse, tty bool, stdio api.IO) error {
	if stdio.Stdin != nil {
		go func() {
			_, _ = io.Copy(hj.Conn, stdio.Stdin)
			_ = hj.CloseWrite() // the process reads EOF
		}()
	}
	done := make(chan error, 1)
	go func() {
		var err error
		if tty {
			_, err = io.Copy(stdio.Stdout, hj.Reader)
		} else {
			_, err = stdcopy.StdCopy(stdio.Stdout, stdio.Stderr, hj.Reader)
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		hj.Close()
		<-done
		return ctx.Err()
	}
}

// forwardResize applies every size from sizes to a TTY until the returned
// stop is called. A resize right after
// start can fail while the process is not running yet: it is retried
// briefly, as the docker CLI does.
func (d *Driver) forwardResize(ctx context.Context, sizes <-chan api.TermSize, resize func(context.Context, api.TermSize) error) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	apply := func(s api.TermSize) {
		if s.Height == 0 || s.Width == 0 {
			return
		}
		for i := 0; i < 10; i++ {
			if err := resize(ctx, s); err == nil || ctx.Err() != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(i+1) * 20 * time.Millisecond):
			}
		}
	}
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case s, ok := <-sizes:
				if !ok {
					return
				}
				apply(s)
			}
		}
	}()
	return func() { cancel(); <-done }
}
