// Package layout holds the test that keeps the packages' import directions
// (docs/ARCHITECTURE.md, "Import rules").
package layout

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/devhq/dev/"

// rule: a package (or every package under a folder, with "/...") may
// import, directly or not, no internal package but those allowed.
type rule struct {
	pkg     string
	allowed []string
	why     string
}

var rules = []rule{
	{"cluster/api", nil, "wire types: the one package every other may import"},
	{"compose", []string{"cluster/api"}, "compose files to specs, pure"},
	{"gossip", []string{"cluster/api"}, "membership knows nothing of raft or the cluster"},
	{"dns", []string{"cluster/api"}, "declares the Resolver it consumes"},
	{"proxy", []string{"cluster/api"}, "declares the Source and Kernel it consumes"},
	{"cluster/overlay", []string{"cluster/api"}, "the pod network's host side"},
	{"cluster/state", []string{"cluster/api"}, "the state and its commands"},
	{"cluster/scheduler", []string{"cluster/api", "cluster/state"}, "pure placement: no raft, Docker, sockets or HTTP"},
	{"cluster/controller", []string{"cluster/api", "cluster/state", "cluster/scheduler"}, "pure plans from a view"},
	{"cluster/agent/...", []string{"cluster/api", "cluster/state", "cluster/agent"}, "the kubelet never reaches the manager"},
	{"cluster/pki", []string{"cluster/api"}, "certificates and tokens"},
	{"cluster/peers", []string{"cluster/api", "cluster/state"}, "node-to-node calls, usable by the agent"},
	{"cluster/manager", []string{"cluster/api", "cluster/state", "cluster/raftstore", "cluster/controller", "cluster/scheduler", "cluster/peers"},
		"leadership, membership, heartbeats and writes: never the API server"},
	{"cluster/apiserver", []string{"cluster/api", "cluster/state", "cluster/raftstore", "cluster/scheduler", "cluster/peers", "cluster/pki",
		"cluster/manager", "cluster/controller"}, "the HTTP API calls the manager, never the agent's packages"},
}

// noHTTP are packages that must not import net/http: the manager serves
// no routes (cluster/apiserver does) and calls peers through cluster/peers.
var noHTTP = []string{"cluster/manager", "cluster/controller", "cluster/scheduler", "cluster/state"}

// imports returns each internal package's internal imports (non-test
// files), by path relative to the module.
func imports(t *testing.T) map[string][]string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	out := map[string][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n == "testdata" || n == "vendor" || strings.HasPrefix(n, ".") && path != root {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		pkg := filepath.ToSlash(rel)
		if _, ok := out[pkg]; !ok {
			out[pkg] = nil
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if dep, ok := strings.CutPrefix(p, module); ok && !slices.Contains(out[pkg], dep) {
				out[pkg] = append(out[pkg], dep)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// closure is every internal package pkg imports, directly or not.
func closure(graph map[string][]string, pkg string) []string {
	seen := map[string]bool{}
	var walk func(string)
	walk = func(p string) {
		for _, d := range graph[p] {
			if !seen[d] {
				seen[d] = true
				walk(d)
			}
		}
	}
	walk(pkg)
	var out []string
	for d := range seen {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

func TestImportDirections(t *testing.T) {
	graph := imports(t)
	for _, r := range rules {
		var pkgs []string
		if base, ok := strings.CutSuffix(r.pkg, "/..."); ok {
			for p := range graph {
				if p == base || strings.HasPrefix(p, base+"/") {
					pkgs = append(pkgs, p)
				}
			}
		} else if _, ok := graph[r.pkg]; ok {
			pkgs = []string{r.pkg}
		}
		if len(pkgs) == 0 {
			t.Errorf("rule for %s: no such package (update the rule with the layout)", r.pkg)
		}
		for _, p := range pkgs {
			for _, dep := range closure(graph, p) {
				if dep == p || slices.Contains(r.allowed, dep) {
					continue
				}
				t.Errorf("%s imports %s (directly or through others): %s may import only %v (%s)", p, dep, r.pkg, r.allowed, r.why)
			}
		}
	}
}

func TestNoHTTP(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	fset := token.NewFileSet()
	for _, pkg := range noHTTP {
		files, err := filepath.Glob(filepath.Join(root, pkg, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no Go files (%v): update noHTTP with the layout", pkg, err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range af.Imports {
				if p, _ := strconv.Unquote(imp.Path.Value); p == "net/http" || strings.HasPrefix(p, "net/http/") {
					t.Errorf("%s imports %s: %s serves no HTTP (cluster/apiserver does; peers are called through cluster/peers)", f, p, pkg)
				}
			}
		}
	}
}

// TestRulesCanFail: the check finds a forbidden import in a made-up graph.
func TestRulesCanFail(t *testing.T) {
	graph := map[string][]string{"proxy": {"cluster/api", "x"}, "x": {"cluster/state"}}
	got := closure(graph, "proxy")
	if !slices.Contains(got, "cluster/state") {
		t.Fatalf("closure %v misses an indirect import", got)
	}
}
