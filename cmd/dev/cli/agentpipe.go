package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/api"
)

// When the Docker Engine is not on this host (DOCKER_HOST is tcp://, or a
// VM), the agent's socket is out of the CLI's reach. The CLI
// then talks to the agent through the Engine, as `docker exec -i dev-agent
// /dev-agent agent pipe` would: each API connection is one exec session
// whose stdin and stdout are joined to the agent's socket inside its
// container. Whoever may use the Engine may use the agent, as on the
// Engine's own host, and nothing more is published.

// newAgentPipeCommand is `dev agent pipe`, run in the agent's container: it
// joins its stdin and stdout to the agent's unix socket.
func newAgentPipeCommand() *cobra.Command {
	var socket string
	cmd := &cobra.Command{
		Use:    "pipe",
		Short:  "Join stdin and stdout to the agent's socket (the CLI's way in through `docker exec`)",
		Args:   cobra.NoArgs,
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := net.DialTimeout("unix", socket, 5*time.Second)
			if err != nil {
				return fmt.Errorf("reach the agent: %w", err)
			}
			uc := c.(*net.UnixConn)
			defer uc.Close()
			done := make(chan error, 1)
			go func() {
				_, err := io.Copy(uc, cmd.InOrStdin())
				_ = uc.CloseWrite() // the CLI closed its side: the agent's answer still comes
				done <- err
			}()
			_, err = io.Copy(cmd.OutOrStdout(), uc)
			return err
		},
	}
	cmd.Flags().StringVar(&socket, "socket", "/run/dev-agent/dev.sock", "the agent's unix socket")
	return cmd
}

// client returns an API client that reaches the agent in its container
// through exec sessions on the Engine (see the top of this file).
func (b agentBox) client() *api.HTTPClient {
	return api.NewDialClient("docker-exec://"+b.name, b.dialExec)
}

// dialExec opens one connection to the agent's socket: an exec session of
// `dev agent pipe` in the agent's container.
func (b agentBox) dialExec(ctx context.Context) (net.Conn, error) {
	ex, err := b.dc.ContainerExecCreate(ctx, b.name, container.ExecOptions{
		Cmd:          []string{"/dev-agent", "agent", "pipe", "--socket", b.socket()},
		AttachStdin:  true,
		AttachStdout: true,
		AttachStderr: true,
	})
	if err != nil {
		return nil, fmt.Errorf("exec in agent container %s: %w", b.name, err)
	}
	hj, err := b.dc.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		return nil, fmt.Errorf("attach to exec in agent container %s: %w", b.name, err)
	}
	return newExecConn(hj), nil
}

// execConn is an exec session as a net.Conn: writes go to its stdin, reads
// come from its stdout (the Engine multiplexes stdout and stderr on one
// stream without a TTY: stdcopy separates them).
type execConn struct {
	hj     types.HijackedResponse
	out    *io.PipeReader
	stderr bytes.Buffer // what `dev agent pipe` said, for the error at the end
	once   sync.Once
}

func newExecConn(hj types.HijackedResponse) *execConn {
	pr, pw := io.Pipe()
	c := &execConn{hj: hj, out: pr}
	go func() {
		_, err := stdcopy.StdCopy(pw, &c.stderr, hj.Reader)
		if err == nil && c.stderr.Len() > 0 {
			err = errors.New(c.stderr.String())
		}
		pw.CloseWithError(err)
	}()
	return c
}

func (c *execConn) Read(p []byte) (int, error)  { return c.out.Read(p) }
func (c *execConn) Write(p []byte) (int, error) { return c.hj.Conn.Write(p) }

func (c *execConn) Close() error {
	c.once.Do(func() {
		_ = c.hj.CloseWrite()
		c.hj.Close()
		c.out.Close()
	})
	return nil
}

func (c *execConn) LocalAddr() net.Addr  { return c.hj.Conn.LocalAddr() }
func (c *execConn) RemoteAddr() net.Addr { return c.hj.Conn.RemoteAddr() }

// Deadlines are not supported: reads come through a goroutine that a
// deadline on the Engine's connection would break for good. net/http's
// client sets none; it bounds requests with its context and timeouts.
func (c *execConn) SetDeadline(time.Time) error      { return os.ErrNoDeadline }
func (c *execConn) SetReadDeadline(time.Time) error  { return os.ErrNoDeadline }
func (c *execConn) SetWriteDeadline(time.Time) error { return os.ErrNoDeadline }

var _ net.Conn = (*execConn)(nil)
