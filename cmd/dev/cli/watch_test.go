package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/devhq/dev/compose"
)

func TestIgnoreMatcher(t *testing.T) {
	tests := []struct {
		name     string
		patterns []string
		rel      string
		want     bool
	}{
		{name: ".git always", rel: ".git/HEAD", want: true},
		{name: ".git deep", patterns: []string{"!.git"}, rel: "sub/.git/config", want: true},
		{name: "no patterns", rel: "src/main.go", want: false},
		{name: "plain name at any depth", patterns: []string{"node_modules"}, rel: "a/node_modules/x/y.js", want: true},
		{name: "plain name is a whole name", patterns: []string{"node_modules"}, rel: "a/node_modules2/y.js", want: false},
		{name: "glob on a name", patterns: []string{"*.tmp"}, rel: "a/b/c.tmp", want: true},
		{name: "glob does not match other names", patterns: []string{"*.tmp"}, rel: "a/b/c.txt", want: false},
		{name: "anchored path", patterns: []string{"build/out"}, rel: "build/out/x.o", want: true},
		{name: "anchored path not elsewhere", patterns: []string{"build/out"}, rel: "src/build/out/x.o", want: false},
		{name: "leading slash anchors", patterns: []string{"/dist"}, rel: "dist/app.js", want: true},
		{name: "leading slash not deep", patterns: []string{"/dist"}, rel: "web/dist/app.js", want: false},
		{name: "trailing slash", patterns: []string{"cache/"}, rel: "x/cache/y", want: true},
		{name: "double star prefix", patterns: []string{"**/gen/*.go"}, rel: "a/b/gen/x.go", want: true},
		{name: "double star zero dirs", patterns: []string{"**/gen/*.go"}, rel: "gen/x.go", want: true},
		{name: "double star middle", patterns: []string{"a/**/z.txt"}, rel: "a/b/c/z.txt", want: true},
		{name: "double star middle no match", patterns: []string{"a/**/z.txt"}, rel: "b/c/z.txt", want: false},
		{name: "negation re-includes", patterns: []string{"*.log", "!keep.log"}, rel: "d/keep.log", want: false},
		{name: "last match wins", patterns: []string{"!keep.log", "*.log"}, rel: "keep.log", want: true},
		{name: "editor swap file", patterns: defaultIgnores, rel: "src/.main.go.swp", want: true},
		{name: "editor backup", patterns: defaultIgnores, rel: "src/main.go~", want: true},
		{name: "comments and blanks", patterns: []string{"# x", "", "  "}, rel: "x", want: false},
		{name: "dot slash", patterns: []string{"./tmp"}, rel: "tmp/a", want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := newMatcher(tt.patterns).match(tt.rel); got != tt.want {
				t.Fatalf("match(%v, %q) = %v, want %v", tt.patterns, tt.rel, got, tt.want)
			}
		})
	}
}

func TestBatchDebounce(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	tests := []struct {
		name    string
		changes []int // times of changes, in ms after t0
		wantDue int   // ms after t0; -1: empty
	}{
		{name: "empty", wantDue: -1},
		{name: "one change waits for quiet", changes: []int{0}, wantDue: 300},
		{name: "each change restarts the quiet time", changes: []int{0, 200, 400}, wantDue: 700},
		{name: "a steady stream is cut at the max delay", changes: []int{0, 250, 500, 750, 1000, 1250}, wantDue: 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBatch(300*time.Millisecond, time.Second)
			for i, at := range tt.changes {
				b.add(i%2, "/p/"+string(rune('a'+i)), ms(at))
			}
			due := b.due()
			if tt.wantDue < 0 {
				if !due.IsZero() {
					t.Fatalf("due = %v, want none", due)
				}
				return
			}
			if !due.Equal(ms(tt.wantDue)) {
				t.Fatalf("due = %v after t0, want %dms", due.Sub(t0), tt.wantDue)
			}
		})
	}

	b := newBatch(300*time.Millisecond, time.Second)
	b.add(0, "/p/b", ms(0))
	b.add(0, "/p/a", ms(1))
	b.add(0, "/p/a", ms(2))
	b.add(1, "/q", ms(3))
	got := b.take()
	want := map[int][]string{0: {"/p/a", "/p/b"}, 1: {"/q"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("take = %v, want %v", got, want)
	}
	if !b.due().IsZero() || len(b.take()) != 0 {
		t.Fatalf("the batch is not empty after take")
	}
	// A new batch starts its max delay afresh.
	b.add(0, "/p/c", ms(5000))
	if due := b.due(); !due.Equal(ms(5300)) {
		t.Fatalf("due of a new batch = %v after t0, want 5300ms", due.Sub(t0))
	}
}

func TestSyncArchive(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "a.txt"), []byte("A"), 0o644))
	must(os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "sub", "b.txt"), []byte("BB"), 0o600))
	must(os.Symlink("a.txt", filepath.Join(dir, "link")))
	items := []syncItem{
		{host: filepath.Join(dir, "sub", "b.txt"), container: "/srv/sub/b.txt"},
		{host: filepath.Join(dir, "a.txt"), container: "/srv/a.txt"},
		{host: filepath.Join(dir, "a.txt"), container: "/srv/a.txt"}, // twice: once in the archive
		{host: filepath.Join(dir, "sub"), container: "/srv/sub"},
		{host: filepath.Join(dir, "link"), container: "/srv/link"},
		{host: filepath.Join(dir, "gone.txt"), container: "/srv/gone.txt"},
	}
	archive, entries, files, removed, err := syncArchive(items)
	must(err)
	if entries != 4 || files != 3 || !reflect.DeepEqual(removed, []string{"/srv/gone.txt"}) {
		t.Fatalf("entries %d, files %d, removed %v; want 4, 3, [/srv/gone.txt]", entries, files, removed)
	}
	got := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(err)
		b, _ := io.ReadAll(tr)
		switch h.Typeflag {
		case tar.TypeDir:
			got[h.Name] = "dir"
		case tar.TypeSymlink:
			got[h.Name] = "-> " + h.Linkname
		default:
			got[h.Name] = string(b)
		}
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: owner %d:%d, want 0:0", h.Name, h.Uid, h.Gid)
		}
	}
	want := map[string]string{"srv/a.txt": "A", "srv/sub/": "dir", "srv/sub/b.txt": "BB", "srv/link": "-> a.txt"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("archive = %v, want %v", got, want)
	}
}

// loadWatch writes a compose project with a build section into a temp dir
// and loads it.
func loadWatch(t *testing.T, develop string) (*compose.Loaded, string) {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{
		"Dockerfile":    "FROM scratch\n",
		"app.txt":       "v1",
		"static/a.html": "a",
		"compose.yaml":  "name: w\nservices:\n  web:\n    build: .\n    working_dir: /app\n    develop:\n" + develop + "  db:\n    image: db\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l, err := compose.Load(context.Background(), compose.Options{WorkingDir: dir, Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	return l, dir
}

func TestWatchRules(t *testing.T) {
	tests := []struct {
		name     string
		develop  string
		services []string
		want     []string // "action path target" per rule, paths relative to the project
		wantNote string
		wantErr  string
	}{
		{
			name: "sync and rebuild",
			develop: "      watch:\n        - {path: ./static, action: sync, target: /srv, ignore: ['*.tmp']}\n" +
				"        - {path: ./app.txt, action: rebuild}\n        - {path: ./static, action: sync+restart, target: rel}\n",
			want: []string{"sync static /srv", "rebuild app.txt ", "sync+restart static /app/rel"},
		},
		{
			name:    "sync+exec",
			develop: "      watch:\n        - {path: ./static, action: sync+exec, target: /srv, exec: {command: [ls, /srv], user: app, environment: {A: b}}}\n",
			want:    []string{"sync+exec static /srv exec=[ls /srv] user=app env=[A=b]"},
		},
		{
			name:     "sync+exec privileged is noted",
			develop:  "      watch:\n        - {path: ./static, action: sync+exec, target: /srv, exec: {command: ls, privileged: true}}\n",
			want:     []string{"sync+exec static /srv exec=[ls] user= env=[]"},
			wantNote: "exec.privileged is not supported",
		},
		{name: "sync+exec without a command", develop: "      watch:\n        - {path: ./static, action: sync+exec, target: /srv}\n", wantErr: "needs exec.command"},
		{name: "missing path", develop: "      watch:\n        - {path: ./nope, action: sync, target: /x}\n", wantErr: "create it or fix the rule"},
		{name: "no rules", develop: "      watch: []\n", wantErr: "has develop.watch rules"},
		{name: "a service without rules asked for", develop: "      watch:\n        - {path: ., action: rebuild}\n", services: []string{"db"}, wantErr: "service db has no develop.watch rules"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, dir := loadWatch(t, tt.develop)
			rules, notes, err := watchRules(l, tt.services)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range rules {
				rel, _ := filepath.Rel(dir, r.path)
				g := r.action + " " + rel + " " + r.target
				if r.exec != nil {
					g += fmt.Sprintf(" exec=%v user=%s env=%v", r.exec.Cmd, r.exec.User, r.exec.Env)
				}
				got = append(got, g)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("rules = %q, want %q", got, tt.want)
			}
			if tt.wantNote != "" && (len(notes) != 1 || !strings.Contains(notes[0], tt.wantNote)) {
				t.Fatalf("notes = %q, want one with %q", notes, tt.wantNote)
			}
		})
	}
}

// TestWatcherEvents drives the file watches by hand: changes are queued
// per rule, ignored ones are not, and a new directory is watched with what
// it already holds.
func TestWatcherEvents(t *testing.T) {
	l, dir := loadWatch(t, "      watch:\n        - {path: ./static, action: sync, target: /srv, ignore: ['*.tmp', 'skip']}\n"+
		"        - {path: ./app.txt, action: rebuild}\n")
	rules, _, err := watchRules(l, nil)
	if err != nil {
		t.Fatal(err)
	}
	w, err := newWatcher(nil, nil, l.Project, rules, time.Minute, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	static := filepath.Join(dir, "static")
	write := func(rel, content string) {
		t.Helper()
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// pump feeds events to the watcher until want is queued (or 5s pass).
	pump := func(want map[int][]string) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case ev := <-w.fs.Events:
				w.event(ev, time.Now())
			case err := <-w.fs.Errors:
				t.Fatal(err)
			case <-time.After(200 * time.Millisecond):
				got := w.batch.take()
				for _, paths := range got {
					sort.Strings(paths)
				}
				if reflect.DeepEqual(got, want) {
					return
				}
				select {
				case <-deadline:
					t.Fatalf("queued %v, want %v", got, want)
				default:
				}
				// Not all there yet: put back what was taken.
				for i, paths := range got {
					for _, p := range paths {
						w.batch.add(i, p, time.Now())
					}
				}
			}
		}
	}

	write("static/new.txt", "n")
	write("static/x.tmp", "ignored")
	write("other.txt", "no rule")
	pump(map[int][]string{0: {filepath.Join(static, "new.txt")}})

	// A directory made with its contents at once (mkdir -p; write).
	write("static/d1/d2/deep.txt", "d")
	write("static/skip/s.txt", "ignored dir")
	pump(map[int][]string{0: {
		filepath.Join(static, "d1"), filepath.Join(static, "d1", "d2"), filepath.Join(static, "d1", "d2", "deep.txt"),
	}})
	// Its subdirectories are watched now.
	write("static/d1/d2/later.txt", "l")
	pump(map[int][]string{0: {filepath.Join(static, "d1", "d2", "later.txt")}})

	// A directory removed and made again is watched again.
	if err := os.RemoveAll(filepath.Join(static, "d1")); err != nil {
		t.Fatal(err)
	}
	pump(map[int][]string{0: {
		filepath.Join(static, "d1"), filepath.Join(static, "d1", "d2"),
		filepath.Join(static, "d1", "d2", "deep.txt"), filepath.Join(static, "d1", "d2", "later.txt"),
	}})
	write("static/d1/again.txt", "a")
	pump(map[int][]string{0: {filepath.Join(static, "d1"), filepath.Join(static, "d1", "again.txt")}})
	write("static/d1/again2.txt", "a")
	pump(map[int][]string{0: {filepath.Join(static, "d1", "again2.txt")}})

	if err := os.Remove(filepath.Join(static, "new.txt")); err != nil {
		t.Fatal(err)
	}
	write("app.txt", "v2")
	pump(map[int][]string{0: {filepath.Join(static, "new.txt")}, 1: {filepath.Join(dir, "app.txt")}})
}
