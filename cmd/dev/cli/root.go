// Package cli holds dev's cobra commands, one file per verb.
package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/node"
	"github.com/devhq/dev/cluster/pki"
)

// Version is set at build time.
var Version = "dev"

// defaultDataDir is where the agent keeps its state and socket.
const defaultDataDir = "/var/lib/dev"

// globals are the options every command shares.
type globals struct {
	v *viper.Viper
}

func (g *globals) dataDir() string {
	if d := g.v.GetString("data-dir"); d != "" {
		return d
	}
	return defaultDataDir
}

// host is the agent address: --host / DEV_HOST, else the socket in the data dir.
func (g *globals) host() string {
	if h := g.v.GetString("host"); h != "" {
		return h
	}
	return "unix://" + node.SocketPath(g.dataDir())
}

// NewRootCommand builds the dev command tree. Configuration comes from flags,
// then DEV_* environment variables, then the config file, then defaults.
func NewRootCommand() *cobra.Command {
	g := &globals{v: viper.New()}
	root := &cobra.Command{
		Use:           "dev",
		Short:         "Run compose projects as replicated pods on one or many Docker hosts",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.configure(cmd)
		},
	}
	pf := root.PersistentFlags()
	pf.String("host", "", "agent address, unix:///path/dev.sock or tcp://NODE:7948 (env DEV_HOST; default: the socket in --data-dir)")
	pf.String("data-dir", defaultDataDir, "agent data directory (env DEV_DATA_DIR)")
	pf.String("tls-bundle", "", "client certificate bundle for --host tcp://... (env DEV_TLS_BUNDLE; made by `dev token --client NAME`)")
	pf.String("config", "", "config file (env DEV_CONFIG; default /etc/dev/config.yaml if present)")

	root.AddCommand(
		NewAgentCommand(g),
		NewUpCommand(g),
		NewDownCommand(g),
		NewPsCommand(g),
		NewLogsCommand(g),
		NewScaleCommand(g),
		NewConfigCommand(g),
		NewServicesCommand(g),
		NewEventsCommand(g),
		NewTokenCommand(g),
		NewJoinCommand(g),
		NewNodesCommand(g),
		NewLeaveCommand(g),
		NewExecCommand(g), NewRunCommand(g), // interactive sessions: exec.go, run.go
		NewStopCommand(g), NewStartCommand(g), NewRestartCommand(g), // lifecycle.go
		NewRollbackCommand(g),
		NewWatchCommand(g), // watch.go (also dev up --watch)
		NewInitCommand(g),
		NewDashboardCommand(g),
	)
	return root
}

// configure binds the command's flags into viper, with DEV_* env vars and
// the optional config file beneath them.
func (g *globals) configure(cmd *cobra.Command) error {
	v := g.v
	v.SetEnvPrefix("DEV")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	if err := v.BindPFlags(cmd.Flags()); err != nil {
		return fmt.Errorf("bind flags: %w", err)
	}
	cfg := v.GetString("config")
	if cfg == "" {
		if _, err := os.Stat("/etc/dev/config.yaml"); err == nil {
			cfg = "/etc/dev/config.yaml"
		}
	}
	if cfg != "" {
		v.SetConfigFile(cfg)
		if err := v.ReadInConfig(); err != nil {
			return fmt.Errorf("read config file %s: %w", cfg, err)
		}
	}
	return nil
}

// client returns an API client for the configured agent, checking that it
// answers.
func (g *globals) client(ctx context.Context) (*api.HTTPClient, error) {
	var tlsConf *tls.Config
	if b := g.v.GetString("tls-bundle"); b != "" {
		id, err := pki.LoadClientBundle(b)
		if err != nil {
			return nil, err
		}
		tlsConf = id.ClientTLS()
	}
	c, err := api.NewClient(g.host(), tlsConf)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.Status(sctx); err != nil {
		if errors.Is(err, api.ErrUnreachable) {
			return nil, fmt.Errorf("no dev agent answers at %s: start one with `dev agent --data-dir %s` (or `dev up`, which starts it), or point --host/DEV_HOST at a running one", g.host(), g.dataDir())
		}
		return nil, err
	}
	return c, nil
}

// ensureAgent returns a client, starting a local agent in the background
// when none answers at the default socket of the data dir.
func (g *globals) ensureAgent(ctx context.Context) (*api.HTTPClient, error) {
	c, err := g.client(ctx)
	if err == nil {
		return c, nil
	}
	return g.startAgent(ctx, err, nil)
}

// startAgent starts `dev agent` in the background with extra arguments and
// waits until it answers with a leader. unreachable is why it was needed.
func (g *globals) startAgent(ctx context.Context, unreachable error, extra []string) (*api.HTTPClient, error) {
	err := unreachable
	if g.host() != "unix://"+node.SocketPath(g.dataDir()) {
		// --host names another agent: starting one here would not help.
		if err == nil {
			err = fmt.Errorf("not starting an agent: --host %s is not this data dir's socket", g.host())
		}
		return nil, err
	}
	dir := g.dataDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find dev binary: %w", err)
	}
	logPath := filepath.Join(dir, "agent.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open agent log: %w", err)
	}
	defer logf.Close()
	// The agent inherits DEV_* variables, so its other settings follow ours.
	cmd := exec.Command(exe, append([]string{"agent", "--data-dir", dir}, extra...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start agent: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fmt.Fprintf(os.Stderr, "started dev agent (pid %d, log %s)\n", cmd.Process.Pid, logPath)

	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return nil, fmt.Errorf("agent exited at start (%v): %s", err, lastLogError(logPath))
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if c, err := g.client(ctx); err == nil {
			if st, err := c.Status(ctx); err == nil && st.Leader != "" {
				_ = cmd.Process.Release()
				return c, nil
			}
		}
	}
	return nil, fmt.Errorf("agent did not answer within 30s; see %s", logPath)
}

// lastLogError returns the agent's last error line from its log, for a
// one-line error message.
func lastLogError(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "see " + path
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := len(lines) - 1; i >= 0 && i >= len(lines)-20; i-- {
		if l := lines[i]; strings.HasPrefix(l, "Error: ") || strings.HasPrefix(l, "error: ") {
			return strings.TrimPrefix(strings.TrimPrefix(l, "Error: "), "error: ") + " (log: " + path + ")"
		}
	}
	return "see " + path
}
