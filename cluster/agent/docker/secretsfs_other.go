//go:build !linux

package docker

import "errors"

// hostSecretsFS is secretsFS where no tmpfs can be mounted: the agent runs
// on Linux only, and elsewhere secret files stay on disk.
type hostSecretsFS struct{}

// errTmpfsUnsupported is what every operation of hostSecretsFS returns.
var errTmpfsUnsupported = errors.New("tmpfs for secret files: not supported on this operating system")

// onTmpfs is not supported here.
func (hostSecretsFS) onTmpfs(string) (bool, error) { return false, errTmpfsUnsupported }

// isTmpfsMountPoint is not supported here.
func (hostSecretsFS) isTmpfsMountPoint(string) (bool, error) { return false, errTmpfsUnsupported }

// mount is not supported here.
func (hostSecretsFS) mount(string) error { return errTmpfsUnsupported }

// unmount is not supported here.
func (hostSecretsFS) unmount(string) error { return errTmpfsUnsupported }
