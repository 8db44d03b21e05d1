// Package templates holds the starters `dev init` writes, embedded from the
// folders next to this file: one folder per starter with a template.json
// manifest, its compose file, Dockerfiles and a minimal app.
//
// Files whose name ends in ".tmpl" are rendered with text/template (Params is
// the data) and written without the suffix; the Go starters keep their go.mod
// as go.mod.tmpl because a go.mod would make the folder another module, which
// go:embed refuses. Every other file is written as it is.
//
// The Go sources of the starters are plain `package main` programs of this
// module, so that `go vet ./...` checks them; they import only the standard
// library.
package templates

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"sync"
	"text/template"
)

//go:embed all:go all:static all:worker all:node all:python
var starters embed.FS

// ManifestFile is the name of each starter's manifest; it is not written.
const ManifestFile = "template.json"

// Template is one starter, as its manifest describes it.
type Template struct {
	// Name is the folder name and what `dev init NAME` takes.
	Name string `json:"-"`
	// Description is the one line `dev init --list` shows.
	Description string `json:"description"`
	// Order sorts the list and decides which starter a folder is detected as
	// when several match (lowest first).
	Order int `json:"order"`
	// Detect lists glob patterns (path.Match, relative to the folder) whose
	// presence marks a project of this kind; empty: never detected.
	Detect []string `json:"detect,omitempty"`
	// DetectLabel names what was found, for the prompt: "a Go module (go.mod)".
	DetectLabel string `json:"detect_label,omitempty"`
	// App lists the app's own files (paths relative to the starter, as
	// stored, or folders ending in "/"). They are written for a new project
	// only; a folder that already has code gets the other files: the
	// container files (Dockerfile, compose.yaml, .dockerignore) and the
	// folders of extra services.
	App []string `json:"app"`
	// Params are the values the .tmpl files are rendered with for a new
	// project; detection adapts them to the code it finds.
	Params Params `json:"params"`
}

// Params are the values .tmpl files use.
type Params struct {
	// Existing is true when the files are written next to existing code (only
	// the container files); false for a whole new starter.
	Existing bool `json:"-"`
	// Port is the port the app listens on in its container.
	Port int `json:"port,omitempty"`
	// Main is the Go package to build ("." or "./cmd/NAME").
	Main string `json:"main,omitempty"`
	// Command is the command the container runs (node, python).
	Command []string `json:"command,omitempty"`
	// HTMLDir is the folder with the site's files, relative to the project
	// ("." or "public").
	HTMLDir string `json:"html_dir,omitempty"`
	// Install is how python dependencies are installed: "requirements"
	// (requirements.txt), "pyproject" (pip install .) or "" (nothing).
	Install string `json:"install,omitempty"`
}

// File is one file to write.
type File struct {
	// Path is slash-separated and relative to the project folder (".tmpl"
	// removed).
	Path string
	Data []byte
	// App marks the app's own files (see Template.App).
	App bool
}

var (
	loadOnce sync.Once
	all      []Template
	loadErr  error
)

// List returns every starter, in Order.
func List() ([]Template, error) {
	loadOnce.Do(func() { all, loadErr = load(starters) })
	return all, loadErr
}

// Get returns the starter called name.
func Get(name string) (Template, bool, error) {
	ts, err := List()
	if err != nil {
		return Template{}, false, err
	}
	for _, t := range ts {
		if t.Name == name {
			return t, true, nil
		}
	}
	return Template{}, false, nil
}

// Names returns the starters' names, in Order.
func Names() []string {
	ts, _ := List()
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.Name
	}
	return names
}

// FS is the embedded tree: one folder per starter.
func FS() fs.FS { return starters }

func load(fsys fs.FS) ([]Template, error) {
	dirs, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read starters: %w", err)
	}
	var out []Template
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		b, err := fs.ReadFile(fsys, path.Join(d.Name(), ManifestFile))
		if err != nil {
			return nil, fmt.Errorf("starter %s: %w", d.Name(), err)
		}
		var t Template
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&t); err != nil {
			return nil, fmt.Errorf("starter %s: parse %s: %w", d.Name(), ManifestFile, err)
		}
		t.Name = d.Name()
		out = append(out, t)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Order != out[j].Order {
			return out[i].Order < out[j].Order
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// IsApp reports whether the stored path rel (relative to the starter) is one
// of the app's own files.
func (t Template) IsApp(rel string) bool {
	for _, a := range t.App {
		if rel == a || (strings.HasSuffix(a, "/") && strings.HasPrefix(rel, a)) {
			return true
		}
	}
	return false
}

// Files renders the starter with p, sorted by path. With p.Existing the app's
// own files are left out.
func (t Template) Files(p Params) ([]File, error) {
	var out []File
	err := fs.WalkDir(starters, t.Name, func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel := strings.TrimPrefix(name, t.Name+"/")
		if rel == ManifestFile {
			return nil
		}
		app := t.IsApp(rel)
		if app && p.Existing {
			return nil
		}
		data, err := fs.ReadFile(starters, name)
		if err != nil {
			return err
		}
		if base, ok := strings.CutSuffix(rel, ".tmpl"); ok {
			if data, err = render(name, data, p); err != nil {
				return err
			}
			rel = base
		}
		out = append(out, File{Path: rel, Data: data, App: app})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("render starter %s: %w", t.Name, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

var funcs = template.FuncMap{
	// json renders a value as JSON: CMD {{json .Command}} is the exec form.
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
}

func render(name string, data []byte, p Params) ([]byte, error) {
	tpl, err := template.New(name).Funcs(funcs).Option("missingkey=error").Parse(string(data))
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := tpl.Execute(&buf, p); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
