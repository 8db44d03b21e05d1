package agent_test

import (
	"archive/tar"
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"
)

func tarOf(t *testing.T, files map[string]string) *bytes.Buffer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for name, content := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &b
}

func TestCopyAndRemoveFiles(t *testing.T) {
	e := newEnv(t)
	name := e.deploy(spec("web", ""), 1, node)
	other := e.deploy(spec("api", ""), 1, "n2")
	e.run()
	e.waitRunning(name, 0)
	ctx := context.Background()

	if err := e.a.CopyFiles(ctx, name, "/srv", tarOf(t, map[string]string{"a.txt": "A", "d/b.txt": "B"})); err != nil {
		t.Fatalf("CopyFiles: %v", err)
	}
	want := map[string]string{"/srv/a.txt": "A", "/srv/d/b.txt": "B"}
	if got := e.d.fileSet(name); !reflect.DeepEqual(got, want) {
		t.Fatalf("files after copy = %v, want %v", got, want)
	}
	if err := e.a.RemoveFiles(ctx, name, []string{"/srv/d"}); err != nil {
		t.Fatalf("RemoveFiles: %v", err)
	}
	want = map[string]string{"/srv/a.txt": "A"}
	if got := e.d.fileSet(name); !reflect.DeepEqual(got, want) {
		t.Fatalf("files after remove = %v, want %v", got, want)
	}

	errs := []struct {
		name, pod, want string
	}{
		{name: "unknown pod", pod: "shop-nope-1", want: "no such pod"},
		{name: "pod of another node", pod: other, want: "runs on node n2"},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			err := e.a.CopyFiles(ctx, tt.pod, "/srv", tarOf(t, nil))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CopyFiles: err = %v, want %q", err, tt.want)
			}
			err = e.a.RemoveFiles(ctx, tt.pod, []string{"/srv/a.txt"})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("RemoveFiles: err = %v, want %q", err, tt.want)
			}
		})
	}
}
