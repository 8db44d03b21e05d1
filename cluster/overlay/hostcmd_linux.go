package overlay

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
)

// hostRoot is where this process sees the host's root file system: "" when
// the agent runs on the host, "/host" in the agent's container, which binds
// the host's root there. Process-wide: the agent has one.
var hostRoot atomic.Value // string

// SetHostRoot makes host programs (iptables, modprobe) run chrooted in dir,
// the host's root as this process sees it; "" runs them from this process's
// own file system.
func SetHostRoot(dir string) { hostRoot.Store(dir) }

// hostDirs are searched for a host program, in the host's tree.
var hostDirs = []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// HostCommand returns a command running the host's program name: from PATH
// on the host, or, with a host root set, the first of the usual directories
// of the host's tree that holds it, chrooted there (so that it finds its
// libraries and lock files: the host's /run/xtables.lock for iptables). The
// command inherits this process's namespaces (the agent's container shares
// the host's network).
func HostCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	root, _ := hostRoot.Load().(string)
	if root == "" {
		return exec.CommandContext(ctx, name, args...)
	}
	path := filepath.Join("/usr/sbin", name) // the error names the usual place
	for _, d := range hostDirs {
		// Lstat: on Debian iptables is an absolute symlink
		// (/etc/alternatives/...), which resolves only inside the chroot.
		if fi, err := os.Lstat(filepath.Join(root, d, name)); err == nil && !fi.IsDir() {
			path = filepath.Join(d, name)
			break
		}
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	cmd.Dir = "/"
	return cmd
}
