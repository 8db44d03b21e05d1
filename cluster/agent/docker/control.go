package docker

import (
	"context"
	"fmt"

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
