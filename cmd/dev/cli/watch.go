package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/client"
	"github.com/fsnotify/fsnotify"
	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/agent/docker"
	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/compose"
)

// `dev up --watch` and `dev watch` follow compose's develop.watch rules:
// changed files are copied into the service's running pods (sync), then the
// pods are restarted (sync+restart, restart), or the service's image is
// rebuilt and the project re-deployed, which rolls the service with its
// update_config (rebuild). Changes are batched: an action runs once the
// files have been quiet for watchQuiet (at most watchMaxDelay after the
// first change), and prints one line.

const (
	watchQuiet    = 300 * time.Millisecond
	watchMaxDelay = 3 * time.Second
)

type watchOptions struct {
	project projectFlags
	timeout time.Duration
}

// NewWatchCommand is `dev watch`.
func NewWatchCommand(g *globals) *cobra.Command {
	var o watchOptions
	cmd := &cobra.Command{
		Use:   "watch [SERVICE...]",
		Short: "Follow the develop.watch paths of a deployed project: sync files into its pods, rebuild and roll services",
		Long: "Watch the paths of the services' develop.watch rules (compose's format) and act on changes:\n" +
			"sync copies changed files into every running pod of the service (at target), sync+restart\n" +
			"then restarts the pods, restart only restarts them, rebuild builds the service's image again\n" +
			"and re-deploys the project, which rolls the service as its update_config says.\n" +
			"The project must be deployed (dev up); `dev up --watch` does both.",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			l, err := o.project.load(ctx, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			rules, notes, err := watchRules(l, args)
			if err != nil {
				return err
			}
			c, err := g.client(ctx)
			if err != nil {
				return err
			}
			p := l.Project
			if err := checkDeployed(ctx, c, p.Name); err != nil {
				return err
			}
			dc, err := docker.NewClient()
			if err != nil {
				return err
			}
			defer dc.Close()
			// The image IDs of the other services, for re-deploying after a
			// rebuild.
			if err := resolveImages(ctx, dc, p, false, newProgress(io.Discard)); err != nil {
				return err
			}
			w, err := newWatcher(c, dc, p, rules, o.timeout, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			defer w.close()
			w.start(notes)
			return w.run(ctx)
		},
	}
	o.project.register(cmd)
	cmd.Flags().DurationVar(&o.timeout, "timeout", 5*time.Minute, "how long to wait for a rolling update after a rebuild")
	return cmd
}

func checkDeployed(ctx context.Context, c api.Client, project string) error {
	projects, err := c.Projects(ctx)
	if err != nil {
		return fmt.Errorf("list projects: %w", err)
	}
	for _, ps := range projects {
		if ps.Name == project {
			return nil
		}
	}
	return fmt.Errorf("project %s is not deployed; start it with `dev up --watch` (or `dev up`, then `dev watch`)", project)
}

// upWatch is the end of `dev up --watch`, once the project runs: watch in
// the foreground and, unless detached, stream the logs too; Ctrl-C stops
// watching and, unless detached, stops the project as an attached up does.
func upWatch(ctx context.Context, g *globals, c *api.HTTPClient, dc *client.Client, p *api.Project,
	rules []watchRule, notes []string, o upOptions, stdout, stderr io.Writer) error {
	w, err := newWatcher(c, dc, p, rules, o.timeout, stdout)
	if err != nil {
		if !o.detach {
			return errors.Join(err, stopProject(g, c, p.Name, stdout))
		}
		return err
	}
	defer w.close()
	w.start(notes)
	if o.detach {
		fmt.Fprintf(stderr, "Watching %s; press Ctrl-C to stop watching (the project keeps running)\n", p.Name)
		return w.run(ctx)
	}
	fmt.Fprintf(stderr, "Attaching to %s and watching; press Ctrl-C to stop the project\n", p.Name)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var werr, lerr error
	var wg sync.WaitGroup
	wg.Go(func() { werr = w.run(rctx); cancel() })
	wg.Go(func() { lerr = streamLogs(rctx, c, p.Name, nil, "", true, -1, stdout); cancel() })
	wg.Wait()
	if ctx.Err() == nil {
		if err := errors.Join(werr, lerr); err != nil {
			return err
		}
	}
	return stopProject(g, c, p.Name, stdout)
}

// Watch actions (compose's names).
const (
	watchSync        = string(types.WatchActionSync)
	watchRebuild     = string(types.WatchActionRebuild)
	watchRestart     = string(types.WatchActionRestart)
	watchSyncRestart = string(types.WatchActionSyncRestart)
	watchSyncExec    = string(types.WatchActionSyncExec)
)

// watchRule is one develop.watch entry of a service.
type watchRule struct {
	service string
	action  string
	path    string // absolute host path, a directory or a file
	dir     bool   // path is a directory (watched recursively)
	target  string // absolute container path (sync actions)
	ignore  *matcher
	include *matcher // nil: every file
	initial bool     // initial_sync
	// exec is the command sync+exec runs in every pod after a sync.
	exec *api.ExecRequest
}

func (r *watchRule) syncs() bool {
	return r.action == watchSync || r.action == watchSyncRestart || r.action == watchSyncExec
}

// rel returns the path of name relative to the rule's path (slash
// separated; "." for a file rule's own file) when the rule covers it and
// does not ignore it.
func (r *watchRule) rel(name string) (string, bool) {
	if !r.dir {
		return ".", name == r.path
	}
	rel, err := filepath.Rel(r.path, name)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", false
	}
	rel = filepath.ToSlash(rel)
	if r.ignore.match(rel) {
		return "", false
	}
	return rel, true
}

// containerPath is where the file at rel goes in the container.
func (r *watchRule) containerPath(rel string) string {
	return path.Join(r.target, rel)
}

// watchRules reads the develop.watch rules of the project's services (of
// services, when given) from the compose model and checks them. notes are
// what is accepted but not fully honoured.
func watchRules(l *compose.Loaded, services []string) ([]watchRule, []string, error) {
	p := l.Project
	names := services
	if len(names) == 0 {
		for _, s := range p.Services {
			names = append(names, s.Name)
		}
	}
	sort.Strings(names)
	var rules []watchRule
	var notes []string
	for _, name := range names {
		spec := p.Service(name)
		sc, ok := l.Model.Services[name]
		if spec == nil || !ok {
			return nil, nil, fmt.Errorf("no service %s in project %s", name, p.Name)
		}
		if sc.Develop == nil || len(sc.Develop.Watch) == 0 {
			if len(services) > 0 {
				return nil, nil, fmt.Errorf("service %s has no develop.watch rules to follow", name)
			}
			continue
		}
		for i, t := range sc.Develop.Watch {
			r, note, err := watchRuleOf(spec, t)
			if err != nil {
				return nil, nil, fmt.Errorf("service %s: develop.watch[%d]: %w", name, i, err)
			}
			if note != "" {
				notes = append(notes, fmt.Sprintf("service %s: develop.watch[%d]: %s", name, i, note))
			}
			rules = append(rules, r)
		}
	}
	if len(rules) == 0 {
		return nil, nil, fmt.Errorf("no service of project %s has develop.watch rules; add a develop: watch: section (path, action, target) to a service", p.Name)
	}
	return rules, notes, nil
}

func watchRuleOf(spec *api.ServiceSpec, t types.Trigger) (watchRule, string, error) {
	r := watchRule{service: spec.Name, action: string(t.Action), path: filepath.Clean(t.Path), initial: t.InitialSync}
	var note string
	switch r.action {
	case watchSync, watchSyncRestart, watchRebuild, watchRestart:
	case watchSyncExec:
		if len(t.Exec.Command) == 0 {
			return r, "", fmt.Errorf("action sync+exec needs exec.command (the command to run in the container after a sync)")
		}
		r.exec = &api.ExecRequest{Cmd: t.Exec.Command, User: t.Exec.User, WorkingDir: t.Exec.WorkingDir}
		for k, v := range t.Exec.Environment {
			if v != nil {
				r.exec.Env = append(r.exec.Env, k+"="+*v)
			}
		}
		sort.Strings(r.exec.Env)
		if t.Exec.Privileged {
			note = "exec.privileged is not supported: the command runs unprivileged"
		}
	default:
		return r, "", fmt.Errorf("action %q: want sync, sync+restart, rebuild or restart", r.action)
	}
	if !filepath.IsAbs(r.path) {
		return r, "", fmt.Errorf("path %q is not absolute", t.Path)
	}
	info, err := os.Stat(r.path)
	if err != nil {
		return r, "", fmt.Errorf("path %s: %w; create it or fix the rule", t.Path, err)
	}
	r.dir = info.IsDir()
	if r.syncs() {
		target := t.Target
		switch {
		case target == "":
			return r, "", fmt.Errorf("action %s needs a target (the path in the container)", r.action)
		case !path.IsAbs(target) && spec.WorkingDir != "":
			target = path.Join(spec.WorkingDir, target)
		case !path.IsAbs(target):
			return r, "", fmt.Errorf("target %q: want an absolute path in the container (the service has no working_dir)", target)
		}
		r.target = path.Clean(target)
	}
	if r.action == watchRebuild && spec.Build == nil {
		return r, "", fmt.Errorf("action rebuild needs a build section in service %s", spec.Name)
	}
	if r.initial && !r.syncs() {
		note = "initial_sync only applies to sync actions"
	}
	r.ignore = newMatcher(append(append([]string{}, defaultIgnores...), t.Ignore...))
	if r.action == watchRebuild && spec.Build != nil {
		// What the build leaves out does not trigger it either.
		if pats, err := readDockerignore(spec.Build.Context); err == nil && len(pats) > 0 {
			if rel, err := filepath.Rel(spec.Build.Context, r.path); err == nil && rel == "." {
				r.ignore = newMatcher(append(append(append([]string{}, defaultIgnores...), pats...), t.Ignore...))
			}
		}
	}
	if len(t.Include) > 0 {
		r.include = newMatcher(t.Include)
	}
	return r, note, nil
}

// defaultIgnores are editors' temporary files (compose ignores them too).
// .git is always ignored, whatever the rules say.
var defaultIgnores = []string{"*.swp", "*.swx", "*~", "4913", ".#*", "#*#", "___jb_old___", "___jb_tmp___"}

// matcher matches slash-separated relative paths against ignore patterns,
// gitignore-like: a pattern without a slash matches a name at any depth
// ("*.log", "node_modules"); one with a slash is relative to the rule's path
// ("build/out", "/dist"); "**" matches any number of directories; a pattern
// matching a directory matches everything below it; "!" re-includes; the
// last matching pattern wins.
type matcher struct{ pats []ignorePattern }

type ignorePattern struct {
	segs []string
	neg  bool
}

func newMatcher(patterns []string) *matcher {
	m := &matcher{}
	for _, p := range patterns {
		p = strings.TrimSpace(filepath.ToSlash(p))
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		var ip ignorePattern
		if rest, ok := strings.CutPrefix(p, "!"); ok {
			ip.neg, p = true, rest
		}
		p = strings.TrimRight(p, "/")
		anchored := strings.Contains(p, "/")
		p = path.Clean(strings.TrimPrefix(p, "/"))
		if p == "." || p == "" {
			continue
		}
		p = strings.TrimPrefix(p, "./")
		ip.segs = strings.Split(p, "/")
		if !anchored && ip.segs[0] != "**" {
			ip.segs = append([]string{"**"}, ip.segs...)
		}
		m.pats = append(m.pats, ip)
	}
	return m
}

// match reports whether rel is ignored.
func (m *matcher) match(rel string) bool {
	segs := strings.Split(rel, "/")
	for _, s := range segs {
		if s == ".git" {
			return true
		}
	}
	if m == nil {
		return false
	}
	ignored := false
	for _, p := range m.pats {
		for n := 1; n <= len(segs); n++ { // rel or one of its parent directories
			if matchSegs(p.segs, segs[:n]) {
				ignored = !p.neg
				break
			}
		}
	}
	return ignored
}

// matches reports whether rel matches a pattern (for include lists: "!"
// patterns exclude again).
func (m *matcher) matches(rel string) bool {
	return m == nil || m.match(rel)
}

func matchSegs(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(name); i++ {
				if matchSegs(pat[1:], name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}

// batch collects changed paths per rule until they have been quiet for
// quiet, or max has passed since the first change.
type batch struct {
	quiet, max  time.Duration
	first, last time.Time
	paths       map[int]map[string]bool // rule index -> host paths
}

func newBatch(quiet, max time.Duration) *batch {
	return &batch{quiet: quiet, max: max, paths: map[int]map[string]bool{}}
}

func (b *batch) add(rule int, name string, now time.Time) {
	if len(b.paths) == 0 {
		b.first = now
	}
	b.last = now
	if b.paths[rule] == nil {
		b.paths[rule] = map[string]bool{}
	}
	b.paths[rule][name] = true
}

// due is when the batch is to be taken; the zero time when it is empty.
func (b *batch) due() time.Time {
	if len(b.paths) == 0 {
		return time.Time{}
	}
	at := b.last.Add(b.quiet)
	if limit := b.first.Add(b.max); limit.Before(at) {
		at = limit
	}
	return at
}

// take returns the sorted paths of each rule and empties the batch.
func (b *batch) take() map[int][]string {
	out := make(map[int][]string, len(b.paths))
	for rule, set := range b.paths {
		list := make([]string, 0, len(set))
		for p := range set {
			list = append(list, p)
		}
		sort.Strings(list)
		out[rule] = list
	}
	b.paths = map[int]map[string]bool{}
	return out
}

// watcher follows the rules' paths and runs their actions.
type watcher struct {
	c       *api.HTTPClient
	dc      *client.Client
	project *api.Project
	rules   []watchRule
	timeout time.Duration
	out     io.Writer

	fs      *fsnotify.Watcher
	watched map[string]bool // directories given to fs
	batch   *batch
}

// newWatcher sets up the file system watches of the rules.
func newWatcher(c *api.HTTPClient, dc *client.Client, p *api.Project, rules []watchRule, timeout time.Duration, out io.Writer) (*watcher, error) {
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch files: %w", err)
	}
	w := &watcher{c: c, dc: dc, project: p, rules: rules, timeout: timeout, out: out,
		fs: fsw, watched: map[string]bool{}, batch: newBatch(watchQuiet, watchMaxDelay)}
	for i := range rules {
		r := &rules[i]
		var err error
		if r.dir {
			err = w.addTree(r, r.path, nil)
		} else {
			err = w.addDir(filepath.Dir(r.path))
		}
		if err != nil {
			fsw.Close()
			return nil, err
		}
	}
	return w, nil
}

func (w *watcher) close() { w.fs.Close() }

func (w *watcher) addDir(dir string) error {
	if w.watched[dir] {
		return nil
	}
	if err := w.fs.Add(dir); err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	w.watched[dir] = true
	return nil
}

// addTree watches dir and its subdirectories that r does not ignore, and
// calls found (when not nil) with every path below dir.
func (w *watcher) addTree(r *watchRule, dir string, found func(string)) error {
	return filepath.WalkDir(dir, func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // gone meanwhile
			}
			return err
		}
		if name != r.path {
			if _, ok := r.rel(name); !ok {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if found != nil {
				found(name)
			}
		}
		if d.IsDir() {
			return w.addDir(name)
		}
		return nil
	})
}

// start prints the watch's first line (and its notes) and queues the
// initial syncs.
func (w *watcher) start(notes []string) {
	for _, n := range notes {
		w.printf("warning: %s", n)
	}
	var services []string
	seen := map[string]bool{}
	now := time.Now()
	for i := range w.rules {
		r := &w.rules[i]
		if !seen[r.service] {
			seen[r.service] = true
			services = append(services, r.service)
		}
		if r.initial && r.syncs() {
			if r.dir {
				_ = filepath.WalkDir(r.path, func(name string, d fs.DirEntry, err error) error {
					if err != nil || name == r.path {
						return nil
					}
					if _, ok := w.covers(r, name, d.IsDir()); !ok {
						if d.IsDir() {
							return filepath.SkipDir
						}
						return nil
					}
					w.batch.add(i, name, now)
					return nil
				})
			} else {
				w.batch.add(i, r.path, now)
			}
		}
	}
	w.printf("watching %d %s of %s; press Ctrl-C to stop", len(w.rules), plural(len(w.rules), "rule", "rules"), strings.Join(services, ", "))
}

// covers is rel for a path the rule acts on: include lists apply to files.
func (w *watcher) covers(r *watchRule, name string, isDir bool) (string, bool) {
	rel, ok := r.rel(name)
	if !ok {
		return "", false
	}
	if !isDir && r.include != nil && !r.include.matches(pathOr(rel, filepath.Base(name))) {
		return "", false
	}
	return rel, true
}

func pathOr(rel, base string) string {
	if rel == "." {
		return base
	}
	return rel
}

func (w *watcher) printf(format string, a ...any) {
	fmt.Fprintf(w.out, "watch: "+format+"\n", a...)
}

// run follows file events and runs the actions until ctx ends.
func (w *watcher) run(ctx context.Context) error {
	var fire <-chan time.Time
	schedule := func() {
		if due := w.batch.due(); !due.IsZero() {
			fire = time.After(time.Until(due))
		} else {
			fire = nil
		}
	}
	schedule()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.fs.Events:
			if !ok {
				return nil
			}
			w.event(ev, time.Now())
			schedule()
		case err, ok := <-w.fs.Errors:
			if !ok {
				return nil
			}
			w.printf("warning: %v", err)
		case <-fire:
			if due := w.batch.due(); !due.IsZero() && !time.Now().Before(due) {
				w.act(ctx, w.batch.take())
			}
			schedule()
		}
	}
}

// event queues a file change for the rules that cover it. A new directory
// is watched too, and what it already holds is queued.
func (w *watcher) event(ev fsnotify.Event, now time.Time) {
	if ev.Op == fsnotify.Chmod {
		return
	}
	name := filepath.Clean(ev.Name)
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		w.unwatch(name) // a directory made again under this name is watched again
	}
	info, err := os.Lstat(name)
	isDir := err == nil && info.IsDir()
	for i := range w.rules {
		r := &w.rules[i]
		if _, ok := w.covers(r, name, isDir); !ok {
			continue
		}
		if !isDir {
			w.batch.add(i, name, now)
			continue
		}
		if !ev.Has(fsnotify.Create) {
			continue // a directory's own changes show as its files'
		}
		w.batch.add(i, name, now)
		if err := w.addTree(r, name, func(p string) {
			if fi, err := os.Lstat(p); err == nil {
				if _, ok := w.covers(r, p, fi.IsDir()); ok {
					w.batch.add(i, p, now)
				}
			}
		}); err != nil {
			w.printf("warning: %v", err)
		}
	}
}

// unwatch forgets the watches of a removed or renamed directory and its
// subdirectories.
func (w *watcher) unwatch(dir string) {
	for d := range w.watched {
		if d == dir || strings.HasPrefix(d, dir+string(filepath.Separator)) {
			delete(w.watched, d)
			_ = w.fs.Remove(d) // fails when the kernel dropped it already
		}
	}
}

// act runs the actions of one batch, service by service.
func (w *watcher) act(ctx context.Context, changes map[int][]string) {
	type work struct {
		rebuild, restart bool
		sync             []syncItem
		execs            []*api.ExecRequest
	}
	byService := map[string]*work{}
	var order []string
	for i, paths := range changes {
		r := &w.rules[i]
		wk := byService[r.service]
		if wk == nil {
			wk = &work{}
			byService[r.service] = wk
			order = append(order, r.service)
		}
		switch r.action {
		case watchRebuild:
			wk.rebuild = true
		case watchRestart:
			wk.restart = true
		case watchSyncRestart:
			wk.restart = true
		case watchSyncExec:
			if !slices.Contains(wk.execs, r.exec) {
				wk.execs = append(wk.execs, r.exec)
			}
		}
		if r.syncs() {
			for _, p := range paths {
				rel, ok := r.rel(p)
				if !ok {
					continue
				}
				wk.sync = append(wk.sync, syncItem{host: p, container: r.containerPath(rel)})
			}
		}
	}
	sort.Strings(order)
	for _, svc := range order {
		if ctx.Err() != nil {
			return
		}
		wk := byService[svc]
		switch {
		case wk.rebuild: // the new image has the files: no sync
			w.rebuild(ctx, svc)
		case len(wk.sync) > 0:
			w.sync(ctx, svc, wk.sync, wk.restart, wk.execs)
		case wk.restart:
			w.restart(ctx, svc)
		}
	}
}

// syncItem is a changed host path and where it goes in the container.
type syncItem struct{ host, container string }

// syncArchive builds a tar archive of the items that exist, named by their
// container paths (relative to /), and lists the container paths of those
// that no longer exist.
func syncArchive(items []syncItem) (archive []byte, entries, files int, removed []string, err error) {
	sort.Slice(items, func(i, j int) bool { return items[i].container < items[j].container })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	seen := map[string]bool{}
	for _, it := range items {
		if seen[it.container] {
			continue
		}
		seen[it.container] = true
		added, isFile, err := addToArchive(tw, it)
		switch {
		case err != nil:
			return nil, 0, 0, nil, err
		case !added:
			removed = append(removed, it.container)
		default:
			entries++
			if isFile {
				files++
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, 0, 0, nil, err
	}
	return buf.Bytes(), entries, files, removed, nil
}

// addToArchive adds one item: added is false when it no longer exists,
// isFile whether it is not a directory. Directories are entries of their
// own (their files are items too).
func addToArchive(tw *tar.Writer, it syncItem) (added, isFile bool, err error) {
	info, err := os.Lstat(it.host)
	if errors.Is(err, fs.ErrNotExist) {
		return false, false, nil
	} else if err != nil {
		return false, false, fmt.Errorf("read %s: %w", it.host, err)
	}
	link := ""
	switch {
	case info.Mode()&fs.ModeSymlink != 0:
		if link, err = os.Readlink(it.host); err != nil {
			return false, false, fmt.Errorf("read link %s: %w", it.host, err)
		}
	case info.IsDir(), info.Mode().IsRegular():
	default:
		return true, false, nil // sockets, pipes, devices: left alone (not removed either)
	}
	var f *os.File
	if info.Mode().IsRegular() {
		if f, err = os.Open(it.host); errors.Is(err, fs.ErrNotExist) {
			return false, false, nil
		} else if err != nil {
			return false, false, fmt.Errorf("read %s: %w", it.host, err)
		}
		defer f.Close()
		if info, err = f.Stat(); err != nil { // the size of what is read
			return false, false, fmt.Errorf("read %s: %w", it.host, err)
		}
	}
	hdr, err := tar.FileInfoHeader(info, link)
	if err != nil {
		return false, false, fmt.Errorf("archive %s: %w", it.host, err)
	}
	hdr.Name = strings.TrimPrefix(it.container, "/")
	if info.IsDir() {
		hdr.Name += "/"
	}
	hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
	if err := tw.WriteHeader(hdr); err != nil {
		return false, false, err
	}
	if f != nil {
		if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
			return false, false, fmt.Errorf("archive %s: %w", it.host, err)
		}
	}
	return true, !info.IsDir(), nil
}

// runningPods lists the running pods of a service.
func (w *watcher) runningPods(ctx context.Context, service string) ([]api.Pod, error) {
	list, err := w.c.Pods(ctx, api.PodQuery{Project: w.project.Name})
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	var pods []api.Pod
	for _, p := range list.Pods {
		if p.Service == service && !p.Deleting && p.Node != "" && p.Status.State == api.PodRunning {
			pods = append(pods, p)
		}
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	return pods, nil
}

// sync copies the items into every running pod of the service (and
// removes the deleted ones), then restarts the pods when asked.
func (w *watcher) sync(ctx context.Context, service string, items []syncItem, restart bool, execs []*api.ExecRequest) {
	archive, entries, files, removed, err := syncArchive(items)
	if err != nil {
		w.printf("sync to %s failed: %v", service, err)
		return
	}
	pods, err := w.runningPods(ctx, service)
	if err != nil {
		w.printf("sync to %s failed: %v", service, err)
		return
	}
	if len(pods) == 0 {
		w.printf("%s has no running pods: %d changed %s not synced", service, len(items), plural(len(items), "path", "paths"))
		return
	}
	errs := make([]error, len(pods))
	var wg sync.WaitGroup
	for i, p := range pods {
		wg.Go(func() {
			if len(removed) > 0 {
				if _, err := w.c.RemoveFiles(ctx, p.Name, removed); err != nil {
					errs[i] = fmt.Errorf("%s: %w", p.ShortName(), err)
					return
				}
			}
			if entries > 0 {
				if _, err := w.c.CopyFiles(ctx, p.Name, "/", bytes.NewReader(archive)); err != nil {
					errs[i] = fmt.Errorf("%s: %w", p.ShortName(), err)
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		w.printf("sync to %s failed: %v", service, oneLine(err))
		return
	}
	var b strings.Builder
	switch {
	case files > 0 || len(removed) == 0:
		fmt.Fprintf(&b, "synced %d %s to %s (%d %s)", files, plural(files, "file", "files"), service, len(pods), plural(len(pods), "pod", "pods"))
		if len(removed) > 0 {
			fmt.Fprintf(&b, ", removed %d", len(removed))
		}
	default:
		fmt.Fprintf(&b, "removed %d %s from %s (%d %s)", len(removed), plural(len(removed), "path", "paths"), service, len(pods), plural(len(pods), "pod", "pods"))
	}
	if restart {
		n, err := w.restartPods(ctx, service)
		if err != nil {
			fmt.Fprintf(&b, "; restart failed: %v", oneLine(err))
		} else {
			fmt.Fprintf(&b, ", restarted %d %s", n, plural(n, "pod", "pods"))
		}
	}
	w.printf("%s", b.String())
	for _, req := range execs {
		w.execAll(ctx, pods, req)
	}
}

// execAll runs a sync+exec command in every pod, one pod after the other as
// compose does, printing its output as `watch: web-1 | line` and one line
// saying how it went.
func (w *watcher) execAll(ctx context.Context, pods []api.Pod, req *api.ExecRequest) {
	cmd := strings.Join(req.Cmd, " ")
	var failed []string
	for _, p := range pods {
		var out bytes.Buffer
		s, err := w.c.Exec(ctx, p.Name, *req)
		code := 0
		if err == nil {
			code, err = attach(ctx, s, sessionFlags{}, localTerm{out: &out, err: &out})
		}
		for _, line := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
			if line != "" {
				w.printf("%s | %s", p.ShortName(), line)
			}
		}
		switch {
		case err != nil:
			failed = append(failed, fmt.Sprintf("%s: %v", p.ShortName(), oneLine(err)))
		case code != 0:
			failed = append(failed, fmt.Sprintf("%s: exit %d", p.ShortName(), code))
		}
	}
	if len(failed) > 0 {
		w.printf("exec %q failed in %s", cmd, strings.Join(failed, ", "))
		return
	}
	w.printf("ran %q in %d %s", cmd, len(pods), plural(len(pods), "pod", "pods"))
}

// restart restarts the service's pods (the restart action).
func (w *watcher) restart(ctx context.Context, service string) {
	n, err := w.restartPods(ctx, service)
	if err != nil {
		w.printf("restart of %s failed: %v", service, oneLine(err))
		return
	}
	w.printf("restarted %s (%d %s)", service, n, plural(n, "pod", "pods"))
}

// restartPods restarts the service's pods as `dev restart SERVICE` does and
// returns how many.
func (w *watcher) restartPods(ctx context.Context, service string) (int, error) {
	var out bytes.Buffer
	err := podActions(ctx, w.c, w.project.Name, []string{service}, "restart", api.PodActionRequest{}, nil, &out)
	return strings.Count(out.String(), "restarted "), err
}

// rebuild builds the service's image again and, when it changed,
// re-deploys the project, which rolls the service with its update_config.
// The replica counts of the deployed services are kept (dev scale).
func (w *watcher) rebuild(ctx context.Context, service string) {
	s := w.project.Service(service)
	start := time.Now()
	if err := buildImage(ctx, w.dc, s); err != nil {
		w.printf("rebuild of %s failed: %v", service, oneLine(err))
		return
	}
	ins, err := w.dc.ImageInspect(ctx, s.Image)
	if err != nil {
		w.printf("rebuild of %s failed: inspect built image %s: %v", service, s.Image, err)
		return
	}
	if ins.ID == s.ImageID {
		w.printf("rebuilt %s, image unchanged (%.1fs)", service, time.Since(start).Seconds())
		return
	}
	old := s.ImageID
	s.ImageID = ins.ID
	if projects, err := w.c.Projects(ctx); err == nil {
		for _, ps := range projects {
			if ps.Name != w.project.Name {
				continue
			}
			for _, rc := range ps.Services {
				if spec := w.project.Service(rc.Service); spec != nil {
					spec.Replicas = rc.Replicas
				}
			}
		}
	}
	res, err := w.c.ApplyProject(ctx, w.project)
	if err != nil {
		s.ImageID = old
		w.printf("rebuilt %s, deploy failed: %v", service, oneLine(err))
		return
	}
	wctx, cancel := contextWithTimeout(ctx, w.timeout)
	err = waitProject(wctx, w.c, w.project, res.Hashes, newProgress(io.Discard))
	cancel()
	switch {
	case ctx.Err() != nil:
		return
	case errors.Is(err, context.DeadlineExceeded):
		w.printf("rebuilt %s, rolling update not done within %s; see `dev ps -p %s`", service, w.timeout, w.project.Name)
		return
	case err != nil:
		w.printf("rebuilt %s, rolling update failed: %v", service, oneLine(err))
		return
	}
	n := 0
	if pods, err := w.runningPods(ctx, service); err == nil {
		n = len(pods)
	}
	w.printf("rebuilt %s, rolling update done (%d %s, %.1fs)", service, n, plural(n, "pod", "pods"), time.Since(start).Seconds())
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// oneLine keeps an error on the action's line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
