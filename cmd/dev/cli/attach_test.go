package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/devhq/dev/cluster/api"
)

// podsOnly answers Pods from a fixed list (filtered by project).
type podsOnly struct {
	api.Client
	pods []api.Pod
}

func (c podsOnly) Pods(_ context.Context, q api.PodQuery) (api.PodList, error) {
	var out []api.Pod
	for _, p := range c.pods {
		if q.Project == "" || p.Project == q.Project {
			out = append(out, p)
		}
	}
	return api.PodList{Pods: out}, nil
}

func TestResolvePod(t *testing.T) {
	pod := func(project, service string, i int, state string) api.Pod {
		return api.Pod{Name: api.PodName(project, service, i), Project: project, Service: service, Index: i,
			Status: api.PodStatus{State: state}}
	}
	c := podsOnly{pods: []api.Pod{
		pod("shop", "web", 2, api.PodRunning),
		pod("shop", "web", 1, api.PodExited),
		pod("shop", "web", 3, api.PodRunning),
		pod("shop", "db", 1, api.PodExited),
		pod("blog", "web", 1, api.PodRunning),
		pod("blog", "solo", 1, api.PodRunning),
	}}
	tests := []struct {
		name, project, target, want, wantErr string
	}{
		{"service: first running pod", "shop", "web", "shop-web-2", ""},
		{"service.N", "shop", "web.1", "shop-web-1", ""},
		{"full pod name", "", "shop-web-3", "shop-web-3", ""},
		{"service unique across projects", "", "solo", "blog-solo-1", ""},
		{"service in two projects", "", "web", "", "exists in projects blog, shop"},
		{"no running pod", "shop", "db", "", "no running pod of service db"},
		{"no such number", "shop", "web.7", "", "no pod number 7"},
		{"unknown", "shop", "nope", "", "no pod or service nope in project shop"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolvePod(context.Background(), c, tt.project, tt.target)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("resolvePod(%q, %q) = %s, %v; want error %q", tt.project, tt.target, got.Name, err, tt.wantErr)
				}
				return
			}
			if err != nil || got.Name != tt.want {
				t.Fatalf("resolvePod(%q, %q) = %s, %v; want %s", tt.project, tt.target, got.Name, err, tt.want)
			}
		})
	}
}
