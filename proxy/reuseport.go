package proxy

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// reusePort sets SO_REUSEPORT on a socket before it binds. Every frontend
// socket has it, so that a published port on the wildcard address
// (0.0.0.0:8080) and a virtual IP on the same port (10.214.0.2:8080) can
// both listen: the kernel delivers to the most specific match. A foreign
// socket without the option still makes the bind fail, which is what Check
// relies on. (Two dev agents in one network namespace would share such a
// port; one agent per host is the supported setup.)
func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
