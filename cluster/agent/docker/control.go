package docker

import (
	"context"
	"fmt"
	"strings"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/devhq/dev/cluster/api"
)

// Kill sends signal to the running container id (`docker kill -s`).
func (d *Driver) Kill(ctx context.Context, id, signal string) error {
	if err := d.cli.ContainerKill(ctx, id, signal); err != nil {
		return fmt.Errorf("kill container %s: send %s: %w", id, signal, classify(err))
	}
	return nil
}

// Pause freezes the container's processes (`docker pause`); a paused
// container is left as it is.
func (d *Driver) Pause(ctx context.Context, id string) error {
	err := d.cli.ContainerPause(ctx, id)
	if err != nil && cerrdefs.IsConflict(err) {
		if c, ierr := d.cli.ContainerInspect(ctx, id); ierr == nil && c.State != nil && c.State.Paused {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("pause container %s: %w", id, classify(err))
	}
	return nil
}

// Unpause thaws a paused container (`docker unpause`); one that is not
// paused is left as it is.
func (d *Driver) Unpause(ctx context.Context, id string) error {
	err := d.cli.ContainerUnpause(ctx, id)
	if err != nil && cerrdefs.IsConflict(err) {
		if c, ierr := d.cli.ContainerInspect(ctx, id); ierr == nil && c.State != nil && !c.State.Paused {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("unpause container %s: %w", id, classify(err))
	}
	return nil
}

// Top lists the container's processes with ps's default columns, as
// `docker top` and `docker compose top` do.
func (d *Driver) Top(ctx context.Context, id string) (api.ProcessList, error) {
	top, err := d.cli.ContainerTop(ctx, id, nil)
	if err != nil {
		return api.ProcessList{}, fmt.Errorf("list the processes of container %s: %w", id, classify(err))
	}
	return api.ProcessList{Titles: top.Titles, Processes: top.Processes}, nil
}

// Image describes the image container id runs, as `docker compose images`
// does: the repository and tag of the reference the container was made
// from, the image's ID and size. A container made from an image ID (dev
// pins a service's image by ID) is shown by the name it was deployed with
// (want, the spec's image) when the image still has that tag, else by its
// first tag.
func (d *Driver) Image(ctx context.Context, id, want string) (api.ContainerImage, error) {
	c, err := d.cli.ContainerInspect(ctx, id)
	if err != nil {
		return api.ContainerImage{}, fmt.Errorf("inspect container %s: %w", id, classify(err))
	}
	ref := ""
	if c.Config != nil {
		ref = c.Config.Image
	}
	img, err := d.cli.ImageInspect(ctx, c.Image)
	if err != nil {
		return api.ContainerImage{}, fmt.Errorf("inspect image %s of container %s: %w", c.Image, id, classify(err))
	}
	repo, tag := SplitImageRef(ref, want, img.RepoTags)
	return api.ContainerImage{Repository: repo, Tag: tag, ImageID: img.ID, Size: img.Size}, nil
}

// SplitImageRef splits an image reference into repository and tag as
// docker shows them ("nginx", "1.27"; no tag is "latest"; Docker Hub's
// prefixes dropped). A reference that is an image ID is named by want when
// that is one of the image's repoTags, else by the first of them; none
// gives "<none>", as docker images writes it.
func SplitImageRef(ref, want string, repoTags []string) (repo, tag string) {
	if isImageID(ref) {
		if len(repoTags) == 0 {
			return "<none>", "<none>"
		}
		ref = repoTags[0]
		wr, wt := splitRef(want)
		for _, rt := range repoTags {
			if r, t := splitRef(rt); r == wr && t == wt {
				return r, t
			}
		}
	}
	return splitRef(ref)
}

func splitRef(ref string) (repo, tag string) {
	ref, _, hasDigest := strings.Cut(ref, "@")
	repo, tag = ref, "latest"
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		repo, tag = ref[:i], ref[i+1:]
	} else if hasDigest {
		tag = "<none>"
	}
	for _, p := range []string{"docker.io/library/", "docker.io/", "index.docker.io/library/", "index.docker.io/"} {
		if r, ok := strings.CutPrefix(repo, p); ok {
			repo = r
			break
		}
	}
	return repo, tag
}

// isImageID reports whether ref is an image ID ("sha256:<hex>", or 64 hex
// digits) rather than a name.
func isImageID(ref string) bool {
	hex := strings.TrimPrefix(ref, "sha256:")
	if len(hex) != 64 {
		return false
	}
	for _, r := range hex {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return true
}
