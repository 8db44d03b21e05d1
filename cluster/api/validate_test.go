package api

import (
	"strings"
	"testing"
)

func TestCheckReplicas(t *testing.T) {
	tests := []struct {
		name     string
		replicas int
		cname    string
		wantErr  string
	}{
		{name: "zero", replicas: 0},
		{name: "many", replicas: 5},
		{name: "negative", replicas: -1, wantErr: `service "web": replicas must be >= 0, got -1`},
		{name: "fixed name, one", replicas: 1, cname: "web-x"},
		{name: "fixed name, none", replicas: 0, cname: "web-x"},
		{name: "fixed name, two", replicas: 2, cname: "web-x",
			wantErr: `service "web": container_name "web-x" cannot be used with replicas 2; remove container_name or set replicas to 1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckReplicas("web", tt.replicas, tt.cname)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr) {
				t.Fatalf("CheckReplicas = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestValidateProject(t *testing.T) {
	svc := func(name string, mod ...func(*ServiceSpec)) ServiceSpec {
		s := ServiceSpec{Project: "shop", Name: name, Image: "x", Replicas: 1}
		for _, m := range mod {
			m(&s)
		}
		return s
	}
	tests := []struct {
		name    string
		p       Project
		wantErr string
	}{
		{name: "valid", p: Project{Name: "shop", Services: []ServiceSpec{svc("web"), svc("db")}}},
		{name: "bad project name", p: Project{Name: "Shop", Services: []ServiceSpec{svc("web")}}, wantErr: "use lowercase letters"},
		{name: "no services", p: Project{Name: "shop"}, wantErr: "has no services"},
		{name: "twice", p: Project{Name: "shop", Services: []ServiceSpec{svc("web"), svc("web")}}, wantErr: "appears twice"},
		{name: "no image", p: Project{Name: "shop", Services: []ServiceSpec{svc("web", func(s *ServiceSpec) { s.Image = "" })}}, wantErr: "no image"},
		{name: "other project", p: Project{Name: "shop", Services: []ServiceSpec{svc("web", func(s *ServiceSpec) { s.Project = "x" })}}, wantErr: `project "x"`},
		{name: "negative replicas", p: Project{Name: "shop", Services: []ServiceSpec{svc("web", func(s *ServiceSpec) { s.Replicas = -1 })}}, wantErr: "replicas must be >= 0"},
		{name: "bad constraint", p: Project{Name: "shop", Services: []ServiceSpec{svc("web", func(s *ServiceSpec) {
			s.Placement.Constraints = []string{"node.cpu>2"}
		})}}, wantErr: "ATTRIBUTE==VALUE"},
		{name: "required dependency missing", p: Project{Name: "shop", Services: []ServiceSpec{svc("web", func(s *ServiceSpec) {
			s.DependsOn = []Dependency{{Service: "db", Required: true}}
		})}}, wantErr: "depends on undefined service db"},
		{name: "optional dependency missing", p: Project{Name: "shop", Services: []ServiceSpec{svc("web", func(s *ServiceSpec) {
			s.DependsOn = []Dependency{{Service: "db"}}
		})}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateProject(&tt.p)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("ValidateProject = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
