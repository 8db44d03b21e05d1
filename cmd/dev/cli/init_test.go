package cli

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/devhq/dev/templates"
)

// runDevInit runs `dev ARGS...` through the root command with stdin in and
// returns its output.
func runDevInit(t *testing.T, in io.Reader, args ...string) (string, error) {
	t.Helper()
	root := NewRootCommand()
	var out bytes.Buffer
	if in == nil {
		in = strings.NewReader("")
	}
	root.SetIn(in)
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// tree returns the files under dir (slash paths) with their contents.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func sortedKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestInitList(t *testing.T) {
	out, err := runDevInit(t, nil, "init", "--list")
	if err != nil {
		t.Fatal(err)
	}
	all, err := templates.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 5 {
		t.Fatalf("%d starters, want at least 5", len(all))
	}
	for _, tpl := range all {
		if !strings.Contains(out, tpl.Name) || !strings.Contains(out, tpl.Description) {
			t.Errorf("--list lacks %s (%s):\n%s", tpl.Name, tpl.Description, out)
		}
	}
	if lines := strings.Count(out, "\n"); lines != len(all)+1 {
		t.Errorf("--list printed %d lines, want a header and one per starter:\n%s", lines, out)
	}
}

// TestInitNewProject writes every starter into a new folder: exactly its
// files, and the next command.
func TestInitNewProject(t *testing.T) {
	all, err := templates.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, tpl := range all {
		t.Run(tpl.Name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "new", "app")
			out, err := runDevInit(t, nil, "init", tpl.Name, dir)
			if err != nil {
				t.Fatalf("dev init %s: %v\n%s", tpl.Name, err, out)
			}
			want, err := tpl.Files(tpl.Params)
			if err != nil {
				t.Fatal(err)
			}
			got := tree(t, dir)
			if len(got) != len(want) {
				t.Errorf("wrote %v, want %d files", sortedKeys(got), len(want))
			}
			for _, f := range want {
				if got[f.Path] != string(f.Data) {
					t.Errorf("%s: wrong or missing content", f.Path)
				}
				if !strings.Contains(out, "created   "+f.Path+"\n") {
					t.Errorf("output does not list %s:\n%s", f.Path, out)
				}
			}
			if !strings.Contains(out, "Next: cd "+dir+" && dev up --build") {
				t.Errorf("output lacks the next command:\n%s", out)
			}
		})
	}
}

func TestInitRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"compose.yaml": "mine\n", "proxy/default.conf": "mine too\n"})
	out, err := runDevInit(t, nil, "init", "static", dir)
	if err == nil {
		t.Fatalf("dev init over existing files succeeded:\n%s", out)
	}
	for _, w := range []string{"compose.yaml", "proxy/default.conf", "--force", "nothing was written"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	got := tree(t, dir)
	if want := []string{"compose.yaml", "proxy/default.conf"}; !slices.Equal(sortedKeys(got), want) || got["compose.yaml"] != "mine\n" {
		t.Errorf("after the refusal the folder holds %v (compose.yaml %q), want only the user's files untouched", sortedKeys(got), got["compose.yaml"])
	}

	// --force overwrites them and writes the rest.
	out, err = runDevInit(t, nil, "init", "static", dir, "--force")
	if err != nil {
		t.Fatalf("dev init --force: %v\n%s", err, out)
	}
	got = tree(t, dir)
	if got["compose.yaml"] == "mine\n" || !strings.Contains(got["compose.yaml"], "services:") {
		t.Errorf("compose.yaml not overwritten: %q", got["compose.yaml"])
	}
	if _, ok := got["public/index.html"]; !ok {
		t.Errorf("--force did not write the other files: %v", sortedKeys(got))
	}
	if !strings.Contains(out, "overwrote compose.yaml") || !strings.Contains(out, "created   public/index.html") {
		t.Errorf("output does not say what was overwritten and created:\n%s", out)
	}
}

func TestInitPathInTheWay(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"db": "a file named like the db service's folder\n"})
	for _, args := range [][]string{{"init", "go", dir}, {"init", "go", dir, "--force"}} {
		_, err := runDevInit(t, nil, args...)
		if err == nil || !strings.Contains(err.Error(), "db (a file where a folder is needed)") {
			t.Errorf("dev %s: error %v, want db in the way", strings.Join(args, " "), err)
		}
		if got := sortedKeys(tree(t, dir)); !slices.Equal(got, []string{"db"}) {
			t.Errorf("dev %s wrote files: %v", strings.Join(args, " "), got)
		}
	}
}

// TestInitServiceFolderOfTheUser: the go starter's db service needs db/ for
// itself; a db/ of the user's code is never mixed with it, even with --force.
func TestInitServiceFolderOfTheUser(t *testing.T) {
	dir := t.TempDir()
	code := map[string]string{"go.mod": "module example.com/x\n", "main.go": "package main\n", "db/schema.go": "package db\n"}
	writeTree(t, dir, code)
	for _, args := range [][]string{{"init", "--yes", dir}, {"init", "--yes", "--force", dir}} {
		_, err := runDevInit(t, nil, args...)
		if err == nil || !strings.Contains(err.Error(), "db/ (holds other files: db/schema.go") {
			t.Errorf("dev %s: err = %v, want db/ in the way", strings.Join(args, " "), err)
		}
		if got := sortedKeys(tree(t, dir)); !slices.Equal(got, sortedKeys(code)) {
			t.Errorf("dev %s wrote files: %v", strings.Join(args, " "), got)
		}
	}
}

// TestInitDetect: without a template, the folder's code picks the starter and
// only container files are written; the code stays as it is.
func TestInitDetect(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string
		args     []string // after init --yes DIR
		template string
		want     map[string]string // file -> substring
		notWrite []string
	}{
		{
			name:     "go module at the root",
			files:    map[string]string{"go.mod": "module example.com/x\n", "main.go": "package main\n\nfunc main() {}\n"},
			template: "go",
			want: map[string]string{
				"Dockerfile": "-o /out/app .\n", "compose.yaml": "DATABASE_URL", ".dockerignore": "db",
				"db/main.go": "package main", "db/go.mod": "module example.com/db",
			},
			notWrite: []string{"README.md"},
		},
		{
			name: "go module with commands",
			files: map[string]string{"go.mod": "module example.com/tool\n", "lib.go": "package tool\n",
				"cmd/tool/main.go": "package main\n", "cmd/other/main.go": "package main\n"},
			template: "go",
			want:     map[string]string{"Dockerfile": "-o /out/app ./cmd/tool\n"},
		},
		{
			name:     "go with --port",
			files:    map[string]string{"go.mod": "module example.com/x\n", "main.go": "package main\n"},
			args:     []string{"--port", "9000"},
			template: "go",
			want:     map[string]string{"compose.yaml": `"${WEB_PORT:-9000}:9000"`, "Dockerfile": "EXPOSE 9000"},
		},
		{
			name:     "node start script",
			files:    map[string]string{"package.json": `{"name":"x","scripts":{"start":"node index.js"}}`, "index.js": "//\n"},
			template: "node",
			want:     map[string]string{"Dockerfile": `CMD ["node","index.js"]`, "compose.yaml": `"${WEB_PORT:-3000}:3000"`},
			notWrite: []string{"server.js", "README.md"},
		},
		{
			name:     "node without a plain start script",
			files:    map[string]string{"package.json": `{"name":"x","scripts":{"start":"tsc && node dist/x.js"}}`},
			template: "node",
			want:     map[string]string{"Dockerfile": `CMD ["npm","start"]`},
		},
		{
			name:     "python requirements",
			files:    map[string]string{"requirements.txt": "flask\n", "main.py": "print()\n"},
			template: "python",
			want:     map[string]string{"Dockerfile": `CMD ["python","main.py"]`},
			notWrite: []string{"app.py"},
		},
		{
			name:     "python pyproject",
			files:    map[string]string{"pyproject.toml": "[project]\nname='x'\n", "app.py": "print()\n"},
			template: "python",
			want:     map[string]string{"Dockerfile": "pip install --no-cache-dir .\n"},
		},
		{
			name:     "static html in the folder",
			files:    map[string]string{"index.html": "<h1>hi</h1>\n"},
			template: "static",
			want:     map[string]string{"Dockerfile": "COPY ./ /usr/share/nginx/html/\n", "proxy/default.conf": "proxy_pass http://site:80"},
			notWrite: []string{"public/index.html"},
		},
		{
			name:     "static html in public",
			files:    map[string]string{"public/index.html": "<h1>hi</h1>\n"},
			template: "static",
			want:     map[string]string{"Dockerfile": "COPY public/ /usr/share/nginx/html/\n"},
			notWrite: []string{"public/style.css"},
		},
		{
			name:     "go wins over html",
			files:    map[string]string{"go.mod": "module example.com/x\n", "main.go": "package main\n", "index.html": "<p>\n"},
			template: "go",
			want:     map[string]string{"Dockerfile": "golang"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, tt.files)
			out, err := runDevInit(t, nil, append([]string{"init", "--yes", dir}, tt.args...)...)
			if err != nil {
				t.Fatalf("dev init --yes: %v\n%s", err, out)
			}
			if !strings.Contains(out, "container files of the "+tt.template+" starter") {
				t.Errorf("output does not name the %s starter:\n%s", tt.template, out)
			}
			got := tree(t, dir)
			for name, content := range tt.files {
				if got[name] != content {
					t.Errorf("%s changed: %q", name, got[name])
				}
			}
			for name, sub := range tt.want {
				if !strings.Contains(got[name], sub) {
					t.Errorf("%s lacks %q:\n%s", name, sub, got[name])
				}
			}
			for _, name := range tt.notWrite {
				if _, ok := got[name]; ok && tt.files[name] == "" {
					t.Errorf("wrote the app file %s for existing code", name)
				}
			}
			tpl, _, _ := templates.Get(tt.template)
			for name := range got {
				if _, mine := tt.files[name]; !mine && (tpl.IsApp(name) || tpl.IsApp(name+".tmpl")) {
					t.Errorf("wrote the app file %s for existing code", name)
				}
			}
		})
	}
}

// TestInitTemplateOnExistingCode: naming the starter of the code the folder
// holds is the same as accepting the detection: container files only.
func TestInitTemplateOnExistingCode(t *testing.T) {
	dir := t.TempDir()
	code := map[string]string{"go.mod": "module example.com/x\n", "main.go": "package main\n"}
	writeTree(t, dir, code)
	out, err := runDevInit(t, nil, "init", "go", dir)
	if err != nil {
		t.Fatalf("dev init go: %v\n%s", err, out)
	}
	got := tree(t, dir)
	if got["main.go"] != code["main.go"] || got["go.mod"] != code["go.mod"] {
		t.Errorf("the code changed: %v", got)
	}
	if _, ok := got["Dockerfile"]; !ok {
		t.Errorf("no Dockerfile written: %v", sortedKeys(got))
	}
	if _, ok := got["README.md"]; ok {
		t.Error("wrote the starter's README.md next to existing code")
	}
}

func TestInitNoTerminalNeedsYes(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"go.mod": "module example.com/x\n"})
	out, err := runDevInit(t, strings.NewReader("y\n"), "init", dir)
	if err == nil {
		t.Fatalf("dev init without a terminal or --yes succeeded:\n%s", out)
	}
	for _, w := range []string{"a Go module (go.mod)", "`dev init go " + dir + "`", "`dev init --yes " + dir + "`"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	if got := sortedKeys(tree(t, dir)); !slices.Equal(got, []string{"go.mod"}) {
		t.Errorf("wrote files: %v", got)
	}
}

func TestInitPrompt(t *testing.T) {
	old := isTerminal
	isTerminal = func(io.Reader) bool { return true }
	t.Cleanup(func() { isTerminal = old })

	tests := []struct {
		answer    string
		wantFiles bool
		wantErr   bool
	}{
		{"\n", true, false},
		{"y\n", true, false},
		{"YES\n", true, false},
		{"n\n", false, false},
		{"maybe\n", false, true},
		{"", false, true}, // end of input: no answer
	}
	for _, tt := range tests {
		t.Run(strings.TrimSpace(tt.answer), func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, map[string]string{"package.json": "{}\n"})
			out, err := runDevInit(t, strings.NewReader(tt.answer), "init", dir)
			if (err != nil) != tt.wantErr {
				t.Fatalf("answer %q: err = %v, want error %v\n%s", tt.answer, err, tt.wantErr, out)
			}
			if !strings.Contains(out, "Detected a Node.js project (package.json) in "+dir+". Use the node starter? [Y/n]") {
				t.Errorf("no prompt:\n%s", out)
			}
			_, wrote := tree(t, dir)["Dockerfile"]
			if wrote != tt.wantFiles {
				t.Errorf("answer %q: wrote the Dockerfile = %v, want %v", tt.answer, wrote, tt.wantFiles)
			}
		})
	}
}

func TestInitNothingDetected(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"notes.txt": "hello\n"})
	out, err := runDevInit(t, nil, "init", "--yes", dir)
	if err == nil || !strings.Contains(err.Error(), "choose a starter") || !strings.Contains(err.Error(), "dev init TEMPLATE "+dir) {
		t.Fatalf("err = %v, want one saying to choose a starter", err)
	}
	for _, name := range templates.Names() {
		if !strings.Contains(out, name) {
			t.Errorf("the starters are not listed (%s missing):\n%s", name, out)
		}
	}
	if got := sortedKeys(tree(t, dir)); !slices.Equal(got, []string{"notes.txt"}) {
		t.Errorf("wrote files: %v", got)
	}
}

func TestInitUnknownTemplate(t *testing.T) {
	dir := t.TempDir()
	_, err := runDevInit(t, nil, "init", "cobol", dir)
	if err == nil {
		t.Fatal("dev init cobol succeeded")
	}
	for _, name := range append(templates.Names(), `"cobol"`, "--list") {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not mention %s", err, name)
		}
	}
	if got := tree(t, dir); len(got) != 0 {
		t.Errorf("wrote files: %v", sortedKeys(got))
	}
}

func TestInitArgs(t *testing.T) {
	// One argument that is a folder, not a starter: detection in that folder.
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"sub/requirements.txt": "\n", "sub/app.py": "\n"})
	out, err := runDevInit(t, nil, "init", "--yes", filepath.Join(dir, "sub"))
	if err != nil || !strings.Contains(out, "python starter") {
		t.Fatalf("dev init --yes DIR: %v\n%s", err, out)
	}
	// --port where it does not apply.
	if _, err := runDevInit(t, nil, "init", "worker", t.TempDir(), "--port", "9000"); err == nil || !strings.Contains(err.Error(), "--port") {
		t.Errorf("dev init worker --port: err = %v, want --port refused", err)
	}
	if _, err := runDevInit(t, nil, "init", "go", t.TempDir(), "--port", "70000"); err == nil {
		t.Error("dev init --port 70000 succeeded")
	}
	// DIR is a file.
	file := filepath.Join(dir, "file")
	writeTree(t, dir, map[string]string{"file": "x"})
	if _, err := runDevInit(t, nil, "init", "go", file); err == nil || !strings.Contains(err.Error(), "is a file") {
		t.Errorf("dev init go FILE: err = %v", err)
	}
	if _, err := runDevInit(t, nil, "init", "a", "b", "c"); err == nil {
		t.Error("dev init with three arguments succeeded")
	}
}
