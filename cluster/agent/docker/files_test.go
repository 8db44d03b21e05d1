package docker_test

import (
	"archive/tar"
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
)

func TestCopyToAndRemoveFiles(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	spec := f.spec("web")
	spec.Command = []string{"serve"}
	c := f.run(ctx, f.pod("web", 1), spec)

	cat := func(p string) (string, int) {
		t.Helper()
		var out, errOut syncBuffer
		code, err := f.drv.Exec(ctx, c.ID, api.ExecRequest{Cmd: []string{"/app", "cat", p}}, api.IO{Stdout: &out, Stderr: &errOut})
		if err != nil {
			t.Fatalf("exec cat %s: %v", p, err)
		}
		return out.String(), code
	}

	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range []struct{ name, content string }{
		{"a.txt", "A"}, {"d/e/b.txt", "B"}, {"../../escape.txt", "E"},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.content)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.content)) //nolint:errcheck // bytes.Buffer
	}
	tw.Close() //nolint:errcheck // bytes.Buffer
	// /srv/sync does not exist in the image: it is created.
	if err := f.drv.CopyTo(ctx, c.ID, "/srv/sync", &b); err != nil {
		t.Fatalf("CopyTo: %v", err)
	}
	for p, want := range map[string]string{"/srv/sync/a.txt": "A", "/srv/sync/d/e/b.txt": "B", "/srv/sync/escape.txt": "E"} {
		if got, code := cat(p); code != 0 || got != want {
			t.Fatalf("cat %s = %q (exit %d), want %q", p, got, code, want)
		}
	}
	if _, code := cat("/escape.txt"); code == 0 {
		t.Fatalf("an entry named ../../escape.txt left the target directory")
	}

	// The test image has no rm: the driver removes through /proc.
	if err := f.drv.RemoveFiles(ctx, c.ID, []string{"/srv/sync/d", "/srv/sync/missing"}); err != nil {
		t.Fatalf("RemoveFiles: %v", err)
	}
	if out, code := cat("/srv/sync/d/e/b.txt"); code == 0 {
		t.Fatalf("/srv/sync/d/e/b.txt still there after RemoveFiles: %q", out)
	}
	if got, code := cat("/srv/sync/a.txt"); code != 0 || got != "A" {
		t.Fatalf("RemoveFiles removed too much: a.txt = %q (exit %d)", got, code)
	}
	if err := f.drv.RemoveFiles(ctx, c.ID, []string{"/"}); err == nil {
		t.Fatalf("RemoveFiles of / succeeded")
	}
}
