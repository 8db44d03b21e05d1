package cli

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devhq/dev/cluster/api"
)

func TestParseCpArgs(t *testing.T) {
	tests := []struct {
		name     string
		src, dst string
		want     cpSpec
		wantErr  string
	}{
		{name: "out of a service", src: "web:/etc/hosts", dst: ".", want: cpSpec{out: true, target: "web", podPath: "/etc/hosts", local: "."}},
		{name: "out of a pod, relative", src: "hello-web-2:etc/x", dst: "/tmp/x", want: cpSpec{out: true, target: "hello-web-2", podPath: "/etc/x", local: "/tmp/x"}},
		{name: "out, contents", src: "web:/srv/.", dst: "out", want: cpSpec{out: true, target: "web", podPath: "/srv", local: "out", contents: true}},
		{name: "out to stdout", src: "web:/srv", dst: "-", want: cpSpec{out: true, target: "web", podPath: "/srv", local: "-"}},
		{name: "in, into a directory", src: "./a.txt", dst: "web:/srv/", want: cpSpec{target: "web", podPath: "/srv/", local: "./a.txt"}},
		{name: "in, absolute with a colon", src: "/tmp/a:b", dst: "web:/srv", want: cpSpec{target: "web", podPath: "/srv", local: "/tmp/a:b"}},
		{name: "in, contents", src: "dir/.", dst: "web:/srv", want: cpSpec{target: "web", podPath: "/srv", local: "dir/.", contents: true}},
		{name: "in from stdin", src: "-", dst: "web:/srv", want: cpSpec{target: "web", podPath: "/srv", local: "-"}},
		{name: "both pods", src: "web:/a", dst: "db:/b", wantErr: "between pods"},
		{name: "no pod", src: "a", dst: "/b", wantErr: "SERVICE:PATH"},
		{name: "empty pod path", src: "web:", dst: "x", wantErr: "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCpArgs(tt.src, tt.dst)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseCpArgs = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestPlanCopy(t *testing.T) {
	tests := []struct {
		name                string
		src                 string
		srcDir, contents    bool
		dest                string
		destExists, destDir bool
		want                copyPlan
		wantErr             string
	}{
		{name: "file into a directory", src: "hosts", dest: "/out", destExists: true, destDir: true, want: copyPlan{"/out", "hosts"}},
		{name: "file to a new name", src: "hosts", dest: "/out/h", want: copyPlan{"/out", "h"}},
		{name: "file over a file", src: "hosts", dest: "/out/h", destExists: true, want: copyPlan{"/out", "h"}},
		{name: "dir into a directory", src: "srv", srcDir: true, dest: "/out", destExists: true, destDir: true, want: copyPlan{"/out", "srv"}},
		{name: "dir to a new name", src: "srv", srcDir: true, dest: "/out/new", want: copyPlan{"/out", "new"}},
		{name: "dir contents into a directory", src: "srv", srcDir: true, contents: true, dest: "/out", destExists: true, destDir: true, want: copyPlan{"/out", "."}},
		{name: "dir onto a file", src: "srv", srcDir: true, dest: "/out/f", destExists: true, wantErr: "onto file"},
		{name: "file to a missing directory", src: "hosts", dest: "/out/d/", wantErr: "does not exist"},
		{name: "contents of a file", src: "hosts", contents: true, dest: "/out", wantErr: "not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := planCopy(tt.src, tt.srcDir, tt.contents, tt.dest, tt.destExists, tt.destDir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("planCopy = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

type tarEntry struct {
	name, link, body string
	typ              byte
}

func tarOf(t *testing.T, entries ...tarEntry) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body))}
		if e.typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			_, _ = tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

// TestExtractCopySafety: an archive cannot write outside the destination,
// by name, symbolic link or hard link; a well-formed one lands as docker cp
// puts it.
func TestExtractCopySafety(t *testing.T) {
	dir := api.PathStat{Name: "srv", Mode: os.ModeDir | 0o755}
	tests := []struct {
		name    string
		entries []tarEntry
		wantErr string
	}{
		{name: "dot dot", entries: []tarEntry{{name: "srv/../../evil", body: "x", typ: tar.TypeReg}}, wantErr: "outside"},
		{name: "absolute name", entries: []tarEntry{{name: "/etc/evil", body: "x", typ: tar.TypeReg}}, wantErr: "outside"},
		{name: "not below the source", entries: []tarEntry{{name: "other/x", body: "x", typ: tar.TypeReg}}, wantErr: "outside"},
		{name: "absolute link", entries: []tarEntry{{name: "srv/l", link: "/etc/passwd", typ: tar.TypeSymlink}}, wantErr: "leads outside"},
		{name: "climbing link", entries: []tarEntry{{name: "srv/l", link: "../../x", typ: tar.TypeSymlink}}, wantErr: "leads outside"},
		{name: "hard link out", entries: []tarEntry{{name: "srv/l", link: "../x", typ: tar.TypeLink}}, wantErr: "leads outside"},
		{name: "fine", entries: []tarEntry{
			{name: "srv/", typ: tar.TypeDir},
			{name: "srv/a.txt", body: "hello", typ: tar.TypeReg},
			{name: "srv/sub/b.txt", body: "b", typ: tar.TypeReg},
			{name: "srv/l", link: "a.txt", typ: tar.TypeSymlink},
			{name: "srv/sub/up", link: "../a.txt", typ: tar.TypeSymlink},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			dest := filepath.Join(base, "out")
			if err := os.Mkdir(dest, 0o755); err != nil {
				t.Fatal(err)
			}
			err := extractCopy(tarOf(t, tt.entries...), dir, false, dest, false)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tt.wantErr)
				}
				if _, err := os.Stat(filepath.Join(base, "evil")); err == nil {
					t.Fatal("a file was written outside the destination")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range map[string]string{"srv/a.txt": "hello", "srv/sub/b.txt": "b", "srv/l": "hello", "srv/sub/up": "hello"} {
				b, err := os.ReadFile(filepath.Join(dest, name))
				if err != nil || string(b) != want {
					t.Fatalf("%s = %q, %v; want %q", name, b, err, want)
				}
			}
		})
	}
}

// TestCopyRoundTrip: a local tree archived as copyIn sends it, extracted as
// copyOut lands it under a new name, holds the same files.
func TestCopyRoundTrip(t *testing.T) {
	src := filepath.Join(t.TempDir(), "site")
	if err := os.MkdirAll(filepath.Join(src, "css"), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(src, "index.html"), []byte("<h1>hi</h1>"), 0o644)
	_ = os.WriteFile(filepath.Join(src, "css", "a.css"), []byte("a{}"), 0o600)
	var buf bytes.Buffer
	if err := archiveTree(&buf, src, "site", false); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "copy")
	st := api.PathStat{Name: "site", Mode: os.ModeDir | 0o755}
	if err := extractCopy(&buf, st, false, dest, false); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dest, "css", "a.css"))
	if err != nil || string(b) != "a{}" {
		t.Fatalf("css/a.css = %q, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(dest, "css", "a.css")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("css/a.css mode = %v, %v; want 0600 kept", fi.Mode(), err)
	}
}

func TestCapReader(t *testing.T) {
	r := &capReader{r: strings.NewReader("0123456789"), left: 5}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("err = %v, want the limit", err)
	}
}
