package apiserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/manager"
	"github.com/devhq/dev/cluster/raftstore/rafttest"
	"github.com/devhq/dev/cluster/state"
)

func (l *scriptedLocal) CheckPort(netip.AddrPort, string) error { return nil }

// scriptedLocal answers sessions from their command line:
//
//	echo:      copy stdin to stdout, "bye" to stderr, exit 3
//	sizes N:   print the first N terminal sizes received, exit 0
//	fail:      an error (the command could not run)
type scriptedLocal struct{ Local }

func (l *scriptedLocal) Exec(ctx context.Context, pod string, req api.ExecRequest, stdio api.IO) (int, error) {
	switch req.Cmd[0] {
	case "echo":
		if _, err := io.Copy(stdio.Stdout, stdio.Stdin); err != nil {
			return 0, err
		}
		fmt.Fprint(stdio.Stderr, "bye")
		return 3, nil
	case "sizes":
		n, _ := strconv.Atoi(req.Cmd[1])
		for range n {
			select {
			case s := <-stdio.Resize:
				fmt.Fprintf(stdio.Stdout, "%dx%d\n", s.Width, s.Height)
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		return 0, nil
	}
	return 0, fmt.Errorf("exec in %s: no such command %s", pod, req.Cmd[0])
}

func (l *scriptedLocal) RunOneOff(_ context.Context, project, service string, req api.RunRequest, stdio api.IO) (int, error) {
	fmt.Fprintf(stdio.Stdout, "%s on %s rm=%v", req.Name, req.Node, req.Rm)
	return 5, nil
}

func (l *scriptedLocal) PodAction(_ context.Context, pod, action string, grace *time.Duration) (api.Pod, error) {
	return api.Pod{Name: pod, Status: api.PodStatus{State: api.PodExited, Message: fmt.Sprintf("%s %v", action, *grace)}}, nil
}

func (l *scriptedLocal) KillPod(_ context.Context, pod, signal string) (api.Pod, error) {
	return api.Pod{Name: pod, Status: api.PodStatus{State: api.PodExited, Message: "kill " + signal}}, nil
}

func (l *scriptedLocal) PausePod(_ context.Context, pod string, pause bool) (api.Pod, error) {
	return api.Pod{Name: pod, Status: api.PodStatus{State: api.PodRunning, Paused: pause}}, nil
}

func (l *scriptedLocal) TopPod(_ context.Context, pod string) (api.PodTop, error) {
	return api.PodTop{Pod: pod, Node: "n1", Containers: []api.ContainerTop{{Container: "web",
		ProcessList: api.ProcessList{Titles: []string{"PID", "CMD"}, Processes: [][]string{{"1", "sleep"}}}}}}, nil
}

func (l *scriptedLocal) PodImages(_ context.Context, pod string) (api.PodImages, error) {
	return api.PodImages{Pod: pod, Node: "n1", Containers: []api.ContainerImage{{Container: "web",
		Repository: "shop-web", Tag: "latest", ImageID: "sha256:abc", Size: 42}}}, nil
}

// newStreamTestAPI serves the API of node n1 (pods shop-web-1 on n1,
// shop-far-1 on n2 which is unreachable) on a unix socket.
func newStreamTestAPI(t *testing.T) *api.HTTPClient {
	t.Helper()
	st := state.New()
	svc := func(name string, constraints ...string) api.ServiceSpec {
		return api.ServiceSpec{Project: "shop", Name: name, Image: "x", Replicas: 1,
			Placement: api.Placement{Constraints: constraints}}
	}
	err := st.Update(1, func(tx *state.Txn) error {
		for _, cmd := range []state.Command{
			&state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{
				svc("web"), svc("far"), svc("nowhere", "node.hostname==n9")}}},
			&state.PutNode{Node: api.Node{Name: "n1", Status: api.NodeReady}},
			&state.CreatePods{Pods: []api.Pod{
				{Name: "shop-web-1", Project: "shop", Service: "web", Index: 1, Labels: map[string]string{}},
				{Name: "shop-far-1", Project: "shop", Service: "far", Index: 1, Labels: map[string]string{}},
			}},
			&state.AssignPods{Nodes: map[string]string{"shop-web-1": "n1", "shop-far-1": "n2"}},
		} {
			if err := tx.Apply(cmd); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return serveTestAPI(t, st, &scriptedLocal{})
}

// serveTestAPI serves the API over st and local (a leader of
// one, node n1) on a unix socket until the test ends, and returns a client.
func serveTestAPI(t *testing.T, st *state.Store, local Local) *api.HTTPClient {
	t.Helper()
	return serveTestAPIWith(t, st, local, Options{Node: "n1"})
}

// serveTestAPIWith is serveTestAPI with opts (their Node is the leader's).
func serveTestAPIWith(t *testing.T, st *state.Store, local Local, opts Options) *api.HTTPClient {
	t.Helper()
	r := rafttest.New(st)
	srv := New(r, manager.New(r, manager.Options{Node: opts.Node}, slog.New(slog.DiscardHandler)), local, opts)
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })
	c, err := api.NewClient("unix://"+sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// drain reads frames until the last one and returns stdout, stderr and the
// exit code or error message.
func drain(t *testing.T, s *api.Stream) (stdout, stderr string, code int, errMsg string) {
	t.Helper()
	var o, e bytes.Buffer
	for {
		typ, p, err := s.ReadFrame()
		if err != nil {
			t.Fatalf("read frame: %v (stdout %q)", err, o.String())
		}
		switch typ {
		case api.FrameStdout:
			o.Write(p)
		case api.FrameStderr:
			e.Write(p)
		case api.FrameExit:
			code, err := api.DecodeExitCode(p)
			if err != nil {
				t.Fatal(err)
			}
			return o.String(), e.String(), code, ""
		case api.FrameError:
			return o.String(), e.String(), 0, string(p)
		default:
			t.Fatalf("unexpected frame %d from the agent", typ)
		}
	}
}

func TestExecStream(t *testing.T) {
	c := newStreamTestAPI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("stdin, stdout, stderr and the exit code", func(t *testing.T) {
		s, err := c.Exec(ctx, "shop-web-1", api.ExecRequest{Cmd: []string{"echo"}, Stdin: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		big := strings.Repeat("x", api.MaxFramePayload+10) // split over frames
		if _, err := io.WriteString(s.Writer(api.FrameStdin), "hello "+big); err != nil {
			t.Fatal(err)
		}
		if err := s.WriteFrame(api.FrameStdinClose, nil); err != nil {
			t.Fatal(err)
		}
		out, errOut, code, msg := drain(t, s)
		if out != "hello "+big || errOut != "bye" || code != 3 || msg != "" {
			t.Fatalf("got stdout %d bytes, stderr %q, exit %d, error %q", len(out), errOut, code, msg)
		}
	})

	t.Run("terminal sizes: the initial one, then resizes", func(t *testing.T) {
		s, err := c.Exec(ctx, "shop-web-1", api.ExecRequest{Cmd: []string{"sizes", "2"}, Tty: true,
			Size: api.TermSize{Height: 24, Width: 80}})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.WriteFrame(api.FrameResize, api.EncodeTermSize(api.TermSize{Height: 50, Width: 132})); err != nil {
			t.Fatal(err)
		}
		out, _, code, msg := drain(t, s)
		if out != "80x24\n132x50\n" || code != 0 || msg != "" {
			t.Fatalf("got %q exit %d error %q", out, code, msg)
		}
	})

	t.Run("a command that cannot run ends with an error frame", func(t *testing.T) {
		s, err := c.Exec(ctx, "shop-web-1", api.ExecRequest{Cmd: []string{"nope"}})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, _, _, msg := drain(t, s); !strings.Contains(msg, "no such command nope") {
			t.Fatalf("error frame %q", msg)
		}
	})

	errs := []struct {
		name       string
		do         func() error
		wantStatus int
		wantMsg    string
	}{
		{"unknown pod", func() error {
			_, err := c.Exec(ctx, "shop-nope-1", api.ExecRequest{Cmd: []string{"echo"}})
			return err
		}, http.StatusNotFound, "no pod shop-nope-1"},
		{"no command", func() error {
			_, err := c.Exec(ctx, "shop-web-1", api.ExecRequest{})
			return err
		}, http.StatusBadRequest, "no command"},
		{"no upgrade", func() error {
			return c.Do(ctx, http.MethodPost, "/v1/pods/shop-web-1/exec", api.ExecRequest{Cmd: []string{"echo"}}, nil)
		}, http.StatusBadRequest, "connection upgrade"},
		{"pod on an unreachable node", func() error {
			_, err := c.Exec(ctx, "shop-far-1", api.ExecRequest{Cmd: []string{"echo"}})
			return err
		}, http.StatusInternalServerError, "node n2, which this node cannot reach"},
		{"run: placement fits no node", func() error {
			_, _, err := c.Run(ctx, "shop", "nowhere", api.RunRequest{})
			return err
		}, http.StatusConflict, "constraint node.hostname==n9 not met"},
		{"run: unknown service", func() error {
			_, _, err := c.Run(ctx, "shop", "nope", api.RunRequest{})
			return err
		}, http.StatusNotFound, "no service nope"},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			var ae *api.APIError
			if !errors.As(err, &ae) || ae.Status != tc.wantStatus || !strings.Contains(ae.Message, tc.wantMsg) {
				t.Fatalf("err = %v, want HTTP %d with %q", err, tc.wantStatus, tc.wantMsg)
			}
		})
	}
}

func TestRunStreamAndPodAction(t *testing.T) {
	c := newStreamTestAPI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	s, name, err := c.Run(ctx, "shop", "web", api.RunRequest{Rm: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(name, "shop-web-run-") {
		t.Errorf("one-off pod name %q, want shop-web-run-*", name)
	}
	out, _, code, msg := drain(t, s)
	if out != name+" on n1 rm=true" || code != 5 || msg != "" {
		t.Fatalf("run: stdout %q exit %d error %q", out, code, msg)
	}

	timeout := 4
	res, err := c.PodAction(ctx, "shop-web-1", "stop", api.PodActionRequest{Timeout: &timeout})
	if err != nil || res.Pod.Status.Message != "stop 4s" {
		t.Fatalf("stop: %+v, %v", res, err)
	}
}

// TestKillPauseTop: kill's signal reaches the pod's node in one form (the
// default SIGKILL), a bad one is refused before; pause and unpause are
// served there; top answers with the node's process lists; a pod on a node
// that cannot be reached gives an error naming it.
func TestKillPauseTop(t *testing.T) {
	c := newStreamTestAPI(t)
	ctx := t.Context()
	for _, tt := range []struct{ signal, want string }{{"", "kill SIGKILL"}, {"hup", "kill SIGHUP"}} {
		res, err := c.PodAction(ctx, "shop-web-1", api.ActionKill, api.PodActionRequest{Signal: tt.signal})
		if err != nil || res.Pod.Status.Message != tt.want {
			t.Errorf("kill -s %q: %+v, %v; want %q", tt.signal, res.Pod.Status, err, tt.want)
		}
	}
	_, err := c.PodAction(ctx, "shop-web-1", api.ActionKill, api.PodActionRequest{Signal: "SIGNOPE"})
	var ae *api.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.Contains(ae.Message, "unknown signal") {
		t.Errorf("kill -s SIGNOPE: %v, want 400 unknown signal", err)
	}
	for _, action := range []string{api.ActionPause, api.ActionUnpause} {
		res, err := c.PodAction(ctx, "shop-web-1", action, api.PodActionRequest{})
		if err != nil || res.Pod.Status.Paused != (action == api.ActionPause) {
			t.Errorf("%s: %+v, %v", action, res.Pod.Status, err)
		}
	}
	top, err := c.PodTop(ctx, "shop-web-1")
	if err != nil || len(top.Containers) != 1 || top.Containers[0].Processes[0][1] != "sleep" {
		t.Errorf("top: %+v, %v", top, err)
	}
	if _, err := c.PodTop(ctx, "shop-far-1"); err == nil || !strings.Contains(err.Error(), "n2") {
		t.Errorf("top of a pod on an unreachable node: %v, want an error naming n2", err)
	}
	if _, err := c.PodTop(ctx, "shop-nope-1"); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Errorf("top of no pod: %v, want 404", err)
	}
	imgs, err := c.PodImages(ctx, "shop-web-1")
	if err != nil || imgs.Pod != "shop-web-1" || len(imgs.Containers) != 1 || imgs.Containers[0].Repository != "shop-web" {
		t.Errorf("images: %+v, %v", imgs, err)
	}
	if _, err := c.PodImages(ctx, "shop-far-1"); err == nil || !strings.Contains(err.Error(), "n2") {
		t.Errorf("images of a pod on an unreachable node: %v, want an error naming n2", err)
	}
	if _, err := c.PodImages(ctx, "shop-nope-1"); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Errorf("images of no pod: %v, want 404", err)
	}
}

// TestRunNodeUsesTheScheduler: a one-off pod goes where the scheduler puts
// a pod of its service: a node with room for its reservations, not simply
// the node that took the request.
func TestRunNodeUsesTheScheduler(t *testing.T) {
	st := state.New()
	r := rafttest.New(st)
	web := api.ServiceSpec{Project: "shop", Name: "web", Image: "x", Replicas: 1,
		Resources: api.Resources{Reservations: api.ResourceAmounts{MemoryBytes: 1 << 30}}}
	for _, cmd := range []state.Command{
		&state.PutNode{Node: api.Node{Name: "n1", Status: api.NodeReady, APIAddr: "127.0.0.1:1", Allocatable: api.ResourceAmounts{MemoryBytes: 512 << 20}}},
		&state.PutNode{Node: api.Node{Name: "n2", Status: api.NodeReady, APIAddr: "127.0.0.1:2", Allocatable: api.ResourceAmounts{MemoryBytes: 4 << 30}}},
		&state.PutNode{Node: api.Node{Name: "n3", Status: api.NodeDown, APIAddr: "127.0.0.1:3", Allocatable: api.ResourceAmounts{MemoryBytes: 8 << 30}}},
		&state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{web}}},
	} {
		if _, err := r.Apply(t.Context(), cmd); err != nil {
			t.Fatal(err)
		}
	}
	srv := New(r, nil, nil, Options{Node: "n1"})
	rc, _ := st.RC(api.RCKey("shop", "web"))
	node, err := srv.runNode(rc, "shop-web-run-1")
	if err != nil || node != "n2" {
		t.Fatalf("runNode = %q, %v; want n2 (n1 lacks the memory, n3 is down)", node, err)
	}
	// Room nowhere: the scheduler's reason.
	st2 := state.New()
	r2 := rafttest.New(st2)
	for _, n := range st.Nodes() {
		if _, err := r2.Apply(t.Context(), &state.PutNode{Node: n}); err != nil {
			t.Fatal(err)
		}
	}
	web.Resources.Reservations.MemoryBytes = 16 << 30
	if _, err := r2.Apply(t.Context(), &state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{web}}}); err != nil {
		t.Fatal(err)
	}
	rc, _ = st2.RC(api.RCKey("shop", "web"))
	if _, err := New(r2, nil, nil, Options{Node: "n1"}).runNode(rc, "shop-web-run-2"); err == nil || !strings.Contains(err.Error(), "memory") {
		t.Errorf("runNode with no room anywhere = %v, want the scheduler's reason", err)
	}
}

// refusedErr is a pod action refused for the pod's state, as the agent's
// RefusedError behaves.
type refusedErr struct{ missing bool }

func (e refusedErr) Error() string  { return "refused" }
func (e refusedErr) Refused() bool  { return true }
func (e refusedErr) NotFound() bool { return e.missing }

// boundedLocal records whether its actions got a deadline, and fails top
// by the pod's name: gone (no such pod), stopped (refused), engine (the
// Engine's error).
type boundedLocal struct {
	scriptedLocal
	mu        sync.Mutex
	deadlines map[string]bool
}

func (l *boundedLocal) saw(ctx context.Context, what string) {
	_, ok := ctx.Deadline()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.deadlines[what] = ok
}

func (l *boundedLocal) KillPod(ctx context.Context, pod, signal string) (api.Pod, error) {
	l.saw(ctx, "kill")
	return l.scriptedLocal.KillPod(ctx, pod, signal)
}

func (l *boundedLocal) PausePod(ctx context.Context, pod string, pause bool) (api.Pod, error) {
	l.saw(ctx, "pause")
	return l.scriptedLocal.PausePod(ctx, pod, pause)
}

func (l *boundedLocal) TopPod(ctx context.Context, pod string) (api.PodTop, error) {
	l.saw(ctx, "top")
	switch pod {
	case "shop-web-1":
		return api.PodTop{}, fmt.Errorf("top %s: %w", pod, refusedErr{})
	case "shop-far-1":
		return api.PodTop{}, fmt.Errorf("top %s: %w", pod, refusedErr{missing: true})
	}
	return api.PodTop{}, errors.New("top: the engine failed")
}

// TestKillPauseTopLimits: kill, pause and top run with a deadline; a pod
// on a node whose Engine does not answer is refused at once (503, naming
// the node); top's errors get their status by kind.
func TestKillPauseTopLimits(t *testing.T) {
	st := state.New()
	err := st.Update(1, func(tx *state.Txn) error {
		for _, cmd := range []state.Command{
			&state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{
				{Project: "shop", Name: "web", Image: "x", Replicas: 1},
				{Project: "shop", Name: "far", Image: "x", Replicas: 1},
				{Project: "shop", Name: "db", Image: "x", Replicas: 1},
				{Project: "shop", Name: "hung", Image: "x", Replicas: 1}}}},
			&state.PutNode{Node: api.Node{Name: "n1", Status: api.NodeReady}},
			&state.PutNode{Node: api.Node{Name: "n3", Status: api.NodeReady, EngineUnreachable: true}},
			&state.CreatePods{Pods: []api.Pod{
				{Name: "shop-web-1", Project: "shop", Service: "web", Index: 1, Labels: map[string]string{}},
				{Name: "shop-far-1", Project: "shop", Service: "far", Index: 1, Labels: map[string]string{}},
				{Name: "shop-db-1", Project: "shop", Service: "db", Index: 1, Labels: map[string]string{}},
				{Name: "shop-hung-1", Project: "shop", Service: "hung", Index: 1, Labels: map[string]string{}},
			}},
			&state.AssignPods{Nodes: map[string]string{"shop-web-1": "n1", "shop-far-1": "n1", "shop-db-1": "n1", "shop-hung-1": "n3"}},
		} {
			if err := tx.Apply(cmd); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	l := &boundedLocal{deadlines: map[string]bool{}}
	c := serveTestAPI(t, st, l)
	ctx := t.Context()

	if _, err := c.PodAction(ctx, "shop-web-1", api.ActionKill, api.PodActionRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PodAction(ctx, "shop-web-1", api.ActionPause, api.PodActionRequest{}); err != nil {
		t.Fatal(err)
	}
	_, _ = c.PodTop(ctx, "shop-web-1")
	for _, what := range []string{"kill", "pause", "top"} {
		if !l.deadlines[what] {
			t.Errorf("%s ran without a deadline", what)
		}
	}

	var ae *api.APIError
	for _, action := range []string{api.ActionKill, api.ActionPause, api.ActionUnpause} {
		_, err := c.PodAction(ctx, "shop-hung-1", action, api.PodActionRequest{})
		if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || !strings.Contains(ae.Message, "node n3's Docker Engine does not answer") {
			t.Errorf("%s of a pod on a node whose engine does not answer: %v, want 503 naming n3", action, err)
		}
	}
	if _, err := c.PodTop(ctx, "shop-hung-1"); !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
		t.Errorf("top of a pod on a node whose engine does not answer: %v, want 503", err)
	}

	for pod, want := range map[string]int{"shop-web-1": http.StatusConflict, "shop-far-1": http.StatusNotFound, "shop-db-1": http.StatusInternalServerError} {
		if _, err := c.PodTop(ctx, pod); !errors.As(err, &ae) || ae.Status != want {
			t.Errorf("top %s: %v, want status %d", pod, err, want)
		}
	}
}
