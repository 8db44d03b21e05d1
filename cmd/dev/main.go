// Command dev runs compose projects as replicated pods on a cluster of Docker
// Engines.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/devhq/dev/cmd/dev/cli"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == cli.PauseArg {
		os.Exit(cli.Pause()) // a pod's infra container: nothing else to set up
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.NewRootCommand().ExecuteContext(ctx)
	stop()
	var exit *cli.ExitError
	switch {
	case errors.As(err, &exit):
		os.Exit(exit.Code) // a command's own exit code (dev exec, dev run)
	case err != nil:
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
