package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"

	"github.com/devhq/dev/cluster/api"
)

// CopyTo implements agent.Driver: the archive's entries are renamed to lie
// below dir and extracted at the container's root, so that the engine
// creates dir and its missing parents (docker cp needs an existing
// destination directory).
func (d *Driver) CopyTo(ctx context.Context, id, dir string, r io.Reader) error {
	if !path.IsAbs(dir) {
		return fmt.Errorf("copy to %s: directory %q is not absolute", id, dir)
	}
	prefix := strings.TrimPrefix(path.Clean(dir), "/")
	pr, pw := io.Pipe()
	defer pr.Close()
	go func() { pw.CloseWithError(rebase(r, pw, prefix)) }()
	err := d.cli.CopyToContainer(ctx, id, "/", pr, container.CopyToContainerOptions{})
	if err != nil {
		return fmt.Errorf("copy to %s:%s: %w", id, dir, classify(err))
	}
	return nil
}

// CopyFrom implements agent.Driver: the engine's archive of path p, the
// path's last element as its top entry, as `docker cp CONTAINER:p -`.
func (d *Driver) CopyFrom(ctx context.Context, id, p string) (io.ReadCloser, api.PathStat, error) {
	rc, st, err := d.cli.CopyFromContainer(ctx, id, p)
	if err != nil {
		return nil, api.PathStat{}, fmt.Errorf("copy from %s:%s: %w", id, p, classify(err))
	}
	return rc, pathStat(st), nil
}

// StatPath implements agent.Driver.
func (d *Driver) StatPath(ctx context.Context, id, p string) (api.PathStat, error) {
	st, err := d.cli.ContainerStatPath(ctx, id, p)
	if err != nil {
		return api.PathStat{}, fmt.Errorf("stat %s:%s: %w", id, p, classify(err))
	}
	return pathStat(st), nil
}

func pathStat(st container.PathStat) api.PathStat {
	return api.PathStat{Name: st.Name, Size: st.Size, Mode: st.Mode, LinkTarget: st.LinkTarget}
}

// rebase copies a tar archive from r to w with every entry moved below
// prefix (relative to the root, "" for the root itself). Entry names cannot
// climb out of prefix: ".." components are resolved as if at the root.
func rebase(r io.Reader, w io.Writer, prefix string) error {
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
	move := func(name string) string {
		rel := strings.TrimPrefix(path.Clean("/"+name), "/")
		return path.Join(prefix, rel)
	}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return tw.Close()
		} else if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		name := move(h.Name)
		if name == "" || name == "." {
			continue // the root itself: never rewritten
		}
		if h.Typeflag == tar.TypeDir {
			name += "/"
		}
		h.Name = name
		if h.Typeflag == tar.TypeLink {
			h.Linkname = move(h.Linkname)
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("write archive: %w", err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return fmt.Errorf("copy archive entry %s: %w", h.Name, err)
		}
	}
}

// RemoveFiles implements agent.Driver. The engine's API cannot remove files,
// so, with a local engine, the files are removed through the container's
// root as /proc shows it (after checking that the process belongs to the
// container; symbolic links cannot lead outside of it); otherwise, and for
// what that fails to remove, with `rm -rf` run in the container, as docker
// compose does (which needs an rm in the image).
func (d *Driver) RemoveFiles(ctx context.Context, id string, paths []string) error {
	ins, err := d.cli.ContainerInspect(ctx, id)
	if err != nil {
		return fmt.Errorf("inspect container %s: %w", id, classify(err))
	}
	if ins.State == nil || !ins.State.Running {
		return fmt.Errorf("remove files in %s: the container is not running", id)
	}
	rels := make([]string, 0, len(paths))
	for _, p := range paths {
		rel := strings.TrimPrefix(path.Clean("/"+p), "/")
		if rel == "" {
			return fmt.Errorf("remove files in %s: refusing to remove the root directory", id)
		}
		rels = append(rels, rel)
	}
	left := rels
	if root := d.procRoot(ins.ID, ins.State.Pid); root != nil {
		left = nil
		for _, rel := range rels {
			if err := root.RemoveAll(rel); err != nil {
				d.log.Debug("remove through /proc failed; trying rm in the container", "container", id, "path", "/"+rel, "err", err)
				left = append(left, rel)
			}
		}
		root.Close()
	}
	if len(left) == 0 {
		return nil
	}
	cmd := []string{"rm", "-rf", "--"}
	for _, rel := range left {
		cmd = append(cmd, "/"+rel)
	}
	var stderr bytes.Buffer
	code, err := d.Exec(ctx, id, api.ExecRequest{Cmd: cmd, User: "0"}, api.IO{Stdout: io.Discard, Stderr: &stderr})
	switch {
	case err != nil:
		return fmt.Errorf("remove files in %s: %w", id, err)
	case code == 126 || code == 127:
		return fmt.Errorf("remove files in %s: the image has no rm command and the container's files are not reachable from this agent", id)
	case code != 0:
		return fmt.Errorf("remove files in %s: rm exited with code %d: %s", id, code, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// procRoot opens the root directory of the container's main process through
// /proc, when the engine is local and pid is the container's process (its
// cgroup names the container); nil otherwise.
func (d *Driver) procRoot(id string, pid int) *os.Root {
	if pid <= 0 || id == "" || !strings.HasPrefix(d.cli.DaemonHost(), "unix://") {
		return nil
	}
	proc := "/proc/" + strconv.Itoa(pid)
	root, err := os.OpenRoot(proc + "/root")
	if err != nil {
		return nil
	}
	// Checked after opening, so that a PID reused meanwhile is caught.
	cg, err := os.ReadFile(proc + "/cgroup")
	if err != nil || !bytes.Contains(cg, []byte(id)) {
		root.Close()
		return nil
	}
	return root
}
