package cli

import (
	"strings"
	"testing"

	"github.com/devhq/dev/cluster/api"
)

func TestBuildable(t *testing.T) {
	p := &api.Project{Name: "shop", Services: []api.ServiceSpec{
		{Name: "web", Build: &api.BuildSpec{Context: "."}, Sidecars: []api.ServiceSpec{{Name: "proxy", Build: &api.BuildSpec{Context: "p"}}}},
		{Name: "db", Image: "postgres"},
	}}
	names := func(specs []*api.ServiceSpec) string {
		var out []string
		for _, s := range specs {
			out = append(out, s.Name)
		}
		return strings.Join(out, ",")
	}
	for _, tt := range []struct {
		name    string
		args    []string
		want    string
		wantErr string
	}{
		{name: "all, sidecars included", want: "web,proxy,db"},
		{name: "one", args: []string{"proxy"}, want: "proxy"},
		{name: "unknown", args: []string{"web", "cache"}, wantErr: "no service cache in project shop"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := buildable(p, tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || names(got) != tt.want {
				t.Fatalf("buildable = %s, %v; want %s", names(got), err, tt.want)
			}
		})
	}
}
