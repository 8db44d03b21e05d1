package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
)

// fakeDrain plays the cluster for dev node drain: each Pods call moves
// to the next of steps (nodes and pods as the leader leaves them).
type fakeDrain struct {
	steps []drainStep
	i     int
}

type drainStep struct {
	node api.Node
	pods []api.Pod
}

func (f *fakeDrain) DrainNode(context.Context, string) (api.WriteResult, error) {
	return api.WriteResult{Index: 1}, nil
}

func (f *fakeDrain) Pods(ctx context.Context, q api.PodQuery) (api.PodList, error) {
	if f.i >= len(f.steps) {
		<-ctx.Done() // nothing changes any more: the blocking query waits
		return api.PodList{}, ctx.Err()
	}
	f.i++
	return api.PodList{Index: q.Index + 1, Pods: f.steps[f.i-1].pods}, nil
}

func (f *fakeDrain) Nodes(context.Context) ([]api.Node, error) {
	return []api.Node{f.steps[max(f.i-1, 0)].node}, nil
}

func drainPod(svc string, i int, node string, msg string) api.Pod {
	return api.Pod{Name: "p-" + svc, Project: "p", Service: svc, Index: i, Node: node, Status: api.PodStatus{Message: msg}}
}

// TestRunDrain: dev node drain shows the pods left on the node and why
// replacements wait, and ends when the leader ends the drain: done with
// the node empty, an error naming the pods that keep their data there, or
// one saying the node was uncordoned; past --timeout it says the drain
// goes on and how to stop it.
func TestRunDrain(t *testing.T) {
	draining := api.Node{Name: "h2", Status: api.NodeReady, Cordoned: true, Draining: true}
	drained := api.Node{Name: "h2", Status: api.NodeReady, Cordoned: true}
	tests := []struct {
		name     string
		steps    []drainStep
		wantOut  string
		wantProg []string
		wantErr  string
	}{
		{
			name: "moved",
			steps: []drainStep{
				{draining, []api.Pod{drainPod("web", 2, "h2", ""), drainPod("web", 4, "", "0/3 nodes available: 1 node cordoned, 2 max 1 replicas per node reached")}},
				{draining, []api.Pod{drainPod("web", 2, "h2", ""), drainPod("web", 4, "h1", "")}},
				{drained, []api.Pod{drainPod("web", 4, "h1", "")}},
			},
			wantProg: []string{"draining h2: 1 pod left (web-2); web-4 waits: 0/3 nodes available", "draining h2: 1 pod left (web-2)\n", "draining h2: no pod left"},
			wantOut:  "node h2 drained",
		},
		{
			name:    "data on the node",
			steps:   []drainStep{{drained, []api.Pod{drainPod("db", 1, "h2", "")}}},
			wantErr: "db-1 keep running there (named volumes or bind mounts pin them to it)",
		},
		{
			name:    "uncordoned",
			steps:   []drainStep{{api.Node{Name: "h2", Status: api.NodeReady}, []api.Pod{drainPod("web", 1, "h2", "")}}},
			wantErr: "stopped, the node was uncordoned; 1 pod still on it",
		},
		{
			name:    "timeout",
			steps:   []drainStep{{draining, []api.Pod{drainPod("web", 1, "h2", "")}}},
			wantErr: "1 pod still on it after 200ms; the drain goes on",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, prog bytes.Buffer
			err := runDrain(t.Context(), &fakeDrain{steps: tt.steps}, drainOptions{node: "h2", timeout: 200 * time.Millisecond}, &out, &prog)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("runDrain: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("runDrain: %v, want an error with %q", err, tt.wantErr)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("output %q, want %q", out.String(), tt.wantOut)
			}
			for _, want := range tt.wantProg {
				if !strings.Contains(prog.String(), want) {
					t.Errorf("progress:\n%s\nwant %q", prog.String(), want)
				}
			}
		})
	}
	var out bytes.Buffer
	if err := runDrain(t.Context(), &fakeDrain{}, drainOptions{node: "h2", detach: true}, &out, &out); err != nil ||
		!strings.Contains(out.String(), "dev node uncordon h2 stops it") {
		t.Errorf("--detach: %v %q", err, out.String())
	}
}

// TestNodeStatus: dev nodes' STATUS column.
func TestNodeStatus(t *testing.T) {
	tests := []struct {
		name string
		node api.Node
		want string
	}{
		{"ready", api.Node{Status: api.NodeReady}, "ready"},
		{"cordoned", api.Node{Status: api.NodeReady, Cordoned: true}, "ready,cordoned"},
		{"draining", api.Node{Status: api.NodeReady, Cordoned: true, Draining: true}, "ready,draining"},
		{"engine unreachable", api.Node{Status: api.NodeReady, EngineUnreachable: true}, "engine unreachable"},
		{"engine unreachable, cordoned", api.Node{Status: api.NodeReady, EngineUnreachable: true, Cordoned: true}, "engine unreachable,cordoned"},
		{"down", api.Node{Status: api.NodeDown, EngineUnreachable: true}, "down"},
	}
	for _, tt := range tests {
		if got := nodeStatus(tt.node); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}
