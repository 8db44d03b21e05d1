package templates_test

import (
	"bufio"
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/devhq/dev/compose"
	"github.com/devhq/dev/templates"
)

// wantStarters are the starters issue 7 asks for, plus node and python so
// that detection has something to propose.
var wantStarters = []string{"go", "node", "python", "static", "worker"}

func list(t *testing.T) []templates.Template {
	t.Helper()
	ts, err := templates.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return ts
}

func TestList(t *testing.T) {
	ts := list(t)
	var names []string
	orders := map[int]string{}
	for _, tpl := range ts {
		names = append(names, tpl.Name)
		if tpl.Description == "" || strings.Contains(tpl.Description, "\n") {
			t.Errorf("%s: description %q, want one line", tpl.Name, tpl.Description)
		}
		if other, dup := orders[tpl.Order]; dup {
			t.Errorf("%s and %s have the same order %d: detection would depend on names", tpl.Name, other, tpl.Order)
		}
		orders[tpl.Order] = tpl.Name
		if len(tpl.Detect) > 0 && tpl.DetectLabel == "" {
			t.Errorf("%s: detect patterns without a detect_label for the prompt", tpl.Name)
		}
		for _, p := range tpl.Detect {
			if _, err := path.Match(p, "x"); err != nil {
				t.Errorf("%s: detect pattern %q: %v", tpl.Name, p, err)
			}
		}
	}
	sorted := slices.Clone(names)
	slices.Sort(sorted)
	if !slices.Equal(sorted, wantStarters) {
		t.Errorf("starters = %v, want %v", sorted, wantStarters)
	}
	if !slices.Equal(templates.Names(), names) {
		t.Errorf("Names() = %v, want %v", templates.Names(), names)
	}
	if _, ok, err := templates.Get("go"); !ok || err != nil {
		t.Errorf("Get(go) = %v, %v", ok, err)
	}
	if _, ok, _ := templates.Get("cobol"); ok {
		t.Error("Get(cobol) found a starter")
	}
	// Every embedded folder is a starter with a manifest (List fails otherwise).
	dirs, err := fs.ReadDir(templates.FS(), ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if d.IsDir() && !slices.Contains(names, d.Name()) {
			t.Errorf("folder %s is not listed", d.Name())
		}
	}
}

// TestManifests checks each manifest against the files it describes.
func TestManifests(t *testing.T) {
	for _, tpl := range list(t) {
		t.Run(tpl.Name, func(t *testing.T) {
			var stored []string
			err := fs.WalkDir(templates.FS(), tpl.Name, func(p string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					stored = append(stored, strings.TrimPrefix(p, tpl.Name+"/"))
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range tpl.App {
				found := false
				for _, f := range stored {
					found = found || f == a || (strings.HasSuffix(a, "/") && strings.HasPrefix(f, a))
				}
				if !found {
					t.Errorf("app entry %q matches no file", a)
				}
			}
			for _, f := range stored {
				base := path.Base(f)
				if base == "go.mod" || base == "go.sum" {
					t.Errorf("%s: store it as %s.tmpl (a go.mod makes the folder another module, which go:embed refuses)", f, base)
				}
				container := base == "Dockerfile" || base == "Dockerfile.tmpl" || strings.HasPrefix(base, "compose.yaml") || base == ".dockerignore"
				if container && tpl.IsApp(f) {
					t.Errorf("%s is a container file but listed as an app file", f)
				}
			}

			full := files(t, tpl, tpl.Params)
			if _, ok := full["compose.yaml"]; !ok {
				t.Fatalf("no compose.yaml among %v", keys(full))
			}
			if _, ok := full[templates.ManifestFile]; ok {
				t.Errorf("the manifest is written out")
			}
			for p := range full {
				if strings.HasSuffix(p, ".tmpl") {
					t.Errorf("%s is written with its .tmpl suffix", p)
				}
			}
			// For existing code: container files only, and still a project.
			existing := files(t, tpl, existingParams(tpl))
			for p := range existing {
				if tpl.IsApp(p) || tpl.IsApp(p+".tmpl") {
					t.Errorf("existing-code mode writes the app file %s", p)
				}
			}
			for _, want := range []string{"compose.yaml", ".dockerignore", "Dockerfile"} {
				if _, ok := existing[want]; !ok && full[want] != nil {
					t.Errorf("existing-code mode does not write %s", want)
				}
			}
		})
	}
}

// existingParams are parameters like those `dev init` derives for existing
// code.
func existingParams(tpl templates.Template) templates.Params {
	p := tpl.Params
	p.Existing = true
	if tpl.Name == "static" {
		p.HTMLDir = "." // HTML files in the project folder itself
	}
	return p
}

func files(t *testing.T, tpl templates.Template, p templates.Params) map[string][]byte {
	t.Helper()
	fs, err := tpl.Files(p)
	if err != nil {
		t.Fatalf("Files: %v", err)
	}
	out := map[string][]byte{}
	for _, f := range fs {
		if _, dup := out[f.Path]; dup {
			t.Errorf("%s written twice", f.Path)
		}
		out[f.Path] = f.Data
	}
	return out
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func write(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for p, b := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

var (
	argRe  = regexp.MustCompile(`^ARG ([A-Z]+_IMAGE)=(\S+)$`)
	fromRe = regexp.MustCompile(`^FROM (\S+)(?: AS (\S+))?$`)
)

// dockerfileBase checks a Dockerfile for what the classic builder of Engine
// 20.10 supports and returns its base image argument and default: the first
// instruction must be ARG X_IMAGE=default, and every FROM either ${X_IMAGE},
// scratch or an earlier stage.
func dockerfileBase(t *testing.T, name string, b []byte) (arg, def string) {
	t.Helper()
	var stages []string
	first := true
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			if strings.HasPrefix(strings.ToLower(line), "# syntax=") {
				t.Errorf("%s: a syntax directive needs BuildKit", name)
			}
			continue
		}
		if strings.Contains(line, "<<") || strings.Contains(line, "--mount") || strings.Contains(line, "--link") {
			t.Errorf("%s: %q needs BuildKit (heredoc, RUN --mount, COPY --link)", name, line)
		}
		if first {
			first = false
			m := argRe.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("%s: first instruction %q, want ARG X_IMAGE=default (a swappable base)", name, line)
				return "", ""
			}
			arg, def = m[1], m[2]
			continue
		}
		if m := fromRe.FindStringSubmatch(line); m != nil {
			if m[1] != "${"+arg+"}" && m[1] != "scratch" && !slices.Contains(stages, m[1]) {
				t.Errorf("%s: %q, want FROM ${%s}, scratch or an earlier stage", name, line, arg)
			}
			if m[2] != "" {
				stages = append(stages, m[2])
			}
		} else if strings.HasPrefix(line, "FROM ") {
			t.Errorf("%s: cannot read %q", name, line)
		}
	}
	if !bytes.Contains(b, []byte("FROM ${"+arg+"}")) {
		t.Errorf("%s: no FROM ${%s}", name, arg)
	}
	return arg, def
}

// TestComposeAndDockerfiles loads every starter's compose file as `dev up`
// does: no warnings, every build passes its Dockerfile's base image argument
// with the same default, the environment swaps it, and every published port
// comes from a variable.
func TestComposeAndDockerfiles(t *testing.T) {
	for _, tpl := range list(t) {
		for _, mode := range []string{"new", "existing"} {
			t.Run(tpl.Name+"/"+mode, func(t *testing.T) {
				p := tpl.Params
				if mode == "existing" {
					p = existingParams(tpl)
				}
				fs := files(t, tpl, p)
				dir := t.TempDir()
				write(t, dir, fs)

				defaults := map[string]string{} // base image argument -> default
				for name, b := range fs {
					if path.Base(name) != "Dockerfile" {
						continue
					}
					arg, def := dockerfileBase(t, name, b)
					if arg == "" {
						continue
					}
					if d, ok := defaults[arg]; ok && d != def {
						t.Errorf("%s: %s defaults to %s, another Dockerfile to %s", name, arg, def, d)
					}
					defaults[arg] = def
				}

				load := func(env ...string) *compose.Loaded {
					t.Helper()
					l, err := compose.Load(context.Background(), compose.Options{
						Files: []string{filepath.Join(dir, "compose.yaml")}, ProjectName: "tpl", Environ: env,
					})
					if err != nil {
						t.Fatalf("load compose.yaml: %v", err)
					}
					return l
				}
				l := load()
				for _, w := range l.Warnings {
					t.Errorf("compose warning: %s", w)
				}
				swapped := load("GO_IMAGE=local/go", "NGINX_IMAGE=local/nginx", "REDIS_IMAGE=local/redis",
					"NODE_IMAGE=local/node", "PYTHON_IMAGE=local/python", "WEB_PORT=45678", "API_PORT=45678")
				published := 0
				for i, s := range l.Project.Services {
					if s.Build == nil {
						t.Errorf("service %s has no build section: its image could not come up without a registry", s.Name)
						continue
					}
					df, err := os.ReadFile(filepath.Join(s.Build.Context, "Dockerfile"))
					if err != nil {
						t.Errorf("service %s: %v", s.Name, err)
						continue
					}
					arg, def := dockerfileBase(t, s.Name+"/Dockerfile", df)
					if got := s.Build.Args[arg]; got != def {
						t.Errorf("service %s: build arg %s = %q, want the Dockerfile's default %q", s.Name, arg, got, def)
					}
					sw := swapped.Project.Services[i]
					if got, want := sw.Build.Args[arg], "local/"+strings.ToLower(strings.TrimSuffix(arg, "_IMAGE")); got != want {
						t.Errorf("service %s: with %s=%s in the environment the build arg is %q", s.Name, arg, want, got)
					}
					for _, port := range sw.Ports {
						published++
						if port.Published != 45678 {
							t.Errorf("service %s: published port %d does not follow WEB_PORT/API_PORT", s.Name, port.Published)
						}
					}
				}
				if published != 1 {
					t.Errorf("%d published ports, want 1 (the front service's)", published)
				}
			})
		}
	}
}

// TestRenderParams checks what detection changes in the rendered files.
func TestRenderParams(t *testing.T) {
	get := func(name string) templates.Template {
		tpl, ok, err := templates.Get(name)
		if !ok || err != nil {
			t.Fatalf("Get(%s): %v %v", name, ok, err)
		}
		return tpl
	}
	tests := []struct {
		name     string
		template string
		params   func(p *templates.Params)
		file     string
		want     []string
		notWant  []string
	}{
		{"go main package", "go", func(p *templates.Params) { p.Main = "./cmd/server"; p.Port = 9090 }, "Dockerfile",
			[]string{"-o /out/app ./cmd/server\n", "EXPOSE 9090\n"}, nil},
		{"go port", "go", func(p *templates.Params) { p.Port = 9090 }, "compose.yaml",
			[]string{`"${WEB_PORT:-9090}:9090"`, `PORT: "9090"`, "replicas: 2", "/app\", \"-health\""}, nil},
		{"go existing: no healthcheck the app may not implement", "go", func(p *templates.Params) { p.Existing = true }, "compose.yaml",
			[]string{"DATABASE_URL:", "condition: service_healthy"}, []string{"\"/app\", \"-health\"", "replicas: 2"}},
		{"node command", "node", func(p *templates.Params) { p.Command = []string{"npm", "start"} }, "Dockerfile",
			[]string{`CMD ["npm","start"]` + "\n"}, nil},
		{"python pyproject", "python", func(p *templates.Params) { p.Install = "pyproject" }, "Dockerfile",
			[]string{"RUN pip install --no-cache-dir .\n"}, []string{"requirements.txt"}},
		{"python requirements", "python", nil, "Dockerfile",
			[]string{"COPY requirements.txt ./\n", `CMD ["python","app.py"]`}, []string{"pip install --no-cache-dir ."}},
		{"static public", "static", nil, "Dockerfile",
			[]string{"COPY public/ /usr/share/nginx/html/\n"}, []string{"rm -f"}},
		{"static in the folder itself", "static", func(p *templates.Params) { p.HTMLDir = "."; p.Existing = true }, "Dockerfile",
			[]string{"COPY ./ /usr/share/nginx/html/\n", "RUN rm -f /usr/share/nginx/html/Dockerfile\n"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tpl := get(tt.template)
			p := tpl.Params
			if tt.params != nil {
				tt.params(&p)
			}
			got := string(files(t, tpl, p)[tt.file])
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("%s lacks %q:\n%s", tt.file, w, got)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(got, w) {
					t.Errorf("%s has %q:\n%s", tt.file, w, got)
				}
			}
		})
	}
}

// TestRespClientsIdentical: the worker starter's two services carry the same
// Redis client (each service is its own build context).
func TestRespClientsIdentical(t *testing.T) {
	a, err := fs.ReadFile(templates.FS(), "worker/api/resp.go")
	if err != nil {
		t.Fatal(err)
	}
	b, err := fs.ReadFile(templates.FS(), "worker/worker/resp.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("worker/api/resp.go and worker/worker/resp.go differ; keep them the same file")
	}
}

// TestGoStartersBuild writes each starter and builds its Go modules as a user
// would, each on its own, offline (the starters use the standard library
// only), and vets them.
func TestGoStartersBuild(t *testing.T) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go") //nolint:staticcheck // the toolchain running the tests
	if _, err := os.Stat(goBin); err != nil {
		skipOutsideCI(t, "no go toolchain at %s", goBin)
	}
	for _, tpl := range list(t) {
		fs := files(t, tpl, tpl.Params)
		var mods []string
		for p := range fs {
			if path.Base(p) == "go.mod" {
				mods = append(mods, path.Dir(p))
			}
		}
		slices.Sort(mods)
		if len(mods) == 0 {
			continue
		}
		dir := t.TempDir()
		write(t, dir, fs)
		for _, m := range mods {
			t.Run(tpl.Name+"/"+m, func(t *testing.T) {
				for _, args := range [][]string{{"build", "-o", t.TempDir() + "/", "./..."}, {"vet", "./..."}} {
					cmd := exec.Command(goBin, args...)
					cmd.Dir = filepath.Join(dir, filepath.FromSlash(m))
					cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOTOOLCHAIN=local", "GOWORK=off", "CGO_ENABLED=0")
					if out, err := cmd.CombinedOutput(); err != nil {
						t.Errorf("go %s in %s: %v\n%s", strings.Join(args, " "), m, err, out)
					}
				}
			})
		}
	}
}

// TestScriptsParse checks the node and python starters' code with the host's
// interpreters, when there are any.
func TestScriptsParse(t *testing.T) {
	tests := []struct {
		template, file string
		cmd            []string
	}{
		{"node", "server.js", []string{"node", "--check"}},
		{"python", "app.py", []string{"python3", "-m", "py_compile"}},
	}
	for _, tt := range tests {
		t.Run(tt.template, func(t *testing.T) {
			bin, err := exec.LookPath(tt.cmd[0])
			if err != nil {
				skipOutsideCI(t, "no %s on this host (.ci/run installs it)", tt.cmd[0])
			}
			tpl, _, _ := templates.Get(tt.template)
			dir := t.TempDir()
			write(t, dir, files(t, tpl, tpl.Params))
			cmd := exec.Command(bin, append(tt.cmd[1:], filepath.Join(dir, tt.file))...)
			cmd.Env = append(os.Environ(), "PYTHONPYCACHEPREFIX="+t.TempDir())
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
			}
		})
	}
}

// skipOutsideCI skips on a developer machine that lacks a tool, and fails
// when CI is set: CI installs every tool these tests need, so a skip there
// would hide a broken install.
func skipOutsideCI(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}
