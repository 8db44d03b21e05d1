package cli

import (
	"os"
	"os/signal"
	"syscall"
)

// PauseArg is the argument that makes the binary a pod's infra process
// (`dev-agent pause`, cluster/agent/docker/infra.go): main runs Pause
// before any command is built.
const PauseArg = "pause"

// Pause is the process of a pod's infra container: it holds the pod's
// namespaces (network, IPC, UTS, and PID when the pod shares it) and does
// nothing else. As PID 1 of a shared PID namespace it reaps the orphans
// that land on it; SIGTERM or SIGINT ends it at once, with status 0.
func Pause() int {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return 0
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
	return 0
}
