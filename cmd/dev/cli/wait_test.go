package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/devhq/dev/cluster/api"
)

// TestServiceStateWaitsForSidecars: `dev up` is done with a service when
// its pods run whole: every sidecar running, healthy where it has a
// healthcheck, or completed as its restart policy allows.
func TestServiceStateWaitsForSidecars(t *testing.T) {
	spec := api.ServiceSpec{Project: "p", Name: "web", Image: "web", Replicas: 1, Sidecars: []api.ServiceSpec{
		{Project: "p", Name: "amb", Image: "amb", Healthcheck: &api.Healthcheck{Test: []string{"CMD", "/amb", "-health"}}},
		{Project: "p", Name: "init", Image: "init", Restart: api.RestartNo},
	}}
	pod := func(sidecars ...api.ContainerStatus) []api.Pod {
		return []api.Pod{{Name: "p-web-1", Project: "p", Service: "web", Node: "n", SpecHash: spec.Hash(),
			Status: api.PodStatus{State: api.PodRunning, Sidecars: sidecars}}}
	}
	ambUp := api.ContainerStatus{Name: "amb", State: api.PodRunning, Health: api.HealthHealthy}
	initDone := api.ContainerStatus{Name: "init", State: api.PodExited}
	tests := []struct {
		name string
		pods []api.Pod
		want bool
	}{
		{"sidecars not reported yet", pod(), false},
		{"ambassador starting", pod(api.ContainerStatus{Name: "amb", State: api.PodRunning, Health: api.HealthStarting}, initDone), false},
		{"init failed", pod(ambUp, api.ContainerStatus{Name: "init", State: api.PodExited, ExitCode: 2}), false},
		{"init still running", pod(ambUp, api.ContainerStatus{Name: "init", State: api.PodRunning}), true},
		{"whole", pod(ambUp, initDone), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done, err := serviceState(spec, spec.Hash(), tt.pods)
			if err != nil || done != tt.want {
				t.Errorf("serviceState = %v, %v; want %v", done, err, tt.want)
			}
		})
	}
}

// listSeq answers a pod listing with each list in turn, then the last.
type listSeq struct{ lists [][]api.Pod }

func (l *listSeq) Pods(_ context.Context, q api.PodQuery) (api.PodList, error) {
	i := min(int(q.Index), len(l.lists)-1)
	return api.PodList{Index: uint64(i + 1), Pods: l.lists[i]}, nil
}

// TestWaitStopped: dev wait reports each pod of the services as it stops
// (or is removed), other services' pods ignored, and returns the code of
// the last to stop; a service without pods is an error.
func TestWaitStopped(t *testing.T) {
	pod := func(name, svc, state string, code int) api.Pod {
		return api.Pod{Name: name, Project: "p", Service: svc, Node: "n", Status: api.PodStatus{State: state, ExitCode: code}}
	}
	c := &listSeq{lists: [][]api.Pod{
		{pod("p-job-1", "job", api.PodRunning, 0), pod("p-job-2", "job", api.PodRunning, 0), pod("p-web-1", "web", api.PodRunning, 0)},
		{pod("p-job-1", "job", api.PodExited, 0), pod("p-job-2", "job", api.PodRunning, 0), pod("p-web-1", "web", api.PodRunning, 0)},
		{pod("p-job-1", "job", api.PodExited, 0), pod("p-job-2", "job", api.PodExited, 3), pod("p-web-1", "web", api.PodRunning, 0)},
	}}
	var out strings.Builder
	code, err := waitStopped(context.Background(), c, "p", []string{"job"}, &out)
	want := "pod p-job-1 exited with status code 0\npod p-job-2 exited with status code 3\n"
	if err != nil || code != 3 || out.String() != want {
		t.Fatalf("waitStopped = %d, %v, printed:\n%s\nwant 3 and:\n%s", code, err, out.String(), want)
	}

	c = &listSeq{lists: [][]api.Pod{{pod("p-job-1", "job", api.PodRunning, 0)}, {}}}
	out.Reset()
	if code, err := waitStopped(context.Background(), c, "p", []string{"job"}, &out); err != nil || code != 0 || !strings.Contains(out.String(), "removed") {
		t.Fatalf("a removed pod: %d, %v, %q", code, err, out.String())
	}
	if _, err := waitStopped(context.Background(), c, "p", []string{"nope"}, &out); err == nil || !strings.Contains(err.Error(), "no pods of service nope") {
		t.Fatalf("a service without pods: %v", err)
	}
}

// TestServiceCreated: `dev up --no-start` is done with a service once its
// pods of the current template are placed with their containers created.
func TestServiceCreated(t *testing.T) {
	spec := api.ServiceSpec{Project: "p", Name: "web", Image: "web", Replicas: 2}
	pod := func(i int, hash, node, id, state string) api.Pod {
		return api.Pod{Name: api.PodName("p", "web", i), Service: "web", SpecHash: hash, Node: node, Stopped: true,
			Status: api.PodStatus{State: state, ContainerID: id, Message: "x"}}
	}
	tests := []struct {
		name    string
		pods    []api.Pod
		want    bool
		wantErr bool
	}{
		{"one missing", []api.Pod{pod(1, "h", "n", "c1", api.PodExited)}, false, false},
		{"not placed", []api.Pod{pod(1, "h", "n", "c1", api.PodExited), pod(2, "h", "", "", api.PodPending)}, false, false},
		{"no container yet", []api.Pod{pod(1, "h", "n", "c1", api.PodExited), pod(2, "h", "n", "", api.PodExited)}, false, false},
		{"created", []api.Pod{pod(1, "h", "n", "c1", api.PodExited), pod(2, "h", "n", "c2", api.PodExited), pod(3, "old", "n", "c3", api.PodRunning)}, true, false},
		{"failed", []api.Pod{pod(1, "h", "n", "", api.PodFailed), pod(2, "h", "n", "c2", api.PodExited)}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := serviceCreated(spec, "h", tt.pods)
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Errorf("serviceCreated = %v, %v; want %v (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}
