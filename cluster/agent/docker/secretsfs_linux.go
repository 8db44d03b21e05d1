package docker

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// What the driver asks of the Linux kernel to keep secret and config files
// on a tmpfs (the secretsFS seam, declared in docker.go).

// hostSecretsFS is secretsFS on this host's kernel, in the agent's mount
// namespace (the host's, for an agent run as a process).
type hostSecretsFS struct{}

// onTmpfs reports whether dir lies on a tmpfs: its own mount, or one of a
// parent (such as /run).
func (hostSecretsFS) onTmpfs(dir string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return st.Type == unix.TMPFS_MAGIC, nil
}

// isTmpfsMountPoint reports whether dir itself is the mount point of a
// tmpfs (the topmost mount there), from /proc/self/mountinfo.
func (hostSecretsFS) isTmpfsMountPoint(dir string) (bool, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false, fmt.Errorf("find mount point %s: %w", dir, err)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real // the mount table names resolved paths
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, fmt.Errorf("read mount table: %w", err)
	}
	return tmpfsMountPointIn(b, abs), nil
}

// mount mounts a tmpfs at dir for secret files: mode 0700, at most 64 MiB,
// no set-user-ID, device files or executables.
func (hostSecretsFS) mount(dir string) error {
	if err := unix.Mount(secretsTmpfsSource, dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700,size=64m"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	return nil
}

// unmount unmounts the file system at dir. A busy mount (EBUSY) or none
// there (EINVAL) is an error like any other, for the caller to report.
func (hostSecretsFS) unmount(dir string) error {
	if err := unix.Unmount(dir, 0); err != nil {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return nil
}

// secretsTmpfsSource names the tmpfs dev mounts for secret files (the
// source column of /proc/self/mountinfo): only a tmpfs of that name is
// ever unmounted, never one a user put at the secrets dir.
const secretsTmpfsSource = "dev-secrets"

// tmpfsMountPointIn reports whether, in mountinfo (the format of
// /proc/self/mountinfo), the last mount whose mount point is exactly dir
// (absolute, clean) is dev's tmpfs (type tmpfs, source
// secretsTmpfsSource): the last one listed is the topmost.
func tmpfsMountPointIn(mountinfo []byte, dir string) bool {
	tmpfs := false
	for line := range strings.SplitSeq(string(mountinfo), "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
		f := strings.Fields(line)
		if len(f) < 10 || unescapeMountField(f[4]) != dir {
			continue
		}
		sep := slices.Index(f[6:], "-")
		if sep < 0 || 6+sep+2 >= len(f) {
			continue
		}
		tmpfs = f[6+sep+1] == "tmpfs" && unescapeMountField(f[6+sep+2]) == secretsTmpfsSource
	}
	return tmpfs
}

// unescapeMountField decodes the octal escapes of a mountinfo field (\040
// for a space, \011 a tab, \012 a newline, \134 a backslash).
func unescapeMountField(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
