package docker

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/docker/docker/api/types/image"
)

// An image another node sends (docker save of what this node asked for)
// is checked before the engine sees it: it must be that one image and no
// other, carry no tag but the one asked for, and stay under a size; once
// loaded, the engine must hold it under the asked ID. A peer can then not
// slip in a different image, nor re-point a tag this node uses.

// DefaultMaxImageBytes caps an image archive from a peer.
const DefaultMaxImageBytes = 8 << 30

// ErrImageRefused is returned (wrapped) for an archive that is not the
// image asked for.
var ErrImageRefused = errors.New("image archive refused")

// imageManifest is one entry of a docker save archive's manifest.json.
type imageManifest struct {
	Config   string   `json:"Config"` // "<hex>.json" or "blobs/sha256/<hex>"
	RepoTags []string `json:"RepoTags"`
}

// LoadImage implements agent.Driver: docker load of an archive that must
// hold exactly the image want (an ID "sha256:...", or a tag), checked
// before and after loading.
func (d *Driver) LoadImage(ctx context.Context, r io.Reader, want string) error {
	if d.opts.SpoolDir != "" {
		if err := os.MkdirAll(d.opts.SpoolDir, 0o700); err != nil {
			return fmt.Errorf("load image %s: %w", want, err)
		}
	}
	f, err := os.CreateTemp(d.opts.SpoolDir, "dev-image-*.tar")
	if err != nil {
		return fmt.Errorf("load image %s: %w", want, err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	limit := d.opts.MaxImageBytes
	if limit <= 0 {
		limit = DefaultMaxImageBytes
	}
	n, err := io.Copy(f, io.LimitReader(r, limit+1))
	if err != nil {
		return fmt.Errorf("load image %s: receive: %w", want, err)
	}
	if n > limit {
		return fmt.Errorf("load image %s: %w: over %d MiB", want, ErrImageRefused, limit>>20)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("load image %s: %w", want, err)
	}
	id, err := checkImageArchive(f, want)
	if err != nil {
		return fmt.Errorf("load image %s: %w", want, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("load image %s: %w", want, err)
	}
	resp, err := d.cli.ImageLoad(ctx, f)
	if err != nil {
		return fmt.Errorf("load image %s: %w", want, err)
	}
	defer resp.Body.Close()
	if err := ReadBuildStream(resp.Body); err != nil {
		return fmt.Errorf("load image %s: %w", want, err)
	}
	got, err := d.cli.ImageInspect(ctx, want)
	if err != nil || got.ID != id {
		if err == nil {
			// Not what the archive said: take out what came in (the
			// image the engine tagged, not the one the archive named,
			// which may be another image already there).
			_, _ = d.cli.ImageRemove(ctx, got.ID, image.RemoveOptions{PruneChildren: true})
		}
		return fmt.Errorf("load image %s: %w: the engine holds %q after loading %s (%v)", want, ErrImageRefused, got.ID, id, err)
	}
	return nil
}

// checkImageArchive reads a docker save archive and returns the ID of the
// one image in it, or why it is not exactly want. Every file the engine
// reads tags or images from is checked: manifest.json, the legacy
// repositories file, and an OCI index.json (newer engines); each may
// appear once, under any spelling of its path.
func checkImageArchive(r io.Reader, want string) (string, error) {
	tr := tar.NewReader(r)
	seen := map[string]bool{}
	var id string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrImageRefused, err)
		}
		name := path.Clean("/" + h.Name)[1:] // "/manifest.json", "./x/../manifest.json": manifest.json
		switch name {
		case "manifest.json", "repositories", "index.json":
		default:
			continue
		}
		if seen[name] {
			return "", fmt.Errorf("%w: %s appears twice", ErrImageRefused, name)
		}
		seen[name] = true
		body := io.LimitReader(tr, 1<<20)
		switch name {
		case "manifest.json":
			if id, err = checkManifest(body, want); err != nil {
				return "", err
			}
		case "repositories":
			if err := checkRepositories(body, want); err != nil {
				return "", err
			}
		case "index.json":
			if err := checkIndex(body, want); err != nil {
				return "", err
			}
		}
	}
	if id == "" {
		return "", fmt.Errorf("%w: no manifest.json", ErrImageRefused)
	}
	return id, nil
}

// checkManifest checks manifest.json: one image, the asked ID, no tag but
// the asked one.
func checkManifest(r io.Reader, want string) (string, error) {
	var ms []imageManifest
	if err := json.NewDecoder(r).Decode(&ms); err != nil {
		return "", fmt.Errorf("%w: manifest.json: %v", ErrImageRefused, err)
	}
	if len(ms) != 1 {
		return "", fmt.Errorf("%w: %d images in it, want 1", ErrImageRefused, len(ms))
	}
	m := ms[0]
	hex := strings.TrimSuffix(path.Base(m.Config), ".json")
	if len(hex) != 64 || strings.Trim(hex, "0123456789abcdef") != "" {
		return "", fmt.Errorf("%w: config %q is not an image ID", ErrImageRefused, m.Config)
	}
	id := "sha256:" + hex
	if isID(want) && id != want {
		return "", fmt.Errorf("%w: it holds image %s", ErrImageRefused, id)
	}
	if !isID(want) && len(m.RepoTags) != 1 {
		return "", fmt.Errorf("%w: it is tagged %v, not %s", ErrImageRefused, m.RepoTags, want)
	}
	if err := checkTags(m.RepoTags, want); err != nil {
		return "", err
	}
	return id, nil
}

// checkRepositories checks the legacy {"repo": {"tag": "id"}} file.
func checkRepositories(r io.Reader, want string) error {
	var repos map[string]map[string]string
	if err := json.NewDecoder(r).Decode(&repos); err != nil {
		return fmt.Errorf("%w: repositories: %v", ErrImageRefused, err)
	}
	var tags []string
	for repo, ts := range repos {
		for tag := range ts {
			tags = append(tags, repo+":"+tag)
		}
	}
	return checkTags(tags, want)
}

// checkIndex checks an OCI index.json: the names it would tag.
func checkIndex(r io.Reader, want string) error {
	var idx struct {
		Manifests []struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := json.NewDecoder(r).Decode(&idx); err != nil {
		return fmt.Errorf("%w: index.json: %v", ErrImageRefused, err)
	}
	if len(idx.Manifests) > 1 {
		return fmt.Errorf("%w: index.json lists %d images, want 1", ErrImageRefused, len(idx.Manifests))
	}
	var tags []string
	for _, m := range idx.Manifests {
		if n := m.Annotations["io.containerd.image.name"]; n != "" {
			tags = append(tags, n)
		}
	}
	return checkTags(tags, want)
}

// checkTags allows no tag for an ID asked for, and only the asked one for
// a tag.
func checkTags(tags []string, want string) error {
	for _, t := range tags {
		if isID(want) || !sameTag(t, want) {
			return fmt.Errorf("%w: it would tag %s (asked for %s)", ErrImageRefused, t, want)
		}
	}
	return nil
}

func isID(ref string) bool {
	hex, ok := strings.CutPrefix(ref, "sha256:")
	return ok && len(hex) == 64
}

// sameTag compares tags as docker save writes them (":latest" spelled out).
func sameTag(a, b string) bool {
	norm := func(s string) string {
		s = strings.TrimPrefix(strings.TrimPrefix(s, "docker.io/"), "library/") // as newer engines spell Docker Hub's
		if i := strings.LastIndexByte(s, ':'); i < 0 || strings.Contains(s[i:], "/") {
			return s + ":latest"
		}
		return s
	}
	return norm(a) == norm(b)
}
