package api_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
)

func baseSpec() api.ServiceSpec {
	return api.ServiceSpec{
		Project:     "shop",
		Name:        "web",
		Image:       "nginx:1.27",
		Command:     []string{"nginx", "-g", "daemon off;"},
		Environment: map[string]string{"MODE": "prod", "PORT": "80"},
		Ports:       []api.PortSpec{{Target: 80, Published: 8080, Protocol: "tcp"}},
		Replicas:    2,
	}
}

func TestServiceSpecHashStable(t *testing.T) {
	a, b := baseSpec(), baseSpec()
	// Same content, maps filled in another order.
	b.Environment = map[string]string{}
	b.Environment["PORT"] = "80"
	b.Environment["MODE"] = "prod"
	if a.Hash() != b.Hash() {
		t.Errorf("equal specs hash differently: %s vs %s", a.Hash(), b.Hash())
	}
	if got := len(a.Hash()); got != 16 {
		t.Errorf("hash %q has %d hex chars, want 16", a.Hash(), got)
	}
}

func TestServiceSpecHash(t *testing.T) {
	base := baseSpec().Hash()
	tests := []struct {
		name       string
		mutate     func(s *api.ServiceSpec)
		wantChange bool
	}{
		{"replicas", func(s *api.ServiceSpec) { s.Replicas = 7 }, false},
		{"depends_on", func(s *api.ServiceSpec) {
			s.DependsOn = []api.Dependency{{Service: "db", Condition: api.ConditionHealthy, Required: true}}
		}, false},
		{"build", func(s *api.ServiceSpec) { s.Build = &api.BuildSpec{Context: "./web", Dockerfile: "Dockerfile.dev"} }, false},
		{"environment value", func(s *api.ServiceSpec) { s.Environment["MODE"] = "dev" }, true},
		{"environment added", func(s *api.ServiceSpec) { s.Environment["DEBUG"] = "1" }, true},
		{"image", func(s *api.ServiceSpec) { s.Image = "nginx:1.28" }, true},
		{"image id (rebuilt)", func(s *api.ServiceSpec) { s.ImageID = "sha256:abc" }, true},
		{"command", func(s *api.ServiceSpec) { s.Command = []string{"nginx"} }, true},
		{"restart", func(s *api.ServiceSpec) { s.Restart = api.RestartNo }, true},
		{"published port", func(s *api.ServiceSpec) { s.Ports[0].Published = 9090 }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := baseSpec()
			tt.mutate(&s)
			if changed := s.Hash() != base; changed != tt.wantChange {
				t.Errorf("hash changed = %v, want %v", changed, tt.wantChange)
			}
		})
	}
}

// TestFileContentRolls: a secret's or a config's new content is a new
// pod template: the pods that use it are recreated.
func TestFileContentRolls(t *testing.T) {
	with := func(secret, config string) api.ServiceSpec {
		s := baseSpec()
		s.Secrets = []api.SecretMount{{Name: "token", Target: "/run/secrets/token", Content: []byte(secret)}}
		s.Configs = []api.SecretMount{{Name: "app", Target: "/app", Content: []byte(config)}}
		return s
	}
	base := with("s1", "c1").Hash()
	if with("s2", "c1").Hash() == base || with("s1", "c2").Hash() == base {
		t.Error("new secret or config content kept the template hash")
	}
}

func TestRestartPolicy(t *testing.T) {
	tests := []struct {
		restart string
		want    string
	}{
		{"", api.RestartAlways},
		{api.RestartNo, api.RestartNo},
		{api.RestartOnFailure, api.RestartOnFailure},
		{api.RestartUnlessStopped, api.RestartUnlessStopped},
	}
	for _, tt := range tests {
		if got := (api.ServiceSpec{Restart: tt.restart}).RestartPolicy(); got != tt.want {
			t.Errorf("RestartPolicy(%q) = %q, want %q", tt.restart, got, tt.want)
		}
	}
}

func TestSelectorMatches(t *testing.T) {
	labels := map[string]string{api.LabelProject: "shop", api.LabelService: "web", "tier": "front"}
	tests := []struct {
		name   string
		sel    api.Selector
		labels map[string]string
		want   bool
	}{
		{"empty selector matches everything", api.Selector{}, labels, true},
		{"nil selector matches nil labels", nil, nil, true},
		{"all keys match", api.Selector{api.LabelProject: "shop", api.LabelService: "web"}, labels, true},
		{"one value differs", api.Selector{api.LabelProject: "shop", api.LabelService: "db"}, labels, false},
		{"key missing", api.Selector{"env": "prod"}, labels, false},
		{"empty value needs the key", api.Selector{"env": ""}, labels, false},
		{"empty value matches empty label", api.Selector{"env": ""}, map[string]string{"env": ""}, true},
		{"nil labels", api.Selector{"tier": "front"}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.sel.Matches(tt.labels); got != tt.want {
				t.Errorf("%v.Matches(%v) = %v, want %v", tt.sel, tt.labels, got, tt.want)
			}
		})
	}
}

func TestParseSelector(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    api.Selector
		wantErr bool
	}{
		{"empty", "", api.Selector{}, false},
		{"one", "tier=front", api.Selector{"tier": "front"}, false},
		{"two", "dev.project=shop,dev.service=web", api.Selector{api.LabelProject: "shop", api.LabelService: "web"}, false},
		{"spaces around parts", " a=1 , b=2 ", api.Selector{"a": "1", "b": "2"}, false},
		{"empty parts skipped", "a=1,,b=2,", api.Selector{"a": "1", "b": "2"}, false},
		{"empty value", "a=", api.Selector{"a": ""}, false},
		{"value with equals", "a=b=c", api.Selector{"a": "b=c"}, false},
		{"no equals", "tier", nil, true},
		{"empty key", "=front", nil, true},
		{"one bad part", "a=1,b", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := api.ParseSelector(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseSelector(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseSelector(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestSelectorStringRoundTrip(t *testing.T) {
	sel := api.Selector{"b": "2", "a": "1", api.LabelService: "web"}
	s := sel.String()
	if want := "a=1,b=2,dev.service=web"; s != want {
		t.Errorf("String() = %q, want %q", s, want)
	}
	back, err := api.ParseSelector(s)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, sel) {
		t.Errorf("ParseSelector(String()) = %v, want %v", back, sel)
	}
}

func TestDurationJSON(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"string", `"1m30s"`, 90 * time.Second, false},
		{"string ms", `"250ms"`, 250 * time.Millisecond, false},
		{"nanoseconds", `90000000000`, 90 * time.Second, false},
		{"zero", `0`, 0, false},
		{"bad string", `"soon"`, 0, true},
		{"bool", `true`, 0, true},
		{"float", `1.5`, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d api.Duration
			err := json.Unmarshal([]byte(tt.in), &d)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Unmarshal(%s) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if !tt.wantErr && time.Duration(d) != tt.want {
				t.Errorf("Unmarshal(%s) = %v, want %v", tt.in, time.Duration(d), tt.want)
			}
		})
	}
}

func TestDurationMarshalRoundTrip(t *testing.T) {
	d := api.Duration(90 * time.Second)
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `"1m30s"` {
		t.Errorf("Marshal = %s, want \"1m30s\"", b)
	}
	// Inside a spec, as a pointer field.
	in := api.Healthcheck{Test: []string{"CMD", "true"}, Interval: &d, Retries: 3}
	b, err = json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out api.Healthcheck
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Errorf("round trip = %+v, want %+v", out, in)
	}
}

func TestPodReady(t *testing.T) {
	tests := []struct {
		name string
		pod  api.Pod
		want bool
	}{
		{"running, no healthcheck", api.Pod{Status: api.PodStatus{State: api.PodRunning}}, true},
		{"running, healthy", api.Pod{Status: api.PodStatus{State: api.PodRunning, Health: api.HealthHealthy}}, true},
		{"running, starting", api.Pod{Status: api.PodStatus{State: api.PodRunning, Health: api.HealthStarting}}, false},
		{"running, unhealthy", api.Pod{Status: api.PodStatus{State: api.PodRunning, Health: api.HealthUnhealthy}}, false},
		{"running but deleting", api.Pod{Deleting: true, Status: api.PodStatus{State: api.PodRunning}}, false},
		{"pending", api.Pod{Status: api.PodStatus{State: api.PodPending}}, false},
		{"exited", api.Pod{Status: api.PodStatus{State: api.PodExited}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.pod.Ready(); got != tt.want {
				t.Errorf("Ready() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNames(t *testing.T) {
	if got := api.PodName("shop", "web", 3); got != "shop-web-3" {
		t.Errorf("PodName = %q, want shop-web-3", got)
	}
	p := api.Pod{Name: "shop-web-3", Project: "shop", Service: "web", Index: 3}
	if got := p.ShortName(); got != "web-3" {
		t.Errorf("ShortName = %q, want web-3", got)
	}
	rc := api.ReplicationController{Project: "shop", Service: "web"}
	if got := rc.Key(); got != "shop/web" {
		t.Errorf("Key = %q, want shop/web", got)
	}
	sel := rc.Selector()
	if !sel.Matches(map[string]string{api.LabelProject: "shop", api.LabelService: "web", api.LabelPod: "shop-web-3"}) {
		t.Errorf("controller selector %v does not match its own pod", sel)
	}
	if sel.Matches(map[string]string{api.LabelProject: "shop", api.LabelService: "db"}) {
		t.Errorf("controller selector %v matches another service's pod", sel)
	}
}

func TestProjectService(t *testing.T) {
	p := api.Project{Name: "shop", Services: []api.ServiceSpec{{Name: "web"}, {Name: "db"}}}
	if s := p.Service("db"); s == nil || s.Name != "db" {
		t.Errorf("Service(db) = %v", s)
	}
	if s := p.Service("cache"); s != nil {
		t.Errorf("Service(cache) = %v, want nil", s)
	}
	// The returned pointer refers into the project.
	p.Service("web").Replicas = 4
	if p.Services[0].Replicas != 4 {
		t.Errorf("Service() returned a copy, want a pointer into Services")
	}
}
