// Package cli holds dev's cobra commands, one file per verb.
package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/node"
	"github.com/devhq/dev/cluster/pki"
)

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

// host is the agent address given by --host / DEV_HOST; "" when none is
// given and the local agent is looked for (agentSockets).
func (g *globals) host() string { return g.v.GetString("host") }

// processHost is the address of an agent run as a process with this data
// dir.
func (g *globals) processHost() string { return "unix://" + node.SocketPath(g.dataDir()) }

// agentSockets are where a local agent answers, in the order they are
// tried: an agent run as a process with this data dir (root), then the
// agent's container (root and the docker group alike).
func (g *globals) agentSockets() []string {
	return []string{node.SocketPath(g.dataDir()), g.box(nil).socket()}
}

// box is the agent's container on the Engine dc.
func (g *globals) box(dc *client.Client) agentBox {
	return agentBox{dc: dc, name: g.v.GetString("agent-container")}
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
	pf.String("tls-bundle", "", "client certificate bundle for --host tcp://... (env DEV_TLS_BUNDLE; made by \"dev token --client NAME\")")
	pf.String("config", "", "config file (env DEV_CONFIG; default /etc/dev/config.yaml if present)")
	pf.String("agent", agentAuto, "how \"dev up\" and \"dev join\" start an agent when none answers: auto (a process when root on the Docker Engine's host, else a container), process or container (env DEV_AGENT)")
	pf.String("agent-container", "dev-agent", "name of the agent's container; its volume is NAME-data and its socket /run/NAME/dev.sock (env DEV_AGENT_CONTAINER)")
	pf.String("agent-binary", "", "static Linux dev binary for the agent's image (env DEV_AGENT_BINARY; default: this one)")

	root.AddCommand(
		NewAgentCommand(g),
		NewUpCommand(g),
		NewBuildCommand(g),
		NewDownCommand(g),
		NewPsCommand(g),
		NewStatsCommand(g),
		NewLsCommand(g),
		NewLogsCommand(g),
		NewScaleCommand(g),
		NewConfigCommand(g),
		NewServicesCommand(g),
		NewIngressCommand(g),
		NewCACommand(g),
		NewPortCommand(g),
		NewEventsCommand(g),
		NewTokenCommand(g),
		NewJoinCommand(g),
		NewNodesCommand(g),
		NewNodeCommand(g),
		NewLeaveCommand(g),
		NewRecoverCommand(g),
		NewExecCommand(g), NewRunCommand(g), // interactive sessions: exec.go, run.go
		NewStopCommand(g), NewStartCommand(g), NewRestartCommand(g), // lifecycle.go
		NewKillCommand(g),
		NewPauseCommand(g), NewUnpauseCommand(g), // pauseunpause.go
		NewTopCommand(g),
		NewCpCommand(g),
		NewWaitCommand(g),
		NewImagesCommand(g),
		NewDescribeCommand(g),
		NewRmCommand(g),
		NewRollbackCommand(g),
		NewWatchCommand(g), // watch.go (also dev up --watch)
		NewInitCommand(g),
		NewDashboardCommand(g),
		NewVersionCommand(g),
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
// answers. A client bundle past 2/3 of its life is renewed first
// (renewBundle).
func (g *globals) client(ctx context.Context) (*api.HTTPClient, error) {
	f, err := g.findAgent(ctx)
	if err != nil {
		return f.c, err
	}
	return g.renewedClient(ctx, f.c), nil
}

// renewedClient is c, or a client with the renewed bundle when --tls-bundle
// was due for renewal (renewBundle); a failed renewal is a warning: the
// bundle works until it expires.
func (g *globals) renewedClient(ctx context.Context, c *api.HTTPClient) *api.HTTPClient {
	b := g.v.GetString("tls-bundle")
	if b == "" || !strings.HasPrefix(g.host(), "tcp://") {
		return c
	}
	renewed, err := g.renewBundle(ctx, c, b)
	if err != nil {
		fmt.Fprintf(os.Stderr, "warning: %v\n", err)
		return c
	}
	if renewed != nil {
		return renewed
	}
	return c
}

// connect returns a client for the agent at host (not checked).
func (g *globals) connect(host string) (*api.HTTPClient, error) {
	var tlsConf *tls.Config
	if b := g.v.GetString("tls-bundle"); b != "" {
		id, err := pki.LoadClientBundle(b)
		if err != nil {
			return nil, err
		}
		tlsConf = id.ClientTLS()
	}
	return api.NewClient(host, tlsConf)
}

// errNoAgent is what findAgent returns when no agent answers, and one may
// be started.
var errNoAgent = errors.New("no dev agent answers")

// foundAgent is an agent that answered: a client for it, the address it
// answered at, and its status.
type foundAgent struct {
	c      *api.HTTPClient
	at     string
	status api.Status
}

// findAgent returns the agent that answers at --host, else at the first
// local socket that answers (else through the Engine, when it is not on
// this host). When none answers the error wraps errNoAgent; a socket this
// user may not open is skipped, said in that error, unless it is the one
// shared with the docker group.
func (g *globals) findAgent(ctx context.Context) (foundAgent, error) {
	if g.host() != "" {
		f, err := g.answering(ctx, g.host())
		if errors.Is(err, api.ErrUnreachable) && g.host() == g.processHost() {
			// This data dir's own socket: `dev up` may start its agent.
			return f, fmt.Errorf("%w at %s: `dev up` starts one (%v)", errNoAgent, g.host(), err)
		}
		if err != nil {
			return f, fmt.Errorf("no dev agent answers at %s: point --host/DEV_HOST at a running one (%w)", g.host(), err)
		}
		return f, nil
	}
	if dh := os.Getenv("DOCKER_HOST"); dh != "" && !strings.HasPrefix(dh, "unix://") {
		// The agent wanted is the one next to that Engine, not one whose
		// socket happens to be on this host.
		if f, ok := g.remoteAgent(ctx); ok {
			return f, nil
		}
		return foundAgent{}, fmt.Errorf("%w on the Docker Engine at %s: `dev up` starts one there", errNoAgent, dh)
	}
	var denied []string
	sockets := g.agentSockets()
	for i, sock := range sockets {
		f, err := g.answering(ctx, "unix://"+sock)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, api.ErrUnreachable) {
			return f, err
		}
		if socketDenied(sock) {
			if i == len(sockets)-1 { // the container's, shared with the docker group
				return f, fmt.Errorf("permission denied on the agent's socket %s: it is shared with the docker group. "+
					"Add your user to it with `sudo usermod -aG docker %s`, then log in again (or run `newgrp docker`)", sock, userName())
			}
			denied = append(denied, sock)
		}
	}
	if f, ok := g.remoteAgent(ctx); ok {
		return f, nil
	}
	note := ""
	if len(denied) > 0 {
		note = fmt.Sprintf(" (%s is not yours to open: if root runs an agent as a process here, use `sudo dev`)", strings.Join(denied, ", "))
	}
	return foundAgent{}, fmt.Errorf("%w on this host (tried %s)%s: `dev up` starts one, or point --host/DEV_HOST at a running one",
		errNoAgent, strings.Join(sockets, " and "), note)
}

// answering returns the agent at host once it answers.
func (g *globals) answering(ctx context.Context, host string) (foundAgent, error) {
	c, err := g.connect(host)
	if err != nil {
		return foundAgent{}, err
	}
	return status(ctx, c, host)
}

// status asks the agent behind c for its status, bounded.
func status(ctx context.Context, c *api.HTTPClient, at string) (foundAgent, error) {
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := c.Status(sctx)
	if err != nil {
		return foundAgent{}, err
	}
	return foundAgent{c: c, at: at, status: st}, nil
}

// remoteAgent finds the agent's container on a Docker Engine that is not on
// this host (DOCKER_HOST, or a VM such as Docker Desktop's), reached through
// the Engine (agentpipe.go).
func (g *globals) remoteAgent(ctx context.Context) (foundAgent, bool) {
	e, err := dockerEngine(ctx)
	if err != nil {
		return foundAgent{}, false
	}
	if e.remote == "" {
		e.dc.Close()
		return foundAgent{}, false
	}
	c := g.box(e.dc).client() // keeps e.dc: the client's connections go through it
	f, err := status(ctx, c, c.Host())
	return f, err == nil
}

// socketDenied says whether connecting to the unix socket at path is
// refused for want of permission.
func socketDenied(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, os.ErrPermission)
}

// ensureAgent returns a client, starting a local agent in the background
// when none answers. An agent of another version is used, with a word on
// how to upgrade it.
func (g *globals) ensureAgent(ctx context.Context) (*api.HTTPClient, error) {
	f, err := g.findAgent(ctx)
	if errors.Is(err, errNoAgent) {
		return g.startAgent(ctx, err, nil, nil)
	}
	if err != nil {
		return nil, err
	}
	if err := g.checkAgentKind(f.at); err != nil {
		return nil, err
	}
	if f.status.Version != Version {
		how := "`dev agent upgrade` replaces it, keeping its pods running"
		if f.at == g.processHost() {
			how = "restart it with this binary to upgrade it; its pods keep running"
		}
		fmt.Fprintf(os.Stderr, "note: the agent runs dev %s and this is dev %s: %s\n", f.status.Version, Version, how)
	}
	return g.renewedClient(ctx, f.c), nil
}

// checkAgentKind refuses an agent that answers as a process when a
// container is asked for (--agent), and the reverse.
func (g *globals) checkAgentKind(at string) error {
	switch want := g.v.GetString("agent"); {
	case want == agentContainer && at == g.processHost():
		return fmt.Errorf("an agent already runs here as a process (socket %s) and --agent=container asks for one in a container: "+
			"stop it first (`sudo dev agent stop`); its pods are adopted by the next agent only if it uses the same data", node.SocketPath(g.dataDir()))
	case want == agentProcess && at == "unix://"+g.box(nil).socket():
		return fmt.Errorf("an agent already runs here in the container %s and --agent=process asks for one as a process: stop it first (`dev agent stop`)",
			g.v.GetString("agent-container"))
	}
	return nil
}

// startAgent starts an agent in the background with extra arguments and
// environment, as a process or as a container (--agent), and waits until it
// answers with a leader. unreachable is why it was needed.
func (g *globals) startAgent(ctx context.Context, unreachable error, extra, env []string) (*api.HTTPClient, error) {
	ownSocket := g.host() != "" && g.host() == g.processHost()
	if g.host() != "" && !ownSocket {
		// --host names another agent: starting one here would not help.
		if unreachable == nil {
			unreachable = fmt.Errorf("not starting an agent: --host %s names one elsewhere", g.host())
		}
		return nil, unreachable
	}
	e, err := dockerEngine(ctx)
	if err != nil {
		return nil, err
	}
	defer e.dc.Close()
	if e.rootless {
		return nil, errors.New("the Docker Engine runs rootless, and the agent needs root on the host (it programs the host's network): " +
			"point DOCKER_HOST at the system's Engine (unix:///var/run/docker.sock)")
	}
	mode := g.v.GetString("agent")
	switch mode {
	case agentAuto:
		mode = agentProcess
		if os.Geteuid() != 0 || e.remote != "" {
			mode = agentContainer
		} else if cur, err := g.box(e.dc).inspect(ctx); err == nil && cur != nil {
			// This host's agent is a container (stopped, or not answering
			// yet): start that one, not a second agent as a process.
			mode = agentContainer
		}
	case agentProcess:
		if e.remote != "" {
			return nil, fmt.Errorf("--agent=process: %s, and the agent must run next to it; use --agent=container", e.remote)
		}
		if os.Geteuid() != 0 {
			return nil, fmt.Errorf("--agent=process needs root (the agent programs the host's network); run `sudo dev ...`, or let dev run the agent in a container (--agent=auto)")
		}
	case agentContainer:
	default:
		return nil, fmt.Errorf("--agent %q: want auto, process or container", mode)
	}
	if ownSocket && mode == agentContainer {
		// --host names this data dir's socket, where only a process listens.
		if os.Geteuid() != 0 || e.remote != "" {
			return nil, fmt.Errorf("--host %s is the socket of an agent run as a process, which needs root on the Engine's host; "+
				"leave --host unset to get an agent in a container", g.host())
		}
		mode = agentProcess
	}
	if mode == agentContainer {
		return g.startAgentContainer(ctx, e, extra, env)
	}
	return g.startAgentProcess(ctx, extra, env)
}

// startAgentContainer starts the agent's container (creating it, and its
// image, when missing) and waits until it answers.
func (g *globals) startAgentContainer(ctx context.Context, e *engine, extra, env []string) (*api.HTTPClient, error) {
	b := g.box(e.dc)
	ac, err := b.agentClient(e)
	if err != nil {
		return nil, err
	}
	cur, err := b.inspect(ctx)
	if err != nil {
		return nil, err
	}
	if cur != nil && len(extra) > 0 {
		// `dev join`: a new agent with these arguments, on the same volume
		// (an answering agent was refused before).
		if err := b.remove(ctx); err != nil {
			return nil, err
		}
		cur = nil
	}
	if cur != nil {
		// The agent's container exists but does not answer: start it again
		// as it was made (`dev agent upgrade` changes its binary).
		if !isRunning(cur) {
			if err := e.dc.ContainerStart(ctx, b.name, container.StartOptions{}); err != nil {
				return nil, fmt.Errorf("start agent container %s: %w", b.name, err)
			}
			fmt.Fprintf(os.Stderr, "started the dev agent's container %s\n", b.name)
		}
		return b.wait(ctx, ac, 60*time.Second)
	}
	image, err := b.agentImage(ctx, e, g.agentBinary())
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "starting the dev agent in the container %s (image %s; `docker logs %s` shows its log)\n", b.name, image, b.name)
	c, err := b.launch(ctx, agentSpec{image: image, engineSocket: e.socket,
		args: append(g.forwardedAgentFlags(), extra...), env: env}, ac)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "started the dev agent in the container %s\n", b.name)
	return c, nil
}

// agentBinary is the dev binary the agent's image is built from.
func (g *globals) agentBinary() string {
	if b := g.v.GetString("agent-binary"); b != "" {
		return b
	}
	exe, err := os.Executable()
	if err != nil {
		return os.Args[0]
	}
	return exe
}

// forwardedAgentFlags are the agent settings given to this command (flags
// or DEV_* variables) that an agent it starts must follow.
func (g *globals) forwardedAgentFlags() []string {
	var out []string
	for _, name := range agentFlagNames {
		if g.v.IsSet(name) {
			out = append(out, "--"+name+"="+g.v.GetString(name))
		}
	}
	for _, l := range g.v.GetStringSlice("label") {
		out = append(out, "--label="+l)
	}
	return out
}

// startAgentProcess starts `dev agent` in the background with extra
// arguments and waits until it answers with a leader.
func (g *globals) startAgentProcess(ctx context.Context, extra, env []string) (*api.HTTPClient, error) {
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
	args := append([]string{"agent", "--data-dir", dir}, g.forwardedAgentFlags()...)
	cmd := exec.Command(exe, append(args, extra...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start agent: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fmt.Fprintf(os.Stderr, "started dev agent (pid %d, log %s)\n", cmd.Process.Pid, logPath)

	host := "unix://" + node.SocketPath(dir)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return nil, fmt.Errorf("agent exited at start (%v): %s", err, lastLogError(logPath))
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if c, err := g.connect(host); err == nil {
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
	return lastErrorLine(string(b)) + " (log: " + path + ")"
}

// renewBundle renews the client bundle at path through c when it is past
// 2/3 of its life, as nodes renew their certificates: a new key, a
// certificate for it of the same name and role (the node signs what the
// bundle's own certificate says), written in place of the file (0600,
// renamed over it). It returns a client that calls with the new bundle,
// or nil when the bundle is not due.
func (g *globals) renewBundle(ctx context.Context, c *api.HTTPClient, path string) (*api.HTTPClient, error) {
	id, err := pki.LoadClientBundle(path)
	if err != nil {
		return nil, err
	}
	if time.Now().Before(id.RenewAt()) && !movingCA(ctx, c, id) {
		return nil, nil
	}
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(id.Name)
	if err != nil {
		return nil, fmt.Errorf("renew client bundle %s: %w", path, err)
	}
	res, err := c.RenewClient(ctx, csrPEM)
	if err != nil {
		return nil, fmt.Errorf("renew client bundle %s (it lasts until %s): %w", path, id.Certificate().Leaf.NotAfter.Local().Format(time.DateTime), err)
	}
	roots := id.Roots()
	if len(res.CA) > 0 {
		if roots, err = pki.ParseRoots(res.CA); err != nil {
			return nil, fmt.Errorf("renew client bundle %s: %w", path, err)
		}
	}
	data := pki.BundlePEM(id.Name, id.Role, res.Cert, keyPEM, roots)
	next, err := pki.ParseBundle(data)
	if err != nil {
		return nil, fmt.Errorf("renew client bundle %s: %w", path, err)
	}
	if next.Name != id.Name || next.Role != id.Role {
		return nil, fmt.Errorf("renew client bundle %s: the node signed %s %q, not %s %q", path, next.Role, next.Name, id.Role, id.Name)
	}
	if err := pki.WriteSecretFile(path, data); err != nil {
		return nil, fmt.Errorf("renew client bundle %s: %w", path, err)
	}
	fmt.Fprintf(os.Stderr, "renewed client bundle %s: valid until %s\n", path, next.Certificate().Leaf.NotAfter.Local().Format(time.DateTime))
	return api.NewClient(g.host(), next.ClientTLS())
}

// movingCA reports whether the cluster is moving to a new CA (dev ca
// rotate) that id's certificate is not of: the bundle is then renewed at
// once, so that it keeps working when the old CA is dropped. An agent
// that cannot tell (an older dev) is taken to be moving nowhere.
func movingCA(ctx context.Context, c *api.HTTPClient, id *pki.Identity) bool {
	st, err := c.CA(ctx)
	if err != nil || st.Rotation == nil {
		return false
	}
	for _, r := range id.Roots() {
		if pki.Fingerprint(r) == st.Rotation.Fingerprint {
			return !pki.SignedBy(id.Certificate().Leaf, r)
		}
	}
	return true // it does not even trust the new CA yet
}
