package cli

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/api"
)

type cpOptions struct {
	project projectFlags
	index   int
	archive bool
}

// NewCpCommand is `dev cp`, as `docker compose cp`.
func NewCpCommand(g *globals) *cobra.Command {
	var o cpOptions
	cmd := &cobra.Command{
		Use:   "cp [OPTIONS] SERVICE:SRC_PATH DEST_PATH|-\n  dev cp [OPTIONS] SRC_PATH|- SERVICE:DEST_PATH",
		Short: "Copy files between a pod and the local filesystem, on whichever node the pod runs (as docker compose cp)",
		Long: "Copy a file or directory out of a running pod's container, or into it, as `docker compose cp`,\n" +
			"whichever node runs the pod. SERVICE picks the service's first running pod (--index N: its\n" +
			"pod number N); a pod's full name (hello-web-2:/etc/x) works too. Paths in the pod are\n" +
			"absolute (a relative one is taken from /). As docker cp: a destination that is an existing\n" +
			"directory receives the source under its own name; otherwise the destination names the copy;\n" +
			"SRC_PATH ending in /. copies a directory's contents. - as DEST_PATH writes a tar archive to\n" +
			"stdout, as SRC_PATH reads one from stdin. Entries that would land outside DEST_PATH (.. or\n" +
			"links leading out) are refused. A copy out is limited to 1 GiB.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := parseCpArgs(args[0], args[1])
			if err != nil {
				return err
			}
			if o.index < 0 {
				return fmt.Errorf("cp: --index %d: want a pod number >= 1", o.index)
			}
			ctx := cmd.Context()
			project, c, err := o.project.connect(ctx, g, true)
			if err != nil {
				return err
			}
			target := spec.target
			if o.index > 0 {
				target += "." + strconv.Itoa(o.index)
			}
			pod, err := resolvePod(ctx, c, project, target)
			if err != nil {
				return err
			}
			spec.archive = o.archive
			if spec.out {
				return copyOut(ctx, c, pod.Name, spec, cmd.OutOrStdout())
			}
			return copyIn(ctx, c, pod.Name, spec, cmd.InOrStdin())
		},
	}
	o.project.register(cmd)
	cmd.Flags().IntVar(&o.index, "index", 0, "the service's pod number to copy from or to (default: its first running pod)")
	cmd.Flags().BoolVarP(&o.archive, "archive", "a", false, "keep the files' owners (uid:gid) as they are in the archive")
	return cmd
}

// cpSpec is a parsed `dev cp`: out of the pod (podPath -> local) or into it
// (local -> podPath). local "-" is stdout or stdin, as a tar archive.
type cpSpec struct {
	out      bool
	target   string // SERVICE or POD
	podPath  string // absolute, cleaned, "/." kept
	local    string
	archive  bool
	contents bool // the source ends in /.: its contents
}

// splitCpArg splits SERVICE:PATH; a local path (absolute, ./ or ../, or
// without a colon) gives target "". As docker cp.
func splitCpArg(arg string) (target, p string) {
	if arg == "-" || filepath.IsAbs(arg) || strings.HasPrefix(arg, ".") {
		return "", arg
	}
	t, p, ok := strings.Cut(arg, ":")
	if !ok {
		return "", arg
	}
	return t, p
}

// parseCpArgs parses SRC and DEST: exactly one of them names a pod.
func parseCpArgs(src, dst string) (cpSpec, error) {
	st, sp := splitCpArg(src)
	dt, dp := splitCpArg(dst)
	var s cpSpec
	switch {
	case st != "" && dt != "":
		return s, fmt.Errorf("cp %s %s: copying between pods is not supported; copy to a local path, then from it", src, dst)
	case st == "" && dt == "":
		return s, fmt.Errorf("cp %s %s: name the pod's side as SERVICE:PATH or POD:PATH", src, dst)
	case st != "":
		s = cpSpec{out: true, target: st, podPath: sp, local: dp}
	default:
		s = cpSpec{target: dt, podPath: dp, local: sp}
	}
	if s.podPath == "" {
		return s, fmt.Errorf("cp %s %s: the path in the pod is empty; give one after the colon", src, dst)
	}
	if s.local == "" {
		return s, fmt.Errorf("cp %s %s: the local path is empty", src, dst)
	}
	source := s.podPath
	if !s.out {
		source = s.local
	}
	s.contents = source != "-" && (strings.HasSuffix(source, "/.") || source == ".")
	trail := strings.HasSuffix(s.podPath, "/")
	s.podPath = path.Clean("/" + s.podPath)
	if trail && s.podPath != "/" {
		s.podPath += "/" // a destination that must be a directory
	}
	return s, nil
}

// copyOut copies spec.podPath of pod to spec.local.
func copyOut(ctx context.Context, c *api.HTTPClient, pod string, spec cpSpec, stdout io.Writer) error {
	rc, st, err := c.CopyFromPod(ctx, pod, strings.TrimSuffix(spec.podPath, "/"))
	if err != nil {
		return fmt.Errorf("copy from %s:%s: %w", pod, spec.podPath, err)
	}
	defer rc.Close()
	r := &capReader{r: rc, left: api.MaxCopyOut}
	if spec.local == "-" {
		if _, err := io.Copy(stdout, r); err != nil {
			return fmt.Errorf("copy from %s:%s: %w", pod, spec.podPath, err)
		}
		return nil
	}
	if err := extractCopy(r, st, spec.contents, spec.local, spec.archive); err != nil {
		return fmt.Errorf("copy from %s:%s to %s: %w", pod, spec.podPath, spec.local, err)
	}
	return nil
}

// capReader fails once more than left bytes were read.
type capReader struct {
	r    io.Reader
	left int64
}

func (c *capReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		return n, fmt.Errorf("the archive is over the %d MiB limit of a copy; copy a smaller part", api.MaxCopyOut>>20)
	}
	return n, err
}

// copyPlan is where an archive of a source lands: extracted into dir, its
// top entry (the source's name) renamed to top ("." for its contents).
type copyPlan struct {
	dir, top string
}

// planCopy applies docker cp's rules for a source (a directory or not) and
// a destination dest, which exists (and is a directory or not) or not.
// Paths are slash-separated.
func planCopy(srcName string, srcIsDir, contents bool, dest string, destExists, destIsDir bool) (copyPlan, error) {
	mustDir := strings.HasSuffix(dest, "/")
	dest = path.Clean(dest)
	switch {
	case contents && !srcIsDir:
		return copyPlan{}, fmt.Errorf("the source is not a directory: drop the /.")
	case destExists && destIsDir && contents:
		return copyPlan{dir: dest, top: "."}, nil
	case destExists && destIsDir:
		return copyPlan{dir: dest, top: srcName}, nil
	case destExists && srcIsDir:
		return copyPlan{}, fmt.Errorf("cannot copy a directory onto file %s; name a directory or a new path", dest)
	case destExists && mustDir:
		return copyPlan{}, fmt.Errorf("%s is not a directory", dest)
	case !destExists && mustDir && !srcIsDir:
		return copyPlan{}, fmt.Errorf("directory %s does not exist; create it first, or drop the trailing /", dest)
	}
	return copyPlan{dir: path.Dir(dest), top: path.Base(dest)}, nil
}

// extractCopy extracts the archive of a pod's path (st) to the local path
// dest, as docker cp: refusing any entry or link that would land outside
// the destination. With keepOwner, files get the archive's uid:gid (when
// allowed).
func extractCopy(r io.Reader, st api.PathStat, contents bool, dest string, keepOwner bool) error {
	fi, err := os.Stat(dest)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	slash := filepath.ToSlash(dest)
	if strings.HasSuffix(dest, string(filepath.Separator)) {
		slash += "/"
	}
	plan, err := planCopy(st.Name, st.IsDir(), contents, slash, exists, exists && fi.IsDir())
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.FromSlash(plan.dir)); err != nil {
		return fmt.Errorf("destination directory %s: %w", plan.dir, err)
	}
	return extractTar(r, st.Name, plan, keepOwner)
}

// entryPath maps an archive entry's name onto the plan: its top element,
// the source's name, becomes plan.top. ok is false for a name that would
// leave plan.dir (absolute, or climbing out with ..) or that is not below
// the source.
func entryPath(name, srcName, top string) (string, bool) {
	if path.IsAbs(name) {
		return "", false
	}
	name = path.Clean(name)
	first, rest, _ := strings.Cut(name, "/")
	if first != srcName {
		return "", false
	}
	rel := path.Join(top, rest)
	return rel, rel == "." || filepath.IsLocal(filepath.FromSlash(rel))
}

// linkInside tells whether a symbolic link at rel (below the destination)
// with target link stays inside the destination.
func linkInside(rel, link string) bool {
	if path.IsAbs(link) {
		return false
	}
	return filepath.IsLocal(filepath.FromSlash(path.Join(path.Dir(rel), link)))
}

// extractTar extracts r into plan.dir through an os.Root, so that no
// existing link leads a write outside of it either.
func extractTar(r io.Reader, srcName string, plan copyPlan, keepOwner bool) error {
	root, err := os.OpenRoot(filepath.FromSlash(plan.dir))
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		rel, ok := entryPath(h.Name, srcName, plan.top)
		if !ok {
			return fmt.Errorf("refusing archive entry %q: it would land outside the destination", h.Name)
		}
		name := filepath.FromSlash(rel)
		mode := fs.FileMode(h.Mode).Perm()
		if d := filepath.Dir(name); d != "." && h.Typeflag != tar.TypeDir {
			if err := root.MkdirAll(d, 0o755); err != nil { // an archive may omit parents
				return err
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return err
			}
			if err := root.Chmod(name, mode|0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			_ = root.Remove(name) // a link there is replaced, never followed
			f, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("write %s: %w", rel, err)
			}
		case tar.TypeSymlink:
			if !linkInside(rel, h.Linkname) {
				return fmt.Errorf("refusing link %s -> %s: it leads outside the destination", rel, h.Linkname)
			}
			_ = root.Remove(name)
			if err := root.Symlink(h.Linkname, name); err != nil {
				return err
			}
		case tar.TypeLink:
			old, ok := entryPath(h.Linkname, srcName, plan.top)
			if !ok {
				return fmt.Errorf("refusing hard link %s -> %s: it leads outside the destination", rel, h.Linkname)
			}
			_ = root.Remove(name)
			if err := root.Link(filepath.FromSlash(old), name); err != nil {
				return err
			}
		default:
			continue // devices, fifos: as docker cp without root, skipped
		}
		if keepOwner && os.Geteuid() == 0 {
			if err := root.Lchown(name, h.Uid, h.Gid); err != nil {
				return err
			}
		}
	}
}

// copyIn copies spec.local into spec.podPath of pod.
func copyIn(ctx context.Context, c *api.HTTPClient, pod string, spec cpSpec, stdin io.Reader) error {
	dest := spec.podPath
	if spec.local == "-" {
		if _, err := c.CopyFiles(ctx, pod, path.Clean(dest), stdin); err != nil {
			return fmt.Errorf("copy to %s:%s: %w", pod, dest, err)
		}
		return nil
	}
	src := spec.local
	fi, err := os.Lstat(strings.TrimSuffix(src, "/."))
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	exists, isDir := true, false
	st, err := c.StatPodPath(ctx, pod, path.Clean(dest))
	var ae *api.APIError
	switch {
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
		exists = false
	case err != nil:
		return fmt.Errorf("copy to %s:%s: %w", pod, dest, err)
	default:
		isDir = st.IsDir()
	}
	srcRoot := filepath.Clean(src)
	plan, err := planCopy(filepath.Base(srcRoot), fi.IsDir(), spec.contents, dest, exists, isDir)
	if err != nil {
		return fmt.Errorf("copy %s to %s:%s: %w", src, pod, dest, err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(archiveTree(pw, srcRoot, plan.top, spec.archive)) }()
	_, err = c.CopyFiles(ctx, pod, plan.dir, pr)
	pr.CloseWithError(err)
	if err != nil {
		return fmt.Errorf("copy %s to %s:%s: %w", src, pod, dest, err)
	}
	return nil
}

// archiveTree writes a tar archive of the local file or tree src, named top
// (its contents at the archive's root for "."). Without keepOwner the
// entries belong to root, as docker cp makes them.
func archiveTree(w io.Writer, src, top string, keepOwner bool) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		name := path.Join(top, filepath.ToSlash(rel))
		if name == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return fmt.Errorf("archive %s: %w", p, err)
		}
		h.Name = name
		if info.IsDir() {
			h.Name += "/"
		}
		if !keepOwner {
			h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.Copy(tw, f); err != nil {
			return fmt.Errorf("archive %s: %w", p, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
