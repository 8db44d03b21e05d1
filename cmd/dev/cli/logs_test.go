package cli

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
)

// lostAgent lists one running pod once, then fails as an agent that went
// away does; its log streams follow until their context ends.
type lostAgent struct {
	api.Client
	calls atomic.Int32
}

func (c *lostAgent) Pods(_ context.Context, q api.PodQuery) (api.PodList, error) {
	if c.calls.Add(1) > 1 {
		return api.PodList{}, errors.New("connection refused")
	}
	return api.PodList{Index: 1, Pods: []api.Pod{{Name: "shop-web-1", Project: "shop", Service: "web", Node: "n1",
		Status: api.PodStatus{State: api.PodRunning, ContainerID: "c1"}}}}, nil
}

func (c *lostAgent) Logs(ctx context.Context, _, _ string, _ bool, _ int) (io.ReadCloser, error) {
	r, w := io.Pipe()
	go func() { <-ctx.Done(); w.CloseWithError(ctx.Err()) }()
	return r, nil
}

// TestFollowEndsWhenThePodWatchFails: dev logs -f returns the watch's error
// instead of waiting on streams that follow forever.
func TestFollowEndsWhenThePodWatchFails(t *testing.T) {
	done := make(chan error, 1)
	go func() {
		done <- streamLogs(context.Background(), &lostAgent{}, "shop", nil, "", true, 10, io.Discard)
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("streamLogs = %v, want the watch's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("dev logs -f still waits on its streams after the pod watch failed")
	}
}

// TestSidecarSourceKey: dev logs -f -c side follows a sidecar once, whether
// its status was reported yet or not (a second key was a second stream,
// every line printed twice).
func TestSidecarSourceKey(t *testing.T) {
	p := api.Pod{Name: "shop-web-1", Service: "web"}
	before := logSources(p, "side")
	p.Status.Sidecars = []api.ContainerStatus{{Name: "side", State: api.PodRunning}}
	after := logSources(p, "side")
	if len(before) != 1 || len(after) != 1 || before[0].key != after[0].key {
		t.Errorf("keys before and after the sidecar's report: %+v, %+v; want one and the same", before, after)
	}
}
