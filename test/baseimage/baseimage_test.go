package baseimage_test

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/devhq/dev/test/baseimage"
	"github.com/devhq/dev/test/testimage"
)

// TestEnsure builds every stand-in (each recipe checks its program runs in a
// RUN step) and then finds them all up to date.
func TestEnsure(t *testing.T) {
	cli := testimage.Docker(t)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	var names []string
	for n := range baseimage.Images {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		start := time.Now()
		if err := baseimage.Ensure(ctx, cli, n); err != nil {
			t.Fatalf("Ensure(%s): %v", n, err)
		}
		t.Logf("%s: %s", n, time.Since(start).Round(time.Millisecond))
		img, err := cli.ImageInspect(ctx, baseimage.Images[n].Tag)
		if err != nil {
			t.Fatalf("inspect %s: %v", baseimage.Images[n].Tag, err)
		}
		if got := img.Config.Labels[baseimage.LabelStandIn]; got != n {
			t.Errorf("%s: label %s = %q, want %q", n, baseimage.LabelStandIn, got, n)
		}
		if img.Config.Labels[baseimage.LabelRecipe] == "" {
			t.Errorf("%s: no %s label", n, baseimage.LabelRecipe)
		}
	}
	// Up to date: no build, so quick, and the same image.
	for _, n := range names {
		before, err := cli.ImageInspect(ctx, baseimage.Images[n].Tag)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := baseimage.Ensure(ctx, cli, n); err != nil {
			t.Fatalf("Ensure(%s) again: %v", n, err)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("Ensure(%s) of an up-to-date image took %s", n, d)
		}
		after, err := cli.ImageInspect(ctx, baseimage.Images[n].Tag)
		if err != nil {
			t.Fatal(err)
		}
		if after.ID != before.ID {
			t.Errorf("Ensure(%s) rebuilt an up-to-date image", n)
		}
	}
}

func TestEnv(t *testing.T) {
	env, err := baseimage.Env("golang", "nginx")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"GO_IMAGE=dev-base/golang:local", "NGINX_IMAGE=dev-base/nginx:local"}
	if len(env) != 2 || env[0] != want[0] || env[1] != want[1] {
		t.Errorf("Env = %v, want %v", env, want)
	}
	if _, err := baseimage.Env("postgres"); err == nil {
		t.Error("Env(postgres) = nil error, want one: there is no such stand-in")
	}
}
