package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/devhq/dev/cluster/api"
)

// fakePodsAPI answers the pod list, pod actions and top for the verbs that
// act on running pods (kill, pause, unpause, top).
type fakePodsAPI struct {
	pods []api.Pod
	mu   sync.Mutex
	sent []string // action pod signal
	// onAction, when set, changes the pods as an action would.
	onAction func(pod, action string)
}

func (f *fakePodsAPI) Pods(context.Context, api.PodQuery) (api.PodList, error) {
	return api.PodList{Pods: f.pods}, nil
}

func (f *fakePodsAPI) PodAction(_ context.Context, pod, action string, req api.PodActionRequest) (api.PodActionResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, strings.TrimSpace(action+" "+pod+" "+req.Signal))
	if f.onAction != nil {
		f.onAction(pod, action)
	}
	st := api.PodStatus{State: api.PodRunning, Paused: action == api.ActionPause}
	if action == api.ActionKill && req.Signal == "SIGKILL" {
		st = api.PodStatus{State: api.PodExited, ExitCode: 137}
	}
	return api.PodActionResult{Pod: api.Pod{Name: pod, Node: "n1", Status: st}}, nil
}

func (f *fakePodsAPI) PodTop(_ context.Context, pod string) (api.PodTop, error) {
	if pod == "shop-web-2" {
		return api.PodTop{}, errors.New("node n2 is down")
	}
	return api.PodTop{Pod: pod, Service: "web", Node: "n1", Containers: []api.ContainerTop{
		{Container: "web", ProcessList: api.ProcessList{Titles: []string{"UID", "PID", "CMD"}, Processes: [][]string{{"root", "101", "nginx: master"}}}},
		{Container: "logs", ProcessList: api.ProcessList{Titles: []string{"UID", "PID", "CMD"}, Processes: [][]string{{"root", "102", "tail -f"}}}},
	}}, nil
}

func testPods() []api.Pod {
	running := api.PodStatus{State: api.PodRunning}
	return []api.Pod{
		{Name: "shop-web-1", Project: "shop", Service: "web", Node: "n1", Status: running},
		{Name: "shop-web-2", Project: "shop", Service: "web", Node: "n2", Status: api.PodStatus{State: api.PodRunning, Paused: true}},
		{Name: "shop-db-1", Project: "shop", Service: "db", Node: "n1", Stopped: true, Status: api.PodStatus{State: api.PodExited, ExitCode: 137}},
	}
}

func TestKillPauseUnpauseActOnRunningPods(t *testing.T) {
	tests := []struct {
		name     string
		action   string
		req      api.PodActionRequest
		skip     func(api.Pod) string
		services []string
		wantSent string
		wantOut  string
	}{
		{name: "kill every running pod", action: api.ActionKill, req: api.PodActionRequest{Signal: "SIGKILL"}, skip: notRunning,
			wantSent: "kill shop-web-1 SIGKILL,kill shop-web-2 SIGKILL",
			wantOut:  "skipped shop-db-1: not running (exited (137))\nkilled shop-web-1 (exited (137))\nkilled shop-web-2 (exited (137))\n"},
		{name: "kill one service with a signal", action: api.ActionKill, req: api.PodActionRequest{Signal: "SIGHUP"}, skip: notRunning,
			services: []string{"web"}, wantSent: "kill shop-web-1 SIGHUP,kill shop-web-2 SIGHUP",
			wantOut: "killed shop-web-1 (running)\nkilled shop-web-2 (running)\n"},
		{name: "pause skips the paused and the stopped", action: api.ActionPause, skip: pauseSkip(api.ActionPause),
			wantSent: "pause shop-web-1",
			wantOut:  "skipped shop-db-1: not running (exited (137))\npaused shop-web-1 (paused)\nskipped shop-web-2: already paused\n"},
		{name: "unpause only the paused", action: api.ActionUnpause, skip: pauseSkip(api.ActionUnpause),
			services: []string{"web"}, wantSent: "unpause shop-web-2",
			wantOut: "skipped shop-web-1: not paused\nunpaused shop-web-2 (running)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakePodsAPI{pods: testPods()}
			var out bytes.Buffer
			if err := podActions(context.Background(), f, "shop", tt.services, tt.action, tt.req, tt.skip, &out); err != nil {
				t.Fatal(err)
			}
			f.mu.Lock()
			sent := strings.Join(sortedCopy(f.sent), ",")
			f.mu.Unlock()
			if sent != tt.wantSent {
				t.Errorf("sent %q, want %q", sent, tt.wantSent)
			}
			if out.String() != tt.wantOut {
				t.Errorf("output:\n%s\nwant:\n%s", out.String(), tt.wantOut)
			}
		})
	}
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

func TestKillRefusesAnUnknownSignal(t *testing.T) {
	root := NewRootCommand()
	root.SetArgs([]string{"kill", "-s", "SIGNOPE"})
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "unknown signal") {
		t.Errorf("dev kill -s SIGNOPE: %v, want unknown signal before anything is asked", err)
	}
}

func TestTop(t *testing.T) {
	f := &fakePodsAPI{pods: testPods()}
	var out, errOut bytes.Buffer
	err := runTop(context.Background(), f, "shop", nil, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "shop-web-2 (node n2)") {
		t.Errorf("err = %v, want the pod whose node could not answer", err)
	}
	want := "shop-web-1\n" +
		"UID    PID   CMD\n" +
		"root   101   nginx: master\n" +
		"\n" +
		"shop-web-1 (logs)\n" +
		"UID    PID   CMD\n" +
		"root   102   tail -f\n"
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
	if err := runTop(context.Background(), f, "shop", []string{"nope"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "no pods of service nope") {
		t.Errorf("top nope: %v", err)
	}
}
