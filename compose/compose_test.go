package compose

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
)

func testdata(t *testing.T, parts ...string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join(append([]string{"testdata"}, parts...)...))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func dur(d time.Duration) *api.Duration { v := api.Duration(d); return &v }

func boolp(b bool) *bool { return &b }

func load(t *testing.T, opts Options) *Loaded {
	t.Helper()
	if opts.Environ == nil {
		opts.Environ = []string{}
	}
	l, err := Load(context.Background(), opts)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return l
}

func serviceNames(p *api.Project) []string {
	var names []string
	for _, s := range p.Services {
		names = append(names, s.Name)
	}
	return names
}

func TestLoadRich(t *testing.T) {
	dir := testdata(t, "rich")
	l := load(t, Options{WorkingDir: dir, Environ: []string{"FROM_HOST=host-value", "DB_PASSWORD=pw"}})
	want := &api.Project{
		Name:    "rich",
		Volumes: []string{"data", "pgdata"},
		Services: []api.ServiceSpec{
			{
				Project:     "rich",
				Name:        "cache",
				Image:       "redis:7",
				Restart:     api.RestartNo,
				Replicas:    2,
				Healthcheck: &api.Healthcheck{Test: []string{"CMD-SHELL", "redis-cli ping"}},
				Secrets:     []api.SecretMount{{Name: "api_key", Target: "/etc/key", Content: []byte("s3cret\n")}},
				Configs: []api.SecretMount{
					{Name: "redis_conf", Target: "/redis_conf", Content: []byte("s3cret\n")},
					{Name: "greeting", Target: "/etc/greeting.txt", Content: []byte("hello host-value"), Mode: 0o440},
					{Name: "from_env", Target: "/from_env", Content: []byte("pw")},
				},
			},
			{
				Project:       "rich",
				Name:          "db",
				Image:         "postgres:16",
				ContainerName: "rich-db",
				Restart:       api.RestartUnlessStopped,
				Replicas:      1,
				Healthcheck:   &api.Healthcheck{Test: []string{"NONE"}, Disable: true},
				Volumes:       []api.VolumeMount{{Type: api.MountVolume, Source: "pgdata", Target: "/var/lib/postgresql/data"}},
			},
			{
				Project: "rich",
				Name:    "web",
				Image:   "rich-web",
				Build: &api.BuildSpec{
					Context:    filepath.Join(dir, "web"),
					Dockerfile: "Dockerfile.dev",
					Target:     "dev",
					Args:       map[string]string{"VERSION": "1.2"},
				},
				Command:    []string{"serve", "--port", "8080"},
				Entrypoint: []string{"/bin/entry.sh", "--verbose"},
				Environment: map[string]string{
					"GREETING":  "hello",
					"FROM_HOST": "host-value",
					"FROM_FILE": "file-value",
					"EMPTY":     "",
				},
				Ports: []api.PortSpec{
					{Target: 80, Published: 8080, Protocol: "tcp"},
					{Target: 53, Published: 5353, Protocol: "udp", HostIP: "127.0.0.1"},
					{Target: 9000, Protocol: "tcp", Name: "metrics"},
					{Target: 443, Protocol: "tcp"},
				},
				Expose: []string{"9100", "9200/udp"},
				Volumes: []api.VolumeMount{
					{Type: api.MountVolume, Source: "data", Target: "/var/lib/data"},
					{Type: api.MountBind, Source: filepath.Join(dir, "static"), Target: "/srv/static", ReadOnly: true},
					{Type: api.MountVolume, Target: "/cache"},
					{Type: api.MountTmpfs, Target: "/tmp"},
					{Type: api.MountTmpfs, Target: "/run"},
				},
				Secrets: []api.SecretMount{
					{Name: "api_key", Target: "/run/secrets/api_key", Content: []byte("s3cret\n")},
					{Name: "db_password", Target: "/run/secrets/db.txt", Content: []byte("pw"), Mode: 0o400},
				},
				Healthcheck: &api.Healthcheck{
					Test:        []string{"CMD", "curl", "-f", "http://localhost"},
					Interval:    dur(10 * time.Second),
					Timeout:     dur(2 * time.Second),
					StartPeriod: dur(30 * time.Second),
					Retries:     3,
				},
				Restart:  api.RestartOnFailure,
				Replicas: 3,
				Resources: api.Resources{
					Limits:       api.ResourceAmounts{NanoCPUs: 500_000_000, MemoryBytes: 512 << 20, Pids: 100},
					Reservations: api.ResourceAmounts{NanoCPUs: 250_000_000, MemoryBytes: 128 << 20},
				},
				Labels: map[string]string{"com.example.tier": "front"},
				DependsOn: []api.Dependency{
					{Service: "cache", Condition: api.ConditionStarted, Required: false},
					{Service: "db", Condition: api.ConditionHealthy, Required: true},
				},
				StopSignal:      "SIGINT",
				StopGracePeriod: dur(20 * time.Second),
				User:            "1000:1000",
				WorkingDir:      "/srv",
				CapAdd:          []string{"NET_ADMIN"},
				CapDrop:         []string{"ALL"},
				Sysctls:         map[string]string{"net.core.somaxconn": "1024"},
				Hostname:        "web-host",
				Init:            boolp(true),
				Tty:             true,
				StdinOpen:       true,
			},
		},
	}
	if !reflect.DeepEqual(l.Project, want) {
		for i := range want.Services {
			if i < len(l.Project.Services) && !reflect.DeepEqual(l.Project.Services[i], want.Services[i]) {
				t.Errorf("service %s:\n got %+v\nwant %+v", want.Services[i].Name, l.Project.Services[i], want.Services[i])
			}
		}
		t.Fatalf("project:\n got %+v\nwant %+v", l.Project, want)
	}
	if len(l.Warnings) != 0 {
		t.Errorf("warnings: %v", l.Warnings)
	}
	y, err := l.ConfigYAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"name: rich", "FROM_FILE: file-value", "image: postgres:16"} {
		if !strings.Contains(string(y), s) {
			t.Errorf("ConfigYAML lacks %q:\n%s", s, y)
		}
	}
}

func TestLoadFilesAndEnv(t *testing.T) {
	multi := testdata(t, "multi")
	interp := testdata(t, "interp")
	tests := []struct {
		name string
		opts Options
		want map[string]api.ServiceSpec // service -> fields checked: Image, Environment, Ports
	}{
		{
			name: "single file",
			opts: Options{Files: []string{filepath.Join(multi, "compose.yaml")}},
			want: map[string]api.ServiceSpec{
				"web": {Image: "nginx:1", Environment: map[string]string{"A": "base", "B": "base"},
					Ports: []api.PortSpec{{Target: 80, Published: 80, Protocol: "tcp"}}},
			},
		},
		{
			name: "override merged in order",
			opts: Options{Files: []string{filepath.Join(multi, "compose.yaml"), filepath.Join(multi, "prod.yaml")}},
			want: map[string]api.ServiceSpec{
				"web": {Image: "nginx:2", Environment: map[string]string{"A": "base", "B": "prod", "C": "prod"},
					Ports: []api.PortSpec{{Target: 80, Published: 80, Protocol: "tcp"}}},
				"worker": {Image: "busybox"},
			},
		},
		{
			name: "default files include compose.override.yaml",
			opts: Options{WorkingDir: testdata(t, "override-default")},
			want: map[string]api.ServiceSpec{"web": {Image: "nginx:override"}},
		},
		{
			name: "COMPOSE_FILE",
			opts: Options{WorkingDir: multi, Environ: []string{
				"COMPOSE_FILE=" + filepath.Join(multi, "compose.yaml") + ":" + filepath.Join(multi, "prod.yaml")}},
			want: map[string]api.ServiceSpec{
				"web": {Image: "nginx:2", Environment: map[string]string{"A": "base", "B": "prod", "C": "prod"},
					Ports: []api.PortSpec{{Target: 80, Published: 80, Protocol: "tcp"}}},
				"worker": {Image: "busybox"},
			},
		},
		{
			name: "interpolation defaults and .env",
			opts: Options{WorkingDir: interp},
			want: map[string]api.ServiceSpec{
				"app": {Image: "alpine:3.20", Environment: map[string]string{"PORT": "8080", "MODE": "dev"}},
			},
		},
		{
			name: "environment beats .env",
			opts: Options{WorkingDir: interp, Environ: []string{"TAG=edge", "PORT=9090"}},
			want: map[string]api.ServiceSpec{
				"app": {Image: "alpine:edge", Environment: map[string]string{"PORT": "9090", "MODE": "dev"}},
			},
		},
		{
			name: "--env-file replaces .env",
			opts: Options{WorkingDir: interp, EnvFiles: []string{filepath.Join(interp, "prod.env")}},
			want: map[string]api.ServiceSpec{
				"app": {Image: "alpine:3.20", Environment: map[string]string{"PORT": "7070", "MODE": "prod"}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := load(t, tt.opts)
			if len(l.Project.Services) != len(tt.want) {
				t.Fatalf("services = %v, want %d", serviceNames(l.Project), len(tt.want))
			}
			for name, want := range tt.want {
				got := l.Project.Service(name)
				if got == nil {
					t.Fatalf("service %s missing: %v", name, serviceNames(l.Project))
				}
				if got.Image != want.Image || !reflect.DeepEqual(got.Environment, want.Environment) || !reflect.DeepEqual(got.Ports, want.Ports) {
					t.Errorf("service %s = image %q env %v ports %v, want image %q env %v ports %v",
						name, got.Image, got.Environment, got.Ports, want.Image, want.Environment, want.Ports)
				}
			}
		})
	}
}

func TestLoadProfiles(t *testing.T) {
	dir := testdata(t, "profiles")
	tests := []struct {
		name string
		opts Options
		want []string
	}{
		{name: "no profile", opts: Options{WorkingDir: dir}, want: []string{"app"}},
		{name: "--profile", opts: Options{WorkingDir: dir, Profiles: []string{"debug"}}, want: []string{"app", "debug"}},
		{name: "COMPOSE_PROFILES", opts: Options{WorkingDir: dir, Environ: []string{"COMPOSE_PROFILES=tools,debug"}}, want: []string{"app", "debug", "tools"}},
		{name: "--profile beats COMPOSE_PROFILES", opts: Options{WorkingDir: dir, Profiles: []string{"tools"}, Environ: []string{"COMPOSE_PROFILES=debug"}}, want: []string{"app", "tools"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := load(t, tt.opts)
			if got := serviceNames(l.Project); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("services = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLoadProjectName(t *testing.T) {
	named := testdata(t, "named")
	myApp := filepath.Join(t.TempDir(), "My App")
	if err := os.MkdirAll(filepath.Join(myApp, "sub", "deeper"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(myApp, "compose.yaml"), []byte("services:\n  web:\n    image: nginx\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		opts    Options
		chdir   string
		want    string
		wantErr string
	}{
		{name: "-p beats name:", opts: Options{WorkingDir: named, ProjectName: "custom"}, want: "custom"},
		{name: "COMPOSE_PROJECT_NAME beats name: (as compose)", opts: Options{WorkingDir: named, Environ: []string{"COMPOSE_PROJECT_NAME=fromenv"}}, want: "fromenv"},
		{name: "-p beats COMPOSE_PROJECT_NAME", opts: Options{WorkingDir: named, ProjectName: "custom", Environ: []string{"COMPOSE_PROJECT_NAME=fromenv"}}, want: "custom"},
		{name: "name: beats folder", opts: Options{WorkingDir: named}, want: "fromfile"},
		{name: "folder name normalized", opts: Options{WorkingDir: myApp}, want: "myapp"},
		{name: "found in a parent of the current directory", chdir: filepath.Join(myApp, "sub", "deeper"), want: "myapp"},
		{name: "folder of the -f file", opts: Options{Files: []string{filepath.Join(myApp, "compose.yaml")}}, want: "myapp"},
		{name: "invalid -p", opts: Options{WorkingDir: named, ProjectName: "My App"}, wantErr: `invalid project name "My App"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.chdir != "" {
				t.Chdir(tt.chdir)
			}
			tt.opts.Environ = append([]string{}, tt.opts.Environ...)
			l, err := Load(context.Background(), tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if l.Project.Name != tt.want || l.Project.Services[0].Project != tt.want {
				t.Errorf("name = %q, want %q", l.Project.Name, tt.want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	empty := t.TempDir()
	tests := []struct {
		name    string
		opts    Options
		wantIs  error
		wantErr []string
	}{
		{
			name:    "no compose file",
			opts:    Options{WorkingDir: empty},
			wantIs:  ErrNoComposeFile,
			wantErr: []string{"no compose file found in " + empty, "compose.yaml, compose.yml, docker-compose.yml, docker-compose.yaml", "pass -f FILE"},
		},
		{
			name:    "missing -f file",
			opts:    Options{Files: []string{filepath.Join(empty, "nope.yaml")}},
			wantErr: []string{"nope.yaml"},
		},
		{
			name:    "yaml syntax",
			opts:    Options{Files: []string{"testdata/invalid/syntax.yaml"}},
			wantErr: []string{"testdata/invalid/syntax.yaml:4: ", "did not find expected key"},
		},
		{
			name:    "yaml syntax with -p",
			opts:    Options{Files: []string{"testdata/invalid/syntax.yaml"}, ProjectName: "x"},
			wantErr: []string{"testdata/invalid/syntax.yaml:4: ", "did not find expected key"},
		},
		{
			name:    "schema: unknown top-level key",
			opts:    Options{Files: []string{"testdata/invalid/schema.yaml"}},
			wantErr: []string{"testdata/invalid/schema.yaml:1: ", "additional properties 'servces' not allowed"},
		},
		{
			name:    "schema: wrong type",
			opts:    Options{Files: []string{"testdata/invalid/type.yaml"}},
			wantErr: []string{"testdata/invalid/type.yaml:7: ", "services.web.cap_add must be a array"},
		},
		{
			name:    "port target not a number",
			opts:    Options{Files: []string{"testdata/invalid/cast.yaml"}},
			wantErr: []string{"testdata/invalid/cast.yaml:6: ", "services.web.ports.[].target", `"abc"`},
		},
		{
			name:    "container_name with replicas",
			opts:    Options{WorkingDir: testdata(t, "container-name")},
			wantErr: []string{`service "web": container_name "web-x" cannot be used with replicas 2; remove container_name or set replicas to 1`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Environ = []string{}
			_, err := Load(context.Background(), tt.opts)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("err = %v, want errors.Is %v", err, tt.wantIs)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("err = %q, want it to contain %q", err, s)
				}
			}
		})
	}
}

func TestConvertErrors(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		files   map[string]string
		wantErr string
	}{
		{
			name:    "published port range",
			yaml:    "services:\n  web:\n    image: nginx\n    ports: [\"8000-8010:80\"]\n",
			wantErr: `service "web": published port range "8000-8010" is not supported`,
		},
		{
			name:    "external secret",
			yaml:    "services:\n  web:\n    image: nginx\n    secrets: [s]\nsecrets:\n  s:\n    external: true\n",
			wantErr: `service "web": secret "s" is external`,
		},
		{
			name:    "external config",
			yaml:    "services:\n  web:\n    image: nginx\n    configs: [c]\nconfigs:\n  c:\n    external: true\n",
			wantErr: `service "web": config "c" is external, which dev does not support; declare it with file:, environment: or content:`,
		},
		{
			name:    "config file missing",
			yaml:    "services:\n  web:\n    image: nginx\n    configs: [c]\nconfigs:\n  c:\n    file: ./missing.conf\n",
			wantErr: `service "web": read config "c"`,
		},
		{
			name:    "environment secret unset",
			yaml:    "services:\n  web:\n    image: nginx\n    secrets: [s]\nsecrets:\n  s:\n    environment: NOPE\n",
			wantErr: `environment variable NOPE is not set`,
		},
		{
			name:    "secret file missing",
			yaml:    "services:\n  web:\n    image: nginx\n    secrets: [s]\nsecrets:\n  s:\n    file: ./missing.txt\n",
			wantErr: `service "web": read secret "s"`,
		},
		{
			name:    "bad restart",
			yaml:    "services:\n  web:\n    image: nginx\n    restart: sometimes\n",
			wantErr: `service "web": restart "sometimes" is not valid`,
		},
		{
			name:    "sctp",
			yaml:    "services:\n  web:\n    image: nginx\n    ports: [\"80:80/sctp\"]\n",
			wantErr: `protocol sctp is not supported`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(tt.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(context.Background(), Options{WorkingDir: dir, Environ: []string{}})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	tests := []struct {
		name string
		dir  string
		want []string // Warning.String()
	}{
		{
			name: "unsupported keys, defaults quiet",
			dir:  "unsupported",
			want: []string{
				`service "app": key "deploy.labels" is not supported by dev yet and is ignored`,
				`service "app": key "deploy.resources.reservations.devices" is not supported by dev yet and is ignored`,
				`service "app": key "healthcheck.start_interval" is not supported by dev yet and is ignored`,
				`service "app": key "logging" is not supported by dev yet and is ignored`,
				`service "app": key "network_mode" is not supported by dev yet and is ignored`,
				`service "app": key "privileged" is not supported by dev yet and is ignored`,
			},
		},
		{
			name: "more unsupported keys",
			dir:  "unsupported-more",
			want: []string{
				`service "more": key "attach" is not supported by dev yet and is ignored`,
				`service "more": key "build.cache_from" is not supported by dev yet and is ignored`,
				`service "more": key "build.dockerfile_inline" is not supported by dev yet and is ignored`,
				`service "more": key "build.ssh" is not supported by dev yet and is ignored`,
				`service "more": key "deploy.endpoint_mode" is not supported by dev yet and is ignored`,
				`service "more": key "deploy.mode" is not supported by dev yet and is ignored`,
				`service "more": key "deploy.restart_policy" is not supported by dev yet and is ignored`,
				`service "more": key "devices" is not supported by dev yet and is ignored`,
				`service "more": key "dns" is not supported by dev yet and is ignored`,
				`service "more": key "extra_hosts" is not supported by dev yet and is ignored`,
				`service "more": key "ipc" is not supported by dev yet and is ignored`,
				`service "more": key "links" is not supported by dev yet and is ignored`,
				`service "more": key "logging" is not supported by dev yet and is ignored`,
				`service "more": key "oom_score_adj" is not supported by dev yet and is ignored`,
				`service "more": key "platform" is not supported by dev yet and is ignored`,
				`service "more": key "post_start" is not supported by dev yet and is ignored`,
				`service "more": key "pull_policy" is not supported by dev yet and is ignored`,
				`service "more": key "read_only" is not supported by dev yet and is ignored`,
				`service "more": key "secrets.uid" is not supported by dev yet and is ignored`,
				`service "more": key "security_opt" is not supported by dev yet and is ignored`,
				`service "more": key "shm_size" is not supported by dev yet and is ignored`,
				`service "more": key "ulimits" is not supported by dev yet and is ignored`,
				`service "more": key "volumes.bind" is not supported by dev yet and is ignored`,
				`service "more": key "volumes.tmpfs" is not supported by dev yet and is ignored`,
				`service "more": key "volumes.volume" is not supported by dev yet and is ignored`,
				`service "more": key "volumes_from" is not supported by dev yet and is ignored`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := load(t, Options{WorkingDir: testdata(t, tt.dir)})
			var got []string
			for _, w := range l.Warnings {
				got = append(got, w.String())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestImpliedDependency(t *testing.T) {
	l := load(t, Options{WorkingDir: testdata(t, "unsupported")})
	// network_mode: service:plain makes linked a sidecar of plain; its
	// implied dependency on plain goes (it starts in plain's pods).
	if l.Project.Service("linked") != nil {
		t.Fatalf("linked is a service of its own, want it a sidecar of plain")
	}
	sc := l.Project.Service("plain").Sidecars
	if len(sc) != 1 || sc[0].Name != "linked" || len(sc[0].DependsOn) != 0 {
		t.Errorf("plain's sidecars = %+v, want linked without dependencies", sc)
	}
}

func TestWarningString(t *testing.T) {
	tests := []struct {
		name string
		w    Warning
		want string
	}{
		{name: "default", w: Warning{Service: "web", Key: "privileged"}, want: `service "web": key "privileged" is not supported by dev yet and is ignored`},
		{name: "message", w: Warning{Service: "web", Key: "restart", Message: "x"}, want: `service "web": key "restart": x`},
		{name: "top level", w: Warning{Key: "jobs.backup"}, want: `key "jobs.backup" is not supported by dev yet and is ignored`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.w.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestConversionWarnings(t *testing.T) {
	dir := t.TempDir()
	yaml := `services:
  web:
    image: nginx
    restart: on-failure:3
    volumes: [ext:/ext]
    tmpfs: ["/run:size=64m"]
volumes:
  ext:
    external: true
jobs:
  backup:
    image: alpine
    triggers:
      manual: true
`
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	l := load(t, Options{WorkingDir: dir})
	var keys []string
	for _, w := range l.Warnings {
		keys = append(keys, w.Key)
	}
	if want := []string{"restart", "tmpfs", "volumes", "jobs.backup"}; !reflect.DeepEqual(keys, want) {
		t.Errorf("warning keys = %v, want %v (%v)", keys, want, l.Warnings)
	}
	web := l.Project.Service("web")
	if web.Restart != api.RestartOnFailure {
		t.Errorf("restart = %q", web.Restart)
	}
	if len(l.Project.Volumes) != 0 {
		t.Errorf("project volumes = %v, want none (external)", l.Project.Volumes)
	}
}

func TestHashStable(t *testing.T) {
	dir := testdata(t, "rich")
	env := []string{"FROM_HOST=a", "DB_PASSWORD=pw"}
	hashes := func(environ []string) map[string]string {
		l := load(t, Options{WorkingDir: dir, Environ: environ})
		out := map[string]string{}
		for _, s := range l.Project.Services {
			out[s.Name] = s.Hash()
		}
		return out
	}
	first := hashes(env)
	for i := 0; i < 5; i++ {
		if again := hashes(env); !reflect.DeepEqual(first, again) {
			t.Fatalf("hashes changed between loads: %v vs %v", first, again)
		}
	}
	changed := hashes([]string{"FROM_HOST=b", "DB_PASSWORD=pw"})
	if changed["web"] == first["web"] {
		t.Errorf("web hash did not change with its environment")
	}
	if changed["db"] != first["db"] {
		t.Errorf("db hash changed though db did not")
	}
}
