package agent

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/devhq/dev/cluster/api"
)

// CopyFiles extracts a tar archive into directory dir of the running
// container of a pod of this node (the sync action of `dev up --watch`).
func (a *Agent) CopyFiles(ctx context.Context, pod, dir string, archive io.Reader) error {
	c, err := a.runningContainer(ctx, "copy files to", pod)
	if err != nil {
		return err
	}
	if err := a.d.CopyTo(ctx, c.ID, dir, archive); err != nil {
		return fmt.Errorf("copy files to %s:%s: %w", pod, dir, err)
	}
	return nil
}

// CopyFromPod returns a tar archive of path p of the running container of
// a pod of this node (`dev cp POD:P`), and what p is; with stat, only what
// p is (a nil archive). A missing p is a refusal that is not found.
func (a *Agent) CopyFromPod(ctx context.Context, pod, p string, stat bool) (io.ReadCloser, api.PathStat, error) {
	c, err := a.runningContainer(ctx, "copy from", pod)
	if err != nil {
		return nil, api.PathStat{}, err
	}
	var rc io.ReadCloser
	var st api.PathStat
	if stat {
		st, err = a.d.StatPath(ctx, c.ID, p)
	} else {
		rc, st, err = a.d.CopyFrom(ctx, c.ID, p)
	}
	if errors.Is(err, ErrNotFound) {
		return nil, api.PathStat{}, refused(true, "copy from %s: no such file or directory %s in the container", pod, p)
	}
	if err != nil {
		return nil, api.PathStat{}, fmt.Errorf("copy from %s:%s: %w", pod, p, err)
	}
	return rc, st, nil
}

// RemoveFiles removes paths from the running container of a pod of this
// node.
func (a *Agent) RemoveFiles(ctx context.Context, pod string, paths []string) error {
	c, err := a.runningContainer(ctx, "remove files in", pod)
	if err != nil {
		return err
	}
	if err := a.d.RemoveFiles(ctx, c.ID, paths); err != nil {
		return fmt.Errorf("remove files in %s: %w", pod, err)
	}
	return nil
}

// runningContainer returns the running container of a pod of this node.
func (a *Agent) runningContainer(ctx context.Context, what, pod string) (Container, error) {
	p, ok := a.st.Pod(pod)
	switch {
	case !ok:
		return Container{}, fmt.Errorf("%s %s: no such pod", what, pod)
	case p.Node != a.opts.Node:
		return Container{}, fmt.Errorf("%s %s: pod runs on node %s, not %s", what, pod, p.Node, a.opts.Node)
	case p.Deleting:
		return Container{}, fmt.Errorf("%s %s: the pod is being removed", what, pod)
	}
	c, err := a.d.Inspect(ctx, pod)
	if errors.Is(err, ErrNotFound) {
		return Container{}, fmt.Errorf("%s %s: the pod has no container yet (%s)", what, pod, stateOf(p))
	}
	if err != nil {
		return Container{}, fmt.Errorf("%s %s: %w", what, pod, err)
	}
	if !c.Running() {
		return Container{}, fmt.Errorf("%s %s: the pod is not running (%s)", what, pod, c.State)
	}
	return c, nil
}
