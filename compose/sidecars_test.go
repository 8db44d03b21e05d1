package compose

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devhq/dev/cluster/api"
)

func loadYAML(t *testing.T, yaml string) (*Loaded, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return Load(context.Background(), Options{WorkingDir: dir, Environ: []string{}})
}

// TestSidecars: a service sharing another's network is a sidecar of it:
// no service of its own, a container spec in the other's pods, its
// reservations added to the pod's, its dependencies moved to the pod.
func TestSidecars(t *testing.T) {
	l, err := loadYAML(t, `name: shop
services:
  web:
    image: web
    ports: ["8080:80"]
    deploy:
      replicas: 3
      resources: {reservations: {memory: 100M}}
  logs:
    image: shipper
    network_mode: service:web
    ipc: service:web
    environment: {TARGET: localhost:80}
    expose: ["9100"]
    deploy:
      resources: {reservations: {memory: 20M}}
  client:
    image: curl
    depends_on: [logs]
`)
	if err != nil {
		t.Fatal(err)
	}
	if got := serviceNames(l.Project); strings.Join(got, ",") != "client,web" {
		t.Fatalf("services %v, want client and web (logs is a sidecar)", got)
	}
	web := l.Project.Service("web")
	if len(web.Sidecars) != 1 || web.Sidecars[0].Name != "logs" || web.Sidecars[0].Image != "shipper" ||
		web.Sidecars[0].Environment["TARGET"] != "localhost:80" || len(web.Sidecars[0].DependsOn) != 0 {
		t.Fatalf("web's sidecars = %+v", web.Sidecars)
	}
	if got := web.PodReservations().MemoryBytes; got != 120<<20 {
		t.Errorf("pod reservation %d, want 120 MiB (web's and the sidecar's)", got)
	}
	if deps := l.Project.Service("client").DependsOn; len(deps) != 1 || deps[0].Service != "web" {
		t.Errorf("client depends on %+v, want web (the pods logs runs in)", deps)
	}
	for _, w := range l.Warnings {
		if w.Key == "network_mode" || w.Key == "ipc" {
			t.Errorf("warning %s", w)
		}
	}
	// A sidecar's change rolls its service's pods: the pod template hash moves.
	hash := func(image string) string {
		l, err := loadYAML(t, "name: shop\nservices:\n  web: {image: web}\n  logs: {image: "+image+", network_mode: \"service:web\"}\n")
		if err != nil {
			t.Fatal(err)
		}
		return l.Project.Service("web").Hash()
	}
	if hash("shipper:1") == hash("shipper:2") {
		t.Errorf("a sidecar's new image does not change its service's pod template hash")
	}
}

func TestSidecarErrors(t *testing.T) {
	tests := []struct {
		name, yaml, wantErr string
	}{
		{"sidecar of a sidecar", `services:
  web: {image: web}
  a: {image: a, network_mode: "service:web"}
  b: {image: b, network_mode: "service:a"}
`, `service "b": network_mode: service:a, which itself shares the network of web; use network_mode: service:web`},
		{"ports on a sidecar", `services:
  web: {image: web}
  a: {image: a, network_mode: "service:web", ports: ["9000:9000"]}
`, `service "a": ports belong to the pod it shares with web; move them to service web`},
		{"other replicas", `services:
  web: {image: web, deploy: {replicas: 2}}
  a: {image: a, network_mode: "service:web", deploy: {replicas: 3}}
`, `service "a": 3 replicas, but it runs in the pods of web, which has 2`},
		{"container network", `services:
  a: {image: a, network_mode: "container:abc"}
`, `use network_mode: service:NAME`},
		{"named infra", `services:
  web: {image: web}
  infra: {image: a, network_mode: "service:web"}
`, `cannot be named infra`},
		{"pid of another pod", `services:
  web: {image: web}
  a: {image: a, pid: "service:web"}
`, `service "a": pid: service:web needs network_mode: service:web as well`},
		{"pid of a container", `services:
  a: {image: a, pid: "container:abc"}
`, `pid: container:abc is not supported; use pid: host, or pid: service:NAME`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadYAML(t, tt.yaml)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Load = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestNamespaces: pid: service:X in a sidecar of X puts both containers in
// the pod's PID namespace; pid: host and network_mode: host are the node's;
// a host-network pod serves its ports' targets on its node, published
// ports being dropped with a warning, as Docker does.
func TestNamespaces(t *testing.T) {
	l, err := loadYAML(t, `name: shop
services:
  web:
    image: web
  debug:
    image: busybox
    network_mode: service:web
    pid: service:web
  plain:
    image: busybox
    network_mode: service:web
  agent:
    image: agent
    network_mode: host
    pid: host
    ports: ["9100", "8080:80"]
`)
	if err != nil {
		t.Fatal(err)
	}
	web := l.Project.Service("web")
	if web.PID != api.PIDPod || len(web.Sidecars) != 2 {
		t.Fatalf("web: pid %q with %d sidecars, want %q and 2", web.PID, len(web.Sidecars), api.PIDPod)
	}
	for _, c := range web.Sidecars {
		want := map[string]string{"debug": api.PIDPod, "plain": ""}[c.Name]
		if c.PID != want {
			t.Errorf("sidecar %s: pid %q, want %q", c.Name, c.PID, want)
		}
	}
	agent := l.Project.Service("agent")
	if !agent.HostNetwork || agent.PID != api.PIDHost || web.HostNetwork {
		t.Errorf("agent: host network %v, pid %q; web host network %v", agent.HostNetwork, agent.PID, web.HostNetwork)
	}
	if got := strings.Join(agent.HostPorts(), ","); got != "9100/tcp,80/tcp" {
		t.Errorf("agent's host ports %s, want 9100/tcp,80/tcp", got)
	}
	for _, p := range agent.Ports {
		if p.Published != 0 {
			t.Errorf("agent publishes %d", p.Published)
		}
	}
	var warned []string
	for _, w := range l.Warnings {
		warned = append(warned, w.String())
	}
	if got := strings.Join(warned, "\n"); !strings.Contains(got, "published port 8080 is discarded with network_mode: host") ||
		strings.Contains(got, `"pid"`) || strings.Contains(got, `"network_mode"`) {
		t.Errorf("warnings:\n%s", got)
	}
}
