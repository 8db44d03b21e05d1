package docker_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
)

// syncBuffer is a bytes.Buffer safe for the driver's copy goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestExec(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	spec := f.spec("web")
	spec.Command = []string{"serve"}
	c := f.run(ctx, f.pod("web", 1), spec)

	tests := []struct {
		name       string
		req        api.ExecRequest
		stdin      string
		wantCode   []int
		wantOut    string
		wantErrOut string
	}{
		{name: "exit code", req: api.ExecRequest{Cmd: []string{"/app", "exit", "3"}}, wantCode: []int{3}, wantOut: "testapp: exit 3\n"},
		{name: "stderr apart", req: api.ExecRequest{Cmd: []string{"/app", "cat", "/nope"}}, wantCode: []int{1}, wantErrOut: "open /nope"},
		{name: "tty merges and uses CRLF", req: api.ExecRequest{Cmd: []string{"/app", "cat", "/nope"}, Tty: true,
			Size: api.TermSize{Height: 30, Width: 100}}, wantCode: []int{1}, wantOut: "open /nope: no such file or directory\r\n"},
		{name: "stdin until EOF", req: api.ExecRequest{Cmd: []string{"/app", "cat", "/dev/stdin"}, Stdin: true}, stdin: "abc\n", wantCode: []int{0}, wantOut: "abc\n"},
		{name: "environment and workdir", req: api.ExecRequest{Cmd: []string{"/app", "cat", "/proc/self/environ"}, Env: []string{"K=v"}, WorkingDir: "/"},
			wantCode: []int{0}, wantOut: "K=v"},
		{name: "no such command", req: api.ExecRequest{Cmd: []string{"/nope"}}, wantCode: []int{126, 127}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut syncBuffer
			stdio := api.IO{Stdout: &out, Stderr: &errOut}
			if tt.req.Stdin {
				stdio.Stdin = strings.NewReader(tt.stdin)
			}
			code, err := f.drv.Exec(ctx, c.ID, tt.req, stdio)
			if err != nil {
				t.Fatalf("Exec: %v", err)
			}
			ok := false
			for _, w := range tt.wantCode {
				ok = ok || code == w
			}
			if !ok || !strings.Contains(out.String(), tt.wantOut) || !strings.Contains(errOut.String(), tt.wantErrOut) {
				t.Fatalf("Exec = %d, stdout %q, stderr %q; want code %v, stdout with %q, stderr with %q",
					code, out.String(), errOut.String(), tt.wantCode, tt.wantOut, tt.wantErrOut)
			}
		})
	}
}

func TestRunAttached(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	pod := f.pod("job", 0)
	pod.Name = f.project + "-job-run-1"
	spec := f.spec("job")
	spec.Command = []string{"cat", "/dev/stdin"}
	var out, errOut syncBuffer
	code, err := f.drv.RunAttached(ctx, pod, spec, false, api.IO{Stdin: strings.NewReader("in\n"), Stdout: &out, Stderr: &errOut})
	if err != nil || code != 0 || out.String() != "in\n" {
		t.Fatalf("RunAttached cat = %d, %v, stdout %q stderr %q", code, err, out.String(), errOut.String())
	}
	c, err := f.drv.Inspect(ctx, pod.Name)
	if err != nil || c.State != "exited" || c.Labels[api.LabelPod] != pod.Name {
		t.Fatalf("after RunAttached: %+v, %v; want the exited container left for the caller", c, err)
	}

	pod.Name = f.project + "-job-run-2"
	spec.Command = []string{"exit", "5"}
	if code, err := f.drv.RunAttached(ctx, pod, spec, true, api.IO{Stdout: &out, Stderr: &errOut}); err != nil || code != 5 {
		t.Fatalf("RunAttached exit 5 (tty) = %d, %v", code, err)
	}

	pod.Name = f.project + "-job-run-3"
	spec.Entrypoint = []string{"/nope"}
	if code, err := f.drv.RunAttached(ctx, pod, spec, false, api.IO{Stdout: &out, Stderr: &errOut}); err != nil || code != 127 {
		t.Fatalf("RunAttached of a missing entrypoint = %d, %v; want 127", code, err)
	}
}
