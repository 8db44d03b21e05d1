package docker

// The pods' secret and config files: written per container under
// Options.SecretsDir, on a tmpfs (secretsfs_linux.go), bind-mounted
// read-only, removed with the container.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/devhq/dev/cluster/api"
	"github.com/docker/docker/api/types/mount"
)

// secretDir is the host directory of pod's secret files.
func (d *Driver) secretDir(pod string) string { return filepath.Join(d.opts.SecretsDir, pod) }

// HasFiles implements agent.Driver: the directory of the container's
// secret and config files exists (a reboot empties the tmpfs that holds
// it).
func (d *Driver) HasFiles(container string) bool {
	if !validFileName(container) {
		return false
	}
	_, err := os.Stat(d.secretDir(container))
	return err == nil
}

// writeSecrets writes the files of spec's secrets and configs under the
// pod's directory (secrets/ and configs/: a secret and a config may share
// a name) and returns their read-only bind mounts. A target that is not
// absolute goes under /run/secrets (a secret) or / (a config). Before the
// first file, the secrets dir gets its tmpfs (ensureSecretsDir).
func (d *Driver) writeSecrets(pod string, spec *api.ServiceSpec) (_ []mount.Mount, err error) {
	d.secretsMu.Lock()
	defer d.secretsMu.Unlock()
	removed := d.removeSecretFiles(pod) // drop files of an older spec
	if len(spec.Secrets) == 0 && len(spec.Configs) == 0 {
		if removed {
			d.releaseSecretsDir()
		}
		return nil, nil
	}
	if !validFileName(pod) {
		return nil, fmt.Errorf("write secrets: invalid pod name %q", pod)
	}
	defer func() {
		if err != nil {
			d.removeSecretFiles(pod)
			d.releaseSecretsDir()
		}
	}()
	if err := d.ensureSecretsDir(); err != nil {
		return nil, fmt.Errorf("write secrets: %w", err)
	}
	var out []mount.Mount
	for _, kind := range []struct {
		what, sub, under string
		files            []api.SecretMount
	}{
		{"secret", "secrets", secretsTarget, spec.Secrets},
		{"config", "configs", "/", spec.Configs},
	} {
		if len(kind.files) == 0 {
			continue
		}
		dir := filepath.Join(d.secretDir(pod), kind.sub)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("write %ss: %w", kind.what, err)
		}
		for _, s := range kind.files {
			if !validFileName(s.Name) {
				return nil, fmt.Errorf("write %s %q: invalid name", kind.what, s.Name)
			}
			file := filepath.Join(dir, s.Name)
			mode := os.FileMode(s.Mode)
			if mode == 0 {
				mode = 0o444
			}
			if err := writeFileMode(file, s.Content, mode.Perm()); err != nil {
				return nil, fmt.Errorf("write %s %s: %w", kind.what, s.Name, err)
			}
			target := s.Target
			if target == "" {
				target = s.Name
			}
			if !path.IsAbs(target) {
				target = path.Join(kind.under, target)
			}
			out = append(out, mount.Mount{Type: mount.TypeBind, Source: file, Target: target, ReadOnly: true})
		}
	}
	return out, nil
}

// ensureSecretsDir makes the secrets dir and, with Options.SecretsTmpfs,
// mounts a tmpfs there unless it lies on one already (its own, or a
// parent's such as /run). A refused mount (an agent without the
// right to mount) leaves the files on disk, said once in the log; only a
// dir that cannot be made is an error. d.secretsMu is held.
func (d *Driver) ensureSecretsDir() error {
	dir := d.opts.SecretsDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create secrets dir: %w", err)
	}
	if !d.opts.SecretsTmpfs || d.tmpfsRefused {
		return nil
	}
	if on, err := d.fs.onTmpfs(dir); err == nil && on {
		return nil
	}
	if err := d.mountSecretsTmpfs(dir); err != nil {
		d.tmpfsRefused = true
		d.log.Warn("cannot mount a tmpfs for secret and config files: they stay on disk", "dir", dir, "err", err)
		return nil
	}
	d.log.Info("mounted a tmpfs for secret and config files", "dir", dir)
	return nil
}

// mountSecretsTmpfs mounts the tmpfs at dir. Files that dir already held
// on disk (containers made before, by a dev without the tmpfs) are moved
// into it, through a handle on the directory under the mount: none stays
// on disk, and those containers find theirs when they start again.
func (d *Driver) mountSecretsTmpfs(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read secrets dir: %w", err)
	}
	if len(entries) == 0 {
		return d.fs.mount(dir)
	}
	under, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("open secrets dir: %w", err)
	}
	defer under.Close()
	if err := d.fs.mount(dir); err != nil {
		return err
	}
	if err := moveTree(under, dir); err != nil {
		d.log.Warn("secret files written before the tmpfs stay on disk under it", "dir", dir, "err", err)
	}
	return nil
}

// moveTree copies every directory and regular file of from into dir,
// keeping their permissions, and removes each entry of from once copied.
func moveTree(from *os.Root, dir string) error {
	fsys := from.FS()
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return fmt.Errorf("move secret files: %w", err)
	}
	var errs []error
	for _, e := range entries {
		err := fs.WalkDir(fsys, e.Name(), func(name string, de fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := de.Info()
			if err != nil {
				return err
			}
			dst := filepath.Join(dir, filepath.FromSlash(name))
			switch {
			case de.IsDir():
				if err := os.Mkdir(dst, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
					return err
				}
				return os.Chmod(dst, info.Mode().Perm())
			case de.Type().IsRegular():
				b, err := fs.ReadFile(fsys, name)
				if err != nil {
					return err
				}
				return writeFileMode(dst, b, info.Mode().Perm())
			}
			return nil // nothing dev writes
		})
		if err == nil {
			err = from.RemoveAll(e.Name())
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("move secret files %s: %w", e.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// releaseSecretsDir unmounts the tmpfs at the secrets dir once it holds
// nothing, so that the last pod with files leaves no mount behind. Only a
// tmpfs mounted exactly there is unmounted (ours: nobody else mounts
// there), never a dir that merely lies on one, such as /run. A failure
// (EBUSY) is logged, not returned. d.secretsMu is held.
func (d *Driver) releaseSecretsDir() {
	if !d.opts.SecretsTmpfs {
		return
	}
	dir := d.opts.SecretsDir
	if entries, err := os.ReadDir(dir); err != nil || len(entries) > 0 {
		return
	}
	if mp, err := d.fs.isTmpfsMountPoint(dir); err != nil || !mp {
		if err != nil {
			d.log.Debug("cannot tell whether the secrets dir is a tmpfs", "dir", dir, "err", err)
		}
		return
	}
	if err := d.fs.unmount(dir); err != nil {
		d.log.Warn("cannot unmount the tmpfs of secret and config files", "dir", dir, "err", err)
		return
	}
	d.log.Info("unmounted the tmpfs of secret and config files: no container has any left", "dir", dir)
}

func writeFileMode(name string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil { // not subject to the umask
		f.Close()
		return err
	}
	return f.Close()
}

func validFileName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, `/\`) && !strings.ContainsRune(s, 0)
}

// removeSecrets removes the secret and config files of container pod,
// then the tmpfs that held them if they were the last (releaseSecretsDir).
func (d *Driver) removeSecrets(pod string) {
	d.secretsMu.Lock()
	defer d.secretsMu.Unlock()
	if d.removeSecretFiles(pod) {
		d.releaseSecretsDir()
	}
}

// removeSecretFiles removes the directory of pod's files and reports
// whether there was one. d.secretsMu is held.
func (d *Driver) removeSecretFiles(pod string) bool {
	if !validFileName(pod) {
		return false
	}
	dir := d.secretDir(pod)
	if _, err := os.Lstat(dir); err != nil {
		return false
	}
	if err := os.RemoveAll(dir); err != nil {
		d.log.Warn("cannot remove secret files", "pod", pod, "err", err)
	}
	return true
}
