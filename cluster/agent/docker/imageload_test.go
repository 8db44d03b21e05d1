package docker_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"

	"github.com/devhq/dev/cluster/agent/docker"
)

// TestLoadImageChecks: an image from a peer loads only when the archive is
// exactly the image asked for: another image, an extra tag or an archive
// over the size cap is refused and leaves the engine as it was.
func TestLoadImageChecks(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	base, err := f.cli.ImageInspect(ctx, testImage)
	if err != nil {
		t.Fatal(err)
	}
	tag := "devtest-load-" + randHex(4) + ":1"
	if err := f.cli.ImageTag(ctx, testImage, tag); err != nil {
		t.Fatal(err)
	}
	defer f.cli.ImageRemove(context.Background(), tag, image.RemoveOptions{}) //nolint:errcheck // best effort
	save := func(ref string) []byte {
		t.Helper()
		rc, err := f.drv.SaveImage(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	byID, byTag := save(base.ID), save(tag)
	if _, err := f.cli.ImageRemove(ctx, tag, image.RemoveOptions{}); err != nil {
		t.Fatal(err)
	}

	other := "sha256:" + string(bytes.Repeat([]byte("ab"), 32))
	for _, tt := range []struct {
		name    string
		archive []byte
		want    string
	}{
		{"another image than asked", byID, other},
		{"a tag it was not asked for", byTag, base.ID},
		{"another tag", byTag, "devtest-load-other:1"},
		{"not an image archive", []byte("not a tar"), base.ID},
	} {
		if err := f.drv.LoadImage(ctx, bytes.NewReader(tt.archive), tt.want); !errors.Is(err, docker.ErrImageRefused) {
			t.Errorf("%s: LoadImage = %v, want refused", tt.name, err)
		}
	}
	if _, err := f.cli.ImageInspect(ctx, tag); !cerrdefs.IsNotFound(err) {
		t.Fatalf("a refused archive tagged %s: %v", tag, err)
	}
	small := docker.New(f.cli, docker.Options{MaxImageBytes: 1024, Logger: slog.New(slog.DiscardHandler)})
	if err := small.LoadImage(ctx, bytes.NewReader(byTag), tag); !errors.Is(err, docker.ErrImageRefused) {
		t.Errorf("an archive over the cap: %v, want refused", err)
	}

	// The real thing loads: by ID, and by the tag it carries.
	if err := f.drv.LoadImage(ctx, bytes.NewReader(byID), base.ID); err != nil {
		t.Errorf("LoadImage by ID: %v", err)
	}
	if err := f.drv.LoadImage(ctx, bytes.NewReader(byTag), tag); err != nil {
		t.Errorf("LoadImage by tag: %v", err)
	}
	if got, err := f.cli.ImageInspect(ctx, tag); err != nil || got.ID != base.ID {
		t.Errorf("after loading %s: %s, %v; want %s", tag, got.ID, err, base.ID)
	}
}
