package testimage_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"

	"github.com/devhq/dev/test/testimage"
)

func TestBuild(t *testing.T) {
	cli := testimage.Docker(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	const tag = "devtest/testapp:testimage"
	t.Cleanup(func() {
		cli.ImageRemove(context.Background(), tag, image.RemoveOptions{}) //nolint:errcheck // best effort
	})

	for i := range 2 { // the second call is a no-op
		if err := testimage.Build(ctx, cli, tag); err != nil {
			t.Fatalf("Build #%d: %v", i+1, err)
		}
	}
	img, err := cli.ImageInspect(ctx, tag)
	if err != nil {
		t.Fatalf("inspect %s: %v", tag, err)
	}
	if got := img.Config.Entrypoint; len(got) != 1 || got[0] != "/app" {
		t.Errorf("entrypoint = %v, want [/app]", got)
	}
	if got := img.Config.Cmd; len(got) != 1 || got[0] != "serve" {
		t.Errorf("cmd = %v, want [serve]", got)
	}
	if img.Config.Labels[testimage.LabelBinary] == "" {
		t.Errorf("labels = %v, want %s", img.Config.Labels, testimage.LabelBinary)
	}
}

func TestBuildDir(t *testing.T) {
	cli := testimage.Docker(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	const base = "devtest/testapp:builddir-base"
	const tag = "devtest/testapp:builddir"
	t.Cleanup(func() {
		ctx := context.Background()
		cli.ImageRemove(ctx, tag, image.RemoveOptions{})  //nolint:errcheck // best effort
		cli.ImageRemove(ctx, base, image.RemoveOptions{}) //nolint:errcheck // best effort
		// The classic builder can leave an untagged intermediate image behind.
		cli.ImagesPrune(ctx, filters.NewArgs(filters.Arg("dangling", "true"), filters.Arg("label", "devtest.builddir"))) //nolint:errcheck // best effort
	})
	if err := testimage.Build(ctx, cli, base); err != nil {
		t.Fatalf("Build: %v", err)
	}
	dir := t.TempDir()
	df := "FROM " + base + "\nLABEL devtest.builddir=1\nARG GREETING\nLABEL greeting=$GREETING\nCOPY hello.txt /hello.txt\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := testimage.BuildDir(ctx, cli, dir, tag, map[string]string{"GREETING": "hello"}); err != nil {
		t.Fatalf("BuildDir: %v", err)
	}
	img, err := cli.ImageInspect(ctx, tag)
	if err != nil {
		t.Fatalf("inspect %s: %v", tag, err)
	}
	if img.Config.Labels["greeting"] != "hello" {
		t.Errorf("labels = %v, want greeting=hello", img.Config.Labels)
	}

	// A failing step is an error, not a silent success.
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM "+base+"\nCOPY nope /nope\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := testimage.BuildDir(ctx, cli, dir, tag+"-bad", nil); err == nil {
		t.Error("BuildDir of a failing Dockerfile succeeded")
	}
}
