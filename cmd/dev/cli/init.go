package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/devhq/dev/templates"
)

type initOptions struct {
	list  bool
	force bool
	yes   bool
	port  int
}

// isTerminal reports whether r is an interactive terminal; a variable so that
// tests can pretend.
var isTerminal = func(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// NewInitCommand is `dev init`.
func NewInitCommand(_ *globals) *cobra.Command {
	var o initOptions
	cmd := &cobra.Command{
		Use:   "init [TEMPLATE] [DIR]",
		Short: "Write a starting point: compose file, Dockerfiles and a minimal app",
		Long: `Write a project from one of the embedded starters (see --list) into DIR
(default: the current folder; created if missing).

Without TEMPLATE, the folder's code is detected (go.mod, package.json,
pyproject.toml or requirements.txt, HTML files) and the matching starter is
proposed. For a folder that already has code, only the container files are
written (Dockerfile, compose.yaml, .dockerignore and the folders of extra
services, like db/ of the go starter): never the app's own source. The same
holds when TEMPLATE names the kind of code the folder already holds.

Existing files are never overwritten without --force: when one would be,
nothing at all is written.`,
		Example: `  dev init --list
  dev init go myapp && cd myapp && dev up --build
  dev init            # in a folder with code: propose the matching starter
  dev init --yes .    # the same without asking (scripts, CI)`,
		Args: cobra.MaximumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInit(o, args, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.Flags().Changed("port"))
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.list, "list", false, "list the starters and exit")
	f.BoolVar(&o.force, "force", false, "overwrite files that exist")
	f.BoolVarP(&o.yes, "yes", "y", false, "use the detected starter without asking")
	f.IntVar(&o.port, "port", 0, "the port the app listens on in its container (default: the starter's)")
	return cmd
}

func runInit(o initOptions, args []string, stdin io.Reader, stdout io.Writer, portSet bool) error {
	all, err := templates.List()
	if err != nil {
		return err
	}
	if o.list {
		if len(args) > 0 {
			return errors.New("--list takes no arguments")
		}
		return printTemplates(stdout, all)
	}
	if portSet && (o.port < 1 || o.port > 65535) {
		return fmt.Errorf("--port %d: want a port between 1 and 65535", o.port)
	}

	// dev init [TEMPLATE] [DIR]: one argument is a template, unless it is no
	// template's name and looks like (or is) a folder.
	var name, dir string
	switch len(args) {
	case 2:
		name, dir = args[0], args[1]
	case 1:
		if _, ok := findTemplate(all, args[0]); ok || !looksLikeDir(args[0]) {
			name = args[0]
		} else {
			dir = args[0]
		}
	}
	if dir == "" {
		dir = "."
	}
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return fmt.Errorf("%s is a file, not a folder; give a folder to write the project into", dir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read %s: %w", dir, err)
	}

	var (
		tpl templates.Template
		det *detection
	)
	if name != "" {
		var ok bool
		if tpl, ok = findTemplate(all, name); !ok {
			return fmt.Errorf("unknown template %q; the starters are: %s (see `dev init --list`)",
				name, strings.Join(templates.Names(), ", "))
		}
		// The folder already has this kind of code: container files only.
		if found := detectFile(dir, tpl); found != "" {
			det = &detection{tpl: tpl, found: found}
		}
	} else {
		if det, err = detect(dir, all); err != nil {
			return err
		}
		if det == nil {
			if err := printTemplates(stdout, all); err != nil {
				return err
			}
			return fmt.Errorf("found no code to start from in %s (looked for %s); choose a starter above: dev init TEMPLATE%s",
				where(dir), strings.Join(detectPatterns(all), ", "), dirArg(dir))
		}
		tpl = det.tpl
		if !o.yes {
			if !isTerminal(stdin) {
				return fmt.Errorf("found %s in %s; run `dev init %s%s` to use the %s starter, or `dev init --yes%s` to accept what is detected",
					det.tpl.DetectLabel, where(dir), tpl.Name, dirArg(dir), tpl.Name, dirArg(dir))
			}
			fmt.Fprintf(stdout, "Detected %s in %s. Use the %s starter? [Y/n] ", det.tpl.DetectLabel, where(dir), tpl.Name)
			ok, err := confirm(stdin)
			if err != nil {
				return err
			}
			if !ok {
				fmt.Fprintln(stdout, "Nothing written. See the starters with `dev init --list`, then `dev init TEMPLATE`.")
				return nil
			}
		}
	}

	p := tpl.Params
	if portSet {
		if tpl.Params.Port == 0 {
			return fmt.Errorf("--port does not apply to the %s starter (its services listen on fixed ports)", tpl.Name)
		}
		p.Port = o.port
	}
	if det != nil {
		p, det.notes = existingParams(dir, tpl, p)
		p.Existing = true
	}
	files, err := tpl.Files(p)
	if err != nil {
		return err
	}
	written, err := writeProject(dir, files, o.force)
	if err != nil {
		return err
	}

	if det != nil {
		fmt.Fprintf(stdout, "Wrote the container files of the %s starter to %s (found %s; your code is left as it is):\n", tpl.Name, where(dir), det.found)
	} else {
		fmt.Fprintf(stdout, "Wrote the %s starter to %s:\n", tpl.Name, where(dir))
	}
	for _, w := range written {
		fmt.Fprintln(stdout, "  "+w)
	}
	if det != nil {
		for _, n := range det.notes {
			fmt.Fprintln(stdout, "Note: "+n)
		}
	}
	next := "dev up --build"
	if filepath.Clean(dir) != "." {
		next = "cd " + shellQuote(dir) + " && " + next
	}
	port := p.Port
	if port == 0 {
		port = 8080 // the static proxy's or the worker api's published port
	}
	fmt.Fprintf(stdout, "Next: %s\nthen open http://localhost:%d/\n", next, port)
	return nil
}

func findTemplate(all []templates.Template, name string) (templates.Template, bool) {
	for _, t := range all {
		if t.Name == name {
			return t, true
		}
	}
	return templates.Template{}, false
}

func looksLikeDir(arg string) bool {
	if arg == "." || arg == ".." || strings.ContainsRune(arg, filepath.Separator) || strings.Contains(arg, "/") {
		return true
	}
	fi, err := os.Stat(arg)
	return err == nil && fi.IsDir()
}

func printTemplates(w io.Writer, all []templates.Template) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TEMPLATE\tDESCRIPTION\tDETECTED FROM")
	for _, t := range all {
		det := "-"
		if len(t.Detect) > 0 {
			det = strings.Join(t.Detect, ", ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Name, t.Description, det)
	}
	return tw.Flush()
}

// confirm reads a yes/no answer; empty means yes.
func confirm(r io.Reader) (bool, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("read answer: %w", err)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "", "y", "yes":
		if errors.Is(err, io.EOF) && line == "" {
			return false, errors.New("no answer (end of input); run again with --yes to accept the detected starter")
		}
		return true, nil
	case "n", "no":
		return false, nil
	default:
		return false, fmt.Errorf("answer %q: want y or n", strings.TrimSpace(line))
	}
}

// where names dir in a sentence.
func where(dir string) string {
	if filepath.Clean(dir) == "." {
		return "the current folder"
	}
	return dir
}

// dirArg is the DIR argument to repeat in a suggested command.
func dirArg(dir string) string {
	if filepath.Clean(dir) == "." {
		return ""
	}
	return " " + shellQuote(dir)
}

func shellQuote(s string) string {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:@%+=,", r)) {
			return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
	}
	return s
}

// detection is what `dev init` found in a folder.
type detection struct {
	tpl   templates.Template
	found string   // the file that matched, relative to the folder
	notes []string // what the user may need to adjust
}

// detect returns the first starter (in Order) whose detection patterns match
// a file in dir, or nil.
func detect(dir string, all []templates.Template) (*detection, error) {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	for _, t := range all {
		if found := detectFile(dir, t); found != "" {
			return &detection{tpl: t, found: found}, nil
		}
	}
	return nil, nil
}

// detectFile returns the first file of dir matching one of t's detection
// patterns, or "".
func detectFile(dir string, t templates.Template) string {
	for _, pat := range t.Detect {
		sub, base := path.Split(pat)
		entries, err := os.ReadDir(filepath.Join(dir, filepath.FromSlash(sub)))
		if err != nil {
			continue
		}
		for _, e := range entries {
			if ok, _ := path.Match(base, e.Name()); ok && e.Type().IsRegular() {
				return sub + e.Name()
			}
		}
	}
	return ""
}

func detectPatterns(all []templates.Template) []string {
	var out []string
	for _, t := range all {
		out = append(out, t.Detect...)
	}
	return out
}

// existingParams adapts the parameters p of starter t to the code in dir,
// with notes on what could not be worked out.
func existingParams(dir string, t templates.Template, p templates.Params) (templates.Params, []string) {
	var notes []string
	exists := func(name string) bool {
		fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(name)))
		return err == nil && fi.Mode().IsRegular()
	}
	switch t.Name {
	case "go":
		var note string
		p.Main, note = goMainPackage(dir)
		if note != "" {
			notes = append(notes, note)
		}
		notes = append(notes, fmt.Sprintf("the web service expects your app to listen on port %d (env PORT); use --port otherwise", p.Port))
	case "node":
		p.Command = nodeCommand(dir, exists)
		if len(p.Command) >= 1 && p.Command[0] == "npm" {
			notes = append(notes, "the container runs `npm start`; change CMD in the Dockerfile to run node directly")
		}
		notes = append(notes, fmt.Sprintf("the web service expects your app to listen on port %d (env PORT); use --port otherwise", p.Port))
	case "python":
		switch {
		case exists("requirements.txt"):
			p.Install = "requirements"
		case exists("pyproject.toml"):
			p.Install = "pyproject"
		default:
			p.Install = ""
		}
		p.Command = nil
		for _, f := range []string{"app.py", "main.py", "server.py", "wsgi.py"} {
			if exists(f) {
				p.Command = []string{"python", f}
				break
			}
		}
		if p.Command == nil && exists("manage.py") {
			p.Command = []string{"python", "manage.py", "runserver", fmt.Sprintf("0.0.0.0:%d", p.Port)}
		}
		if p.Command == nil {
			p.Command = []string{"python", "app.py"}
			notes = append(notes, "found no app.py, main.py or server.py: set CMD in the Dockerfile to start your app")
		}
		notes = append(notes, fmt.Sprintf("the web service expects your app to listen on port %d (env PORT); use --port otherwise", p.Port))
	case "static":
		p.HTMLDir = "."
		if found := detectFile(dir, t); found != "" {
			p.HTMLDir = path.Dir(found)
		}
	}
	return p, notes
}

// goMainPackage finds the main package to build: the module root, else the
// only (or the module-named) ./cmd/NAME.
func goMainPackage(dir string) (string, string) {
	if isMainPackage(dir) {
		return ".", ""
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "cmd"))
	var mains []string
	for _, e := range entries {
		if e.IsDir() && isMainPackage(filepath.Join(dir, "cmd", e.Name())) {
			mains = append(mains, e.Name())
		}
	}
	switch len(mains) {
	case 0:
		return ".", "found no main package in the folder or in cmd/*: change the go build line in the Dockerfile"
	case 1:
		return "./cmd/" + mains[0], ""
	}
	sort.Strings(mains)
	pick := mains[0]
	if mod := goModulePath(dir); mod != "" {
		for _, m := range mains {
			if m == path.Base(mod) {
				pick = m
			}
		}
	}
	return "./cmd/" + pick, fmt.Sprintf("building ./cmd/%s of %d commands (%s): change the go build line in the Dockerfile for another",
		pick, len(mains), strings.Join(mains, ", "))
}

func isMainPackage(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	fset := token.NewFileSet()
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, n), nil, parser.PackageClauseOnly)
		if err == nil && f.Name.Name == "main" {
			return true
		}
	}
	return false
}

func goModulePath(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// nodeCommand works out how to start a Node.js project: its start script when
// it is a plain `node FILE`, else npm start, else its main file.
func nodeCommand(dir string, exists func(string) bool) []string {
	var pkg struct {
		Main    string            `json:"main"`
		Scripts map[string]string `json:"scripts"`
	}
	if b, err := os.ReadFile(filepath.Join(dir, "package.json")); err == nil {
		_ = json.Unmarshal(b, &pkg) // a broken package.json: fall back below
	}
	if start := strings.TrimSpace(pkg.Scripts["start"]); start != "" {
		if f := strings.Fields(start); len(f) == 2 && f[0] == "node" && !strings.ContainsAny(start, "&|;$<>`") {
			return []string{"node", f[1]}
		}
		return []string{"npm", "start"}
	}
	if pkg.Main != "" && exists(pkg.Main) {
		return []string{"node", pkg.Main}
	}
	for _, f := range []string{"server.js", "index.js", "app.js", "main.js"} {
		if exists(f) {
			return []string{"node", f}
		}
	}
	return []string{"npm", "start"}
}

// writeProject writes files under dir, all or nothing: when a file exists
// (and force is off) or a path is in the way, it writes nothing and says
// which. It returns one line per file written.
//
// The folders of the starter's extra services (db/ of the go starter: the
// top folders of its container files) must hold nothing else, even with
// force: a go.mod written into a folder of the user's own code would cut it
// out of their module.
func writeProject(dir string, files []templates.File, force bool) ([]string, error) {
	var exist, blocked []string
	ours := map[string]bool{}
	serviceDirs := map[string]bool{}
	for _, f := range files {
		ours[f.Path] = true
		if top, _, nested := strings.Cut(f.Path, "/"); nested && !f.App {
			serviceDirs[top] = true
		}
	}
	for top := range serviceDirs {
		var others []string
		root := filepath.Join(dir, top)
		if fi, err := os.Lstat(root); err != nil || !fi.IsDir() {
			continue // missing, or a file: checked below
		}
		err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, err := filepath.Rel(dir, p)
			if err == nil && !ours[filepath.ToSlash(rel)] {
				others = append(others, filepath.ToSlash(rel))
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("check %s: %w", root, err)
		}
		if len(others) > 0 {
			sort.Strings(others)
			if len(others) > 3 {
				others = append(others[:3], "...")
			}
			blocked = append(blocked, fmt.Sprintf("%s/ (holds other files: %s; the starter's %s service needs a folder of its own)",
				top, strings.Join(others, ", "), top))
		}
	}
	for _, f := range files {
		target := filepath.Join(dir, filepath.FromSlash(f.Path))
		// Every folder on the way must be a folder (or not exist yet).
		inTheWay := false
		for parent := path.Dir(f.Path); parent != "."; parent = path.Dir(parent) {
			if fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(parent))); err == nil && !fi.IsDir() {
				blocked = append(blocked, parent+" (a file where a folder is needed)")
				inTheWay = true
			}
		}
		if inTheWay {
			continue
		}
		fi, err := os.Lstat(target)
		switch {
		case err == nil && fi.IsDir():
			blocked = append(blocked, f.Path+" (a folder where a file is needed)")
		case err == nil:
			exist = append(exist, f.Path)
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("check %s: %w", target, err)
		}
	}
	if len(blocked) > 0 {
		sort.Strings(blocked)
		return nil, fmt.Errorf("cannot write the project to %s; in the way:\n  %s\nnothing was written",
			where(dir), strings.Join(dedupe(blocked), "\n  "))
	}
	if len(exist) > 0 && !force {
		return nil, fmt.Errorf("%d file(s) exist in %s:\n  %s\nnothing was written; run again with --force to overwrite them",
			len(exist), where(dir), strings.Join(exist, "\n  "))
	}
	existed := map[string]bool{}
	for _, e := range exist {
		existed[e] = true
	}

	var created []string            // files and folders this call made, to undo on error
	replaced := map[string][]byte{} // files overwritten so far, with their old content
	undo := func() {
		for target, data := range replaced {
			os.WriteFile(target, data, 0o644) //nolint:errcheck // best effort
		}
		for i := len(created) - 1; i >= 0; i-- {
			os.Remove(created[i]) //nolint:errcheck // best effort; a folder with other files stays
		}
	}
	mkdir := func(d string) error {
		var missing []string
		for p := d; ; p = filepath.Dir(p) {
			if _, err := os.Stat(p); err == nil {
				break
			}
			missing = append(missing, p)
			if filepath.Dir(p) == p {
				break
			}
		}
		for i := len(missing) - 1; i >= 0; i-- {
			if err := os.Mkdir(missing[i], 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
			created = append(created, missing[i])
		}
		return nil
	}
	var out []string
	for _, f := range files {
		target := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := mkdir(filepath.Dir(target)); err != nil {
			undo()
			return nil, fmt.Errorf("create folder for %s: %w; nothing was written", f.Path, err)
		}
		if existed[f.Path] {
			// Replace the entry itself (never write through a symlink).
			old, err := os.ReadFile(target)
			if err == nil {
				err = os.Remove(target)
			}
			if err != nil {
				undo()
				return nil, fmt.Errorf("overwrite %s: %w", target, err)
			}
			replaced[target] = old
		}
		if err := os.WriteFile(target, f.Data, 0o644); err != nil {
			undo()
			return nil, fmt.Errorf("write %s: %w", target, err)
		}
		if existed[f.Path] {
			out = append(out, "overwrote "+f.Path)
		} else {
			created = append(created, target)
			out = append(out, "created   "+f.Path)
		}
	}
	return out, nil
}

func dedupe(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
