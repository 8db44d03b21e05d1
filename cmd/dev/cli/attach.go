package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/devhq/dev/cluster/api"
)

// ExitError carries the exit code of a command run in a pod (`dev exec`,
// `dev run`) to main, which exits with it and prints nothing.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// sessionFlags are the flags `dev exec` and `dev run` share, as docker's.
type sessionFlags struct {
	stdin   bool
	tty     bool
	env     []string
	user    string
	workdir string
}

func (sf *sessionFlags) register(f *pflag.FlagSet) {
	f.BoolVarP(&sf.stdin, "interactive", "i", false, "keep stdin open and send it to the command")
	f.BoolVarP(&sf.tty, "tty", "t", false, "allocate a pseudo-TTY (the local terminal goes raw with -i)")
	f.StringArrayVarP(&sf.env, "env", "e", nil, "set an environment variable KEY=VALUE (repeatable)")
	f.StringVarP(&sf.user, "user", "u", "", "run as this user (name or uid[:gid])")
	f.StringVarP(&sf.workdir, "workdir", "w", "", "working directory inside the container")
}

func (sf *sessionFlags) checkEnv() error {
	for _, kv := range sf.env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("--env %q: want KEY=VALUE", kv)
		}
	}
	return nil
}

// localTerm is the local side of a session.
type localTerm struct {
	in       io.Reader
	out, err io.Writer
}

func stdTerm() localTerm { return localTerm{in: os.Stdin, out: os.Stdout, err: os.Stderr} }

// size returns the local terminal's size (of stdout, else stdin), if any.
func (lt localTerm) size() (api.TermSize, bool) {
	for _, s := range []any{lt.out, lt.in} {
		if f, ok := s.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			if w, h, err := term.GetSize(int(f.Fd())); err == nil && w > 0 && h > 0 {
				return api.TermSize{Height: uint16(h), Width: uint16(w)}, true
			}
		}
	}
	return api.TermSize{}, false
}

// attach runs the local side of an interactive session until the remote
// command ends, and returns its exit code. With tty and stdin on a
// terminal, the terminal is in raw mode meanwhile (keys, ^C included, go to
// the command) and window size changes are sent along.
// attachExit attaches like attach and turns a non-zero exit code of the
// command into an *ExitError for main.
func attachExit(ctx context.Context, s *api.Stream, sf sessionFlags, lt localTerm) error {
	code, err := attach(ctx, s, sf, lt)
	if err != nil {
		return err
	}
	if code != 0 {
		return &ExitError{Code: code}
	}
	return nil
}

func attach(ctx context.Context, s *api.Stream, sf sessionFlags, lt localTerm) (int, error) {
	defer s.Close()
	done := make(chan struct{})
	defer close(done)
	if sf.tty {
		if f, ok := lt.in.(*os.File); ok && sf.stdin && term.IsTerminal(int(f.Fd())) {
			if old, err := term.MakeRaw(int(f.Fd())); err == nil {
				defer func() { _ = term.Restore(int(f.Fd()), old) }()
			}
		}
		if _, ok := lt.size(); ok {
			winch := make(chan os.Signal, 1)
			signal.Notify(winch, syscall.SIGWINCH)
			defer signal.Stop(winch)
			go func() {
				for {
					select {
					case <-done:
						return
					case <-winch:
						if ts, ok := lt.size(); ok {
							_ = s.WriteFrame(api.FrameResize, api.EncodeTermSize(ts))
						}
					}
				}
			}()
		}
	}
	if sf.stdin {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := lt.in.Read(buf)
				if n > 0 {
					if s.WriteFrame(api.FrameStdin, buf[:n]) != nil {
						return
					}
				}
				if err != nil {
					_ = s.WriteFrame(api.FrameStdinClose, nil)
					return
				}
			}
		}()
	}
	stop := context.AfterFunc(ctx, func() { s.Close() }) // unblocks ReadFrame
	defer stop()
	for {
		t, p, err := s.ReadFrame()
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, fmt.Errorf("connection to the agent lost before the command ended: %w", err)
		}
		switch t {
		case api.FrameStdout:
			_, _ = lt.out.Write(p)
		case api.FrameStderr:
			_, _ = lt.err.Write(p)
		case api.FrameExit:
			return api.DecodeExitCode(p)
		case api.FrameError:
			return 0, errors.New(string(p))
		}
	}
}

// resolvePod finds the pod `dev exec` means: a pod's full name, SERVICE (its
// first running pod) or SERVICE.N (pod N of the service). project "" looks
// in every project.
func resolvePod(ctx context.Context, c api.Client, project, target string) (api.Pod, error) {
	list, err := c.Pods(ctx, api.PodQuery{Project: project})
	if err != nil {
		return api.Pod{}, fmt.Errorf("list pods: %w", err)
	}
	var live []api.Pod
	for _, p := range list.Pods {
		if !p.Deleting {
			live = append(live, p)
		}
	}
	for _, p := range live {
		if p.Name == target {
			return p, nil
		}
	}
	of := func(svc string) []api.Pod {
		var out []api.Pod
		for _, p := range live {
			if p.Service == svc {
				out = append(out, p)
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
		return out
	}
	svc, index := target, 0
	pods := of(svc)
	if i := strings.LastIndex(target, "."); len(pods) == 0 && i > 0 {
		if n, err := strconv.Atoi(target[i+1:]); err == nil && n > 0 {
			svc, index = target[:i], n
			pods = of(svc)
		}
	}
	where := "project " + project
	if project == "" {
		where = "any project (pass -p NAME or run from the project's folder)"
	}
	if len(pods) == 0 {
		return api.Pod{}, fmt.Errorf("no pod or service %s in %s; `dev ps` lists them", target, where)
	}
	projects := map[string]bool{}
	for _, p := range pods {
		projects[p.Project] = true
	}
	if len(projects) > 1 {
		names := make([]string, 0, len(projects))
		for n := range projects {
			names = append(names, n)
		}
		sort.Strings(names)
		return api.Pod{}, fmt.Errorf("service %s exists in projects %s: pick one with -p", svc, strings.Join(names, ", "))
	}
	if index > 0 {
		for _, p := range pods {
			if p.Index == index {
				return p, nil
			}
		}
		return api.Pod{}, fmt.Errorf("service %s has no pod number %d (it has %d pods; `dev ps` lists them)", svc, index, len(pods))
	}
	for _, p := range pods {
		if p.Status.State == api.PodRunning {
			return p, nil
		}
	}
	return api.Pod{}, fmt.Errorf("no running pod of service %s (`dev ps` shows why; `dev start %s` starts stopped ones)", svc, svc)
}
