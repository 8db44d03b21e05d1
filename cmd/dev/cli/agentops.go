package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/node"
)

// newAgentUpgradeCommand is `dev agent upgrade`: the agent's container is
// replaced by one running this dev binary, with the same settings and data;
// pods keep running and the new agent adopts them.
func newAgentUpgradeCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "upgrade",
		Short: "Replace the agent's container with one running this dev binary (its data kept, its pods running)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			e, b, cur, err := g.agentOnEngine(ctx)
			if err != nil {
				return err
			}
			defer e.dc.Close()
			if cur == nil {
				return fmt.Errorf("no agent container %s on this Docker Engine: `dev up` starts one; an agent run as a process is upgraded by restarting it with the new binary", b.name)
			}
			ref, err := b.agentImage(ctx, e, g.agentBinary())
			if err != nil {
				return err
			}
			old := cur.Config.Labels[labelAgentVersion]
			if cur.Config.Image == ref && isRunning(cur) {
				fmt.Fprintf(cmd.OutOrStdout(), "the agent already runs this binary (dev %s)\n", old)
				return nil
			}
			ac, err := b.agentClient(e)
			if err != nil {
				return err
			}
			// The same agent (its flags, its Engine socket, its volume), made
			// by this binary: what this version's container needs.
			if err := b.remove(ctx); err != nil {
				return err
			}
			if _, err := b.launch(ctx, specOf(cur, ref), ac); err != nil {
				return b.restore(ctx, cur, err)
			}
			// The previous binary's image is no longer needed.
			if _, err := e.dc.ImageRemove(ctx, cur.Image, image.RemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
				fmt.Fprintf(os.Stderr, "note: the previous agent image stays: %v\n", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "agent upgraded: dev %s -> dev %s (container %s, image %s)\n", old, Version, b.name, ref)
			return nil
		},
	}
}

// leaveFromContainer makes the agent in its container leave the cluster and
// removes the container (its volume stays): the agent stops after leaving,
// and the Engine must not start it again, with arguments that would join
// the cluster once more. A later `dev up` or `dev join` makes a new one.
func (g *globals) leaveFromContainer(ctx context.Context, c *api.HTTPClient, w io.Writer) error {
	e, b, cur, err := g.agentOnEngine(ctx)
	if err != nil {
		return err
	}
	defer e.dc.Close()
	if cur == nil {
		return fmt.Errorf("leave: the agent's container %s is not on this Docker Engine", b.name)
	}
	setRestart := func(name container.RestartPolicyMode) error {
		_, err := e.dc.ContainerUpdate(ctx, b.name, container.UpdateConfig{RestartPolicy: container.RestartPolicy{Name: name}})
		return err
	}
	if err := setRestart(container.RestartPolicyDisabled); err != nil {
		return fmt.Errorf("leave: keep the agent's container from restarting: %w", err)
	}
	if err := c.Leave(ctx); err != nil {
		// An agent that left exits at once, and its answer may be lost with
		// it: only one still running failed to leave.
		if now, ierr := b.inspect(ctx); ierr == nil && !isRunning(now) {
			_ = b.remove(ctx)
			return fmt.Errorf("leave: the agent stopped without a clear answer (%w); its container is removed, and `dev nodes` on another node shows whether it left", err)
		}
		if rerr := setRestart(container.RestartPolicyUnlessStopped); rerr != nil {
			err = fmt.Errorf("%w (and its restart policy stays off: %v)", err, rerr)
		}
		return err
	}
	if err := b.remove(ctx); err != nil {
		return err
	}
	fmt.Fprintf(w, "left the cluster; removed the agent's container %s (its volume %s stays)\n", b.name, b.volume())
	return nil
}

// agentOnEngine connects to the Engine and inspects the agent's container
// there (nil when there is none). The caller closes e.dc.
func (g *globals) agentOnEngine(ctx context.Context) (*engine, agentBox, *container.InspectResponse, error) {
	e, err := dockerEngine(ctx)
	if err != nil {
		return nil, agentBox{}, nil, err
	}
	b := g.box(e.dc)
	cur, err := b.inspect(ctx)
	if err != nil {
		e.dc.Close()
		return nil, agentBox{}, nil, err
	}
	return e, b, cur, nil
}

// restore puts the previous agent container back after a failed upgrade,
// even when the upgrade was interrupted.
func (b agentBox) restore(ctx context.Context, prev *container.InspectResponse, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	_ = b.remove(ctx)
	cfg, host := *prev.Config, *prev.HostConfig
	cfg.Hostname, cfg.Domainname = "", "" // the host's (UTS namespace), filled in by the Engine
	if err := b.create(ctx, &cfg, &host); err != nil {
		return fmt.Errorf("upgrade agent: %w; and putting the previous agent back failed too: %v", cause, err)
	}
	return fmt.Errorf("upgrade agent: %w (the previous agent runs again)", cause)
}

// newAgentStopCommand is `dev agent stop`: the local agent stops; pods
// keep running and the next agent adopts them.
func newAgentStopCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "stop",
		Short: "Stop this host's agent (its container, or its process); pods keep running and the next agent adopts them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			w := cmd.OutOrStdout()
			sock := node.SocketPath(g.dataDir())
			if dh := os.Getenv("DOCKER_HOST"); dh == "" || strings.HasPrefix(dh, "unix://") {
				// This host's agent may be a process (not with an Engine elsewhere).
				if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
					c.Close()
					return stopAgentProcess(ctx, sock, w)
				}
			}
			e, b, cur, err := g.agentOnEngine(ctx)
			if err != nil {
				return err
			}
			defer e.dc.Close()
			if !isRunning(cur) {
				fmt.Fprintln(w, "no agent runs here")
				return nil
			}
			timeout := 30
			if err := e.dc.ContainerStop(ctx, b.name, container.StopOptions{Timeout: &timeout}); err != nil {
				return fmt.Errorf("stop agent container %s: %w", b.name, err)
			}
			fmt.Fprintf(w, "stopped the agent's container %s (`dev up` starts it again)\n", b.name)
			return nil
		},
	}
}

// stopAgentProcess stops the agent serving sock with SIGTERM and waits until
// it is gone.
func stopAgentProcess(ctx context.Context, sock string, w io.Writer) error {
	pid, err := peerPID(sock)
	if err != nil {
		return fmt.Errorf("find the agent's process: %w", err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop the agent (pid %d): %w", pid, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for syscall.Kill(pid, 0) == nil {
		select {
		case <-ctx.Done():
			return fmt.Errorf("the agent (pid %d) did not stop within 30s", pid)
		case <-time.After(100 * time.Millisecond):
		}
	}
	_ = os.Remove(sock)
	fmt.Fprintf(w, "stopped the agent (pid %d)\n", pid)
	return nil
}
