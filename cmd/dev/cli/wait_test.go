package cli

import (
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
