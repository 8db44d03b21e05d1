//go:build !linux

package overlay

import (
	"context"
	"os/exec"
)

// SetHostRoot is a no-op: the agent runs on Linux only.
func SetHostRoot(string) {}

// HostCommand runs name from PATH.
func HostCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, name, args...)
}
