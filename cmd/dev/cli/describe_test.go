package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
)

// fakeDescribeAPI: project shop (web: 2 replicas, one running on n1, one
// pending; db with a sidecar), project blog (web too), nodes n1 (ready)
// and n2 (cordoned, engine unreachable).
type fakeDescribeAPI struct{}

var describeNow = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func describeWeb() api.ServiceSpec {
	sec := 3 * time.Second
	d := api.Duration(sec)
	return api.ServiceSpec{Project: "shop", Name: "web", Image: "shop-web", ImageID: "sha256:0123456789abcdef0123",
		Command: []string{"serve", "--port", "8080"}, Environment: map[string]string{"DB_PASSWORD": "hunter2", "MODE": "prod"},
		Ports:       []api.PortSpec{{Target: 8080, Published: 80, Protocol: "tcp"}},
		Volumes:     []api.VolumeMount{{Type: api.MountVolume, Source: "data", Target: "/data"}},
		Secrets:     []api.SecretMount{{Name: "token", Target: "/run/secrets/token", Content: []byte("s3cret")}},
		Labels:      map[string]string{"tier": "front"}, // restart: none given, always
		Healthcheck: &api.Healthcheck{Test: []string{"CMD", "/app", "health"}, Interval: &d, Retries: 3},
		Resources:   api.Resources{Reservations: api.ResourceAmounts{MemoryBytes: 256 << 20}},
		Update:      &api.UpdateConfig{Parallelism: 2, Order: "start-first"},
	}
}

func (fakeDescribeAPI) Pods(_ context.Context, q api.PodQuery) (api.PodList, error) {
	web := describeWeb()
	pods := []api.Pod{
		{Name: "shop-web-1", Project: "shop", Service: "web", Index: 1, Node: "n1", SpecHash: web.Hash(),
			Labels: map[string]string{"dev.pod": "shop-web-1", "tier": "front"},
			Status: api.PodStatus{State: api.PodRunning, Health: api.HealthHealthy, IP: "10.213.1.2", Restarts: 1,
				ContainerID: "abcdef0123456789", StartedAt: describeNow.Add(-90 * time.Second), Paused: true}},
		{Name: "shop-web-2", Project: "shop", Service: "web", Index: 2, SpecHash: web.Hash(),
			Status: api.PodStatus{Message: "0/2 nodes available: 1 insufficient memory, 1 node cordoned"}},
		{Name: "shop-db-1", Project: "shop", Service: "db", Index: 1, Node: "n2", SpecHash: "old",
			Status: api.PodStatus{State: api.PodExited, ExitCode: 137}, Stopped: true},
		{Name: "blog-web-1", Project: "blog", Service: "web", Index: 1, Node: "n1", Status: api.PodStatus{State: api.PodRunning}},
	}
	var out []api.Pod
	for _, p := range pods {
		if (q.Project == "" || p.Project == q.Project) && (q.Node == "" || p.Node == q.Node) {
			out = append(out, p)
		}
	}
	return api.PodList{Pods: out}, nil
}

func (fakeDescribeAPI) Projects(context.Context) ([]api.ProjectSummary, error) {
	web := describeWeb()
	db := api.ServiceSpec{Project: "shop", Name: "db", Image: "db"}
	return []api.ProjectSummary{
		{Name: "shop", Services: []api.ReplicationController{
			{Project: "shop", Service: "web", Replicas: 2, Template: web, SpecHash: web.Hash(), VIP: "10.214.0.2",
				Update: &api.UpdateStatus{State: "updating", StartedAt: describeNow.Add(-time.Minute)}},
			{Project: "shop", Service: "db", Replicas: 1, Template: db, SpecHash: db.Hash(), PinnedNode: "n2"},
		}},
		{Name: "blog", Services: []api.ReplicationController{{Project: "blog", Service: "web", Replicas: 1}}},
	}, nil
}

func (fakeDescribeAPI) Services(_ context.Context, project string) ([]api.ServiceInfo, error) {
	if project != "shop" {
		return nil, nil
	}
	return []api.ServiceInfo{{Project: "shop", Name: "web", VIP: "10.214.0.2", Desired: 2, Ready: 1,
		Ports:     []api.PortSpec{{Target: 8080, Protocol: "tcp"}},
		Published: []api.PortSpec{{Target: 8080, Published: 80, Protocol: "tcp"}},
		Endpoints: []string{"10.213.1.2"},
		Ingress: []api.IngressRoute{{Host: "shop.example.com", Path: "/", Port: 8080, TLS: "off"},
			{Host: "shop.localhost", Path: "/", Port: 8080, TLS: api.IngressTLSLocal}}}}, nil
}

func (fakeDescribeAPI) Nodes(context.Context) ([]api.Node, error) {
	return []api.Node{
		{Name: "n1", Address: "192.168.1.10", Status: api.NodeReady, Role: "leader", Pods: 2,
			Labels: map[string]string{"zone": "a"}, Allocatable: api.ResourceAmounts{NanoCPUs: 2e9, MemoryBytes: 4 << 30},
			Reserved: api.ResourceAmounts{MemoryBytes: 256 << 20}},
		{Name: "n2", Address: "192.168.1.11", Status: api.NodeReady, Role: "worker", Cordoned: true, EngineUnreachable: true},
	}, nil
}

func (fakeDescribeAPI) Events(context.Context, uint64, time.Duration) (api.EventList, error) {
	at := describeNow.Add(-time.Minute)
	return api.EventList{Events: []api.Event{
		{Index: 1, Time: at, Reason: api.EventScheduled, Kind: "pod", Name: "shop-web-1", Node: "n1", Message: "scheduled on n1"},
		{Index: 2, Time: at, Reason: "Pending", Warning: true, Kind: "pod", Name: "shop-web-2", Message: "0/2 nodes available"},
		{Index: 3, Time: at, Reason: api.EventScaled, Kind: "service", Name: "shop/web", Message: "scaled shop/web from 1 to 2"},
		{Index: 4, Time: at, Reason: api.EventEngineUnreachable, Warning: true, Kind: "node", Name: "n2", Node: "n2", Message: "its Docker Engine does not answer"},
	}}, nil
}

// describeLines runs dev describe and returns its text output.
func describeText(t *testing.T, kind, name, project string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := runDescribe(context.Background(), fakeDescribeAPI{}, kind, name, project,
		describeOptions{output: "table", now: func() time.Time { return describeNow }}, &out)
	return out.String(), err
}

// field returns the value of "Key:   value" in out, or "".
func field(out, key string) string {
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && k == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func TestDescribePod(t *testing.T) {
	out, err := describeText(t, "pod", "web-1", "shop")
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"Name":        "shop-web-1",
		"Node":        "n1",
		"IP":          "10.213.1.2",
		"State":       "paused",
		"Ready":       "1/1",
		"Health":      "healthy",
		"Restarts":    "1",
		"Labels":      "dev.pod=shop-web-1, tier=front",
		"Image":       "shop-web (0123456789ab)",
		"Command":     "serve --port 8080",
		"Ports":       "8080/tcp",
		"Published":   "80->8080/tcp",
		"Environment": "DB_PASSWORD, MODE (values not shown)",
		"Mounts":      "/data from volume data",
		"Secrets":     "token at /run/secrets/token",
		"Healthcheck": "CMD /app health, every 3s, 3 retries",
		"Restart":     "always",
	} {
		if got := field(out, key); got != want {
			t.Errorf("%s: %q, want %q", key, got, want)
		}
	}
	if !strings.Contains(field(out, "Started"), "(1m30s ago)") {
		t.Errorf("Started: %q, want 1m30s ago", field(out, "Started"))
	}
	if field(out, "Pending") != "" {
		t.Errorf("a running pod shows Pending: %q", field(out, "Pending"))
	}
	if strings.Contains(out, "hunter2") || strings.Contains(out, "s3cret") {
		t.Errorf("describe shows an environment value or a secret:\n%s", out)
	}
	if !strings.Contains(out, "Scheduled") || strings.Contains(out, "shop-web-2") {
		t.Errorf("events: want shop-web-1's only:\n%s", out)
	}
}

func TestDescribePendingPodSaysWhy(t *testing.T) {
	out, err := describeText(t, "pod", "shop-web-2", "")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := field(out, "Pending"), "0/2 nodes available: 1 insufficient memory, 1 node cordoned"; got != want {
		t.Errorf("Pending: %q, want %q\n%s", got, want, out)
	}
	if field(out, "State") != "pending" || field(out, "Node") != "-" {
		t.Errorf("State %q, Node %q", field(out, "State"), field(out, "Node"))
	}
}

func TestDescribePodOfAnOldTemplate(t *testing.T) {
	out, err := describeText(t, "pod", "shop-db-1", "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(field(out, "Template"), "no longer the service's") || field(out, "Image") != "" {
		t.Errorf("a pod of a template the service no longer has:\n%s", out)
	}
	if !strings.Contains(field(out, "State"), "stopped by dev stop") || field(out, "Exit code") != "137" {
		t.Errorf("a stopped pod:\n%s", out)
	}
}

func TestDescribeService(t *testing.T) {
	out, err := describeText(t, "service", "web", "shop")
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"Replicas":  "2 desired, 1 ready",
		"VIP":       "10.214.0.2",
		"Ports":     "all (8080/tcp)",
		"Published": "80->8080/tcp",
		"Ingress":   "shop.example.com/ -> port 8080 (tls off), shop.localhost/ -> port 8080 (tls local: local CA)",
		"Update":    "parallelism 2, order start-first, on failure pause, monitor 0s",
	} {
		if got := field(out, key); got != want {
			t.Errorf("%s: %q, want %q", key, got, want)
		}
	}
	for _, want := range []string{"shop-web-1", "shop-web-2", "scaled shop/web from 1 to 2"} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "blog-web-1") {
		t.Errorf("another project's pod:\n%s", out)
	}
}

func TestDescribeServiceNames(t *testing.T) {
	tests := []struct {
		name, arg, project string
		wantErr            string
	}{
		{name: "PROJECT/SERVICE", arg: "shop/db"},
		{name: "the one project that has it", arg: "db"},
		{name: "two projects have it", arg: "web", wantErr: "projects shop, blog have one; name one with -p or as PROJECT/web"},
		{name: "none", arg: "cache", wantErr: "no such service; `dev services` lists them"},
		{name: "not in -p", arg: "db", project: "blog", wantErr: "project blog has no such service"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := describeText(t, "service", tt.arg, tt.project)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestDescribeNode(t *testing.T) {
	out, err := describeText(t, "node", "n2", "")
	if err != nil {
		t.Fatal(err)
	}
	if got := field(out, "Status"); got != "engine unreachable,cordoned" {
		t.Errorf("Status: %q", got)
	}
	if !strings.Contains(out, "shop-db-1") || strings.Contains(out, "shop-web-1") || !strings.Contains(out, "EngineUnreachable") {
		t.Errorf("n2's pods and events:\n%s", out)
	}
	out, err = describeText(t, "node", "n1", "")
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"Role": "leader", "Address": "192.168.1.10", "Labels": "zone=a",
		"CPU": "0.0 reserved of 2.0 allocatable", "Memory": "256MiB reserved of 4096MiB allocatable",
	} {
		if got := field(out, key); got != want {
			t.Errorf("%s: %q, want %q", key, got, want)
		}
	}
	if !strings.Contains(out, "shop-web-1") || !strings.Contains(out, "blog-web-1") || !strings.Contains(out, "Events:   <none>") {
		t.Errorf("n1: want its two pods and no events:\n%s", out)
	}
	if _, err := describeText(t, "node", "n9", ""); err == nil || !strings.Contains(err.Error(), "`dev nodes` lists them") {
		t.Errorf("unknown node: %v", err)
	}
}

func TestDescribeJSON(t *testing.T) {
	var out bytes.Buffer
	err := runDescribe(context.Background(), fakeDescribeAPI{}, "pod", "shop-web-2", "",
		describeOptions{output: "json"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Pod      api.Pod
		Pending  string
		Template struct{ Environment []string }
		Events   []api.Event
	}
	if err := json.Unmarshal(out.Bytes(), &d); err != nil {
		t.Fatalf("%v in %s", err, out.String())
	}
	if d.Pod.Name != "shop-web-2" || !strings.HasPrefix(d.Pending, "0/2 nodes available") ||
		strings.Join(d.Template.Environment, ",") != "DB_PASSWORD,MODE" || len(d.Events) != 1 {
		t.Errorf("json = %+v", d)
	}
	if strings.Contains(out.String(), "hunter2") || strings.Contains(out.String(), "s3cret") {
		t.Errorf("json shows an environment value or a secret:\n%s", out.String())
	}
}
