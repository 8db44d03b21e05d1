// Package testns runs test code inside a named network namespace, the way
// the agent's network code runs on a node.
package testns

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// In runs fn on a fresh OS thread switched into the named namespace (see
// `ip netns add`); the thread is discarded afterwards, so no other goroutine
// ever runs there. netlink sockets, sockets and child processes that fn
// creates belong to that namespace. An empty name runs fn right here.
func In(name string, fn func() error) error {
	if name == "" {
		return fn()
	}
	target, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", name, err)
	}
	defer target.Close()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		if err := netns.Set(target); err != nil {
			done <- fmt.Errorf("enter netns %s: %w", name, err)
			return
		}
		done <- fn()
	}()
	return <-done
}
