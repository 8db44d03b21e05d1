package apiserver

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/scheduler"
	"github.com/devhq/dev/cluster/state"
)

// The interactive API: `dev exec` and `dev run` switch the connection to the
// framed stream protocol of api/stream.go; `dev
// stop|start|restart|kill|pause|unpause` are plain JSON requests (and `dev
// top`, control.go). All are served by the node that runs the pod; any
// other node relays them there over mutual TLS (the stream byte for byte).

func (srv *Server) registerInteractive(mux *http.ServeMux) {
	handle(mux, "POST /v1/pods/{name}/exec", roleAdmin, srv.handleExec)
	handle(mux, "POST /v1/projects/{name}/services/{service}/run", roleAdmin, srv.handleRun)
	for _, action := range api.PodActions {
		handle(mux, "POST /v1/pods/{name}/"+action, roleAdmin, srv.handlePodAction(action))
	}
}

// streamGrace is how long a finished session waits for the client to read
// the last frame and close.
const streamGrace = 5 * time.Second

func wantsUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), api.StreamProtocol) &&
		strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade")
}

func readBody(r *http.Request, v any) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return nil, invalid("read request: %v", err)
	}
	if len(b) == 0 {
		return b, nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return nil, invalid("decode request: %v", err)
	}
	return b, nil
}

func (srv *Server) handleExec(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req api.ExecRequest
	body, err := readBody(r, &req)
	if err != nil {
		writeError(w, err)
		return
	}
	if len(req.Cmd) == 0 {
		writeError(w, invalid("exec in %s: no command given", name))
		return
	}
	if !wantsUpgrade(r) {
		writeError(w, invalid("exec needs a connection upgrade (Connection: Upgrade, Upgrade: %s)", api.StreamProtocol))
		return
	}
	pod, err := srv.placedPod("exec in", name)
	if err != nil {
		writeError(w, err)
		return
	}
	if pod.Node != srv.opts.Node {
		srv.relayStream(w, r, pod.Node, body)
		return
	}
	srv.serveStream(w, r, nil, req.Stdin, req.Tty, req.Size, func(ctx context.Context, stdio api.IO) (int, error) {
		return srv.local.Exec(ctx, name, req, stdio)
	})
}

func (srv *Server) handleRun(w http.ResponseWriter, r *http.Request) {
	project, service := r.PathValue("name"), r.PathValue("service")
	var req api.RunRequest
	if _, err := readBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if !wantsUpgrade(r) {
		writeError(w, invalid("run needs a connection upgrade (Connection: Upgrade, Upgrade: %s)", api.StreamProtocol))
		return
	}
	rc, ok := srv.r.State().RC(api.RCKey(project, service))
	if !ok {
		writeError(w, notFound("no service %s in project %s; deploy it first (dev up)", service, project))
		return
	}
	if req.Name == "" {
		req.Name = api.OneOffName(project, service)
	}
	// The template's sealed files travel with the request, opened by the
	// manager that takes it from the user, to the node that runs it (which
	// gets them for its own pods only otherwise).
	if c, _ := callerFrom(r.Context()); c.Role != roleNode {
		if req.Files != nil {
			writeError(w, invalid("run %s: files are the cluster's to send", service))
			return
		}
		files, err := openFiles(srv.opts.DataKey, rc.Template)
		if err != nil {
			writeError(w, fmt.Errorf("run %s: %w", service, err))
			return
		}
		if len(files) > 0 {
			req.Files = files
		}
	}
	if req.Node == "" {
		node, err := srv.runNode(rc, req.Name)
		if err != nil {
			writeError(w, err)
			return
		}
		req.Node = node
	}
	if req.Node != srv.opts.Node {
		body, err := json.Marshal(req)
		if err != nil {
			writeError(w, err)
			return
		}
		srv.relayStream(w, r, req.Node, body)
		return
	}
	hdr := http.Header{}
	hdr.Set(api.HeaderPod, req.Name)
	hdr.Set(api.HeaderNode, srv.opts.Node)
	srv.serveStream(w, r, hdr, req.Stdin, req.Tty, req.Size, func(ctx context.Context, stdio api.IO) (int, error) {
		return srv.local.RunOneOff(ctx, project, service, req, stdio)
	})
}

// runNode places a one-off pod (`dev run`) with the scheduler, as a pod of
// its service: on a ready node that fits its reservations and placement
// constraints, the node holding the service's data if it has some, spread
// like the service's replicas. Nothing is written: a one-off pod is not a
// replica, and the node runs it at once.
func (srv *Server) runNode(rc api.ReplicationController, name string) (string, error) {
	st := srv.r.State()
	pod := api.Pod{Name: name, Project: rc.Project, Service: rc.Service, Labels: map[string]string{}}
	plan := scheduler.Schedule(st.Nodes(), append(st.Pods(state.PodFilter{}), pod), st.RC)
	if node, ok := plan.Assign[name]; ok {
		return node, nil
	}
	return "", conflict("run %s: %s", rc.Service, plan.Unschedulable[name])
}

// hijack takes over the client's connection and answers 101 with hdr. When
// it cannot, it has answered the error itself (or the client is gone) and
// ok is false.
func hijack(w http.ResponseWriter, hdr http.Header) (conn net.Conn, br *bufio.Reader, ok bool) {
	hj, can := w.(http.Hijacker)
	if !can {
		writeError(w, fmt.Errorf("this connection cannot be upgraded"))
		return nil, nil, false
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		writeError(w, fmt.Errorf("upgrade connection: %w", err))
		return nil, nil, false
	}
	_ = conn.SetDeadline(time.Time{}) // no timeouts: a session lasts as long as its command
	var b strings.Builder
	b.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + api.StreamProtocol + "\r\n")
	for _, k := range []string{api.HeaderPod, api.HeaderNode} {
		if v := hdr.Get(k); v != "" {
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	b.WriteString("\r\n")
	if _, err := conn.Write([]byte(b.String())); err != nil {
		conn.Close() // the client is gone: nothing more can be sent
		return nil, nil, false
	}
	return conn, brw.Reader, true
}

// serveStream upgrades the connection and runs a session on this node: it
// feeds stdin and resize frames to run, sends its output as frames, and ends
// with its exit code (or its error). The client closing the connection ends
// the session (run's context is cancelled).
func (srv *Server) serveStream(w http.ResponseWriter, r *http.Request, hdr http.Header, withStdin, tty bool, size api.TermSize,
	run func(context.Context, api.IO) (int, error)) {
	conn, br, ok := hijack(w, hdr)
	if !ok {
		return
	}
	defer conn.Close()
	s := api.NewStream(conn, br)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()

	var stdinR *io.PipeReader
	var stdinW *io.PipeWriter
	stdio := api.IO{Stdout: s.Writer(api.FrameStdout), Stderr: s.Writer(api.FrameStderr)}
	if withStdin {
		stdinR, stdinW = io.Pipe()
		stdio.Stdin = stdinR
	}
	resize := make(chan api.TermSize, 8)
	if tty {
		stdio.Resize = resize
		if size.Height > 0 && size.Width > 0 {
			resize <- size
		}
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			t, p, err := s.ReadFrame()
			if err != nil {
				// The client closed: after the last frame, or gone early.
				if stdinW != nil {
					stdinW.Close()
				}
				cancel()
				return
			}
			switch t {
			case api.FrameStdin:
				if stdinW != nil {
					_, _ = stdinW.Write(p) // fails once the session is over
				}
			case api.FrameStdinClose:
				if stdinW != nil {
					stdinW.Close()
				}
			case api.FrameResize:
				if ts, err := api.DecodeTermSize(p); err == nil && tty {
					select {
					case resize <- ts:
					default: // the process is not keeping up; a later size follows
					}
				}
			}
		}
	}()

	code, err := run(ctx, stdio)
	if stdinR != nil {
		stdinR.Close()
	}
	if err != nil {
		_ = s.WriteFrame(api.FrameError, []byte(err.Error()))
	} else {
		_ = s.WriteFrame(api.FrameExit, api.EncodeExitCode(code))
	}
	_ = s.CloseWrite()
	select { // let the client read the last frame and close first
	case <-readerDone:
	case <-time.After(streamGrace):
	}
}

// relayStream forwards an interactive request to the node that serves it,
// then relays the upgraded stream both ways, unchanged.
func (srv *Server) relayStream(w http.ResponseWriter, r *http.Request, node string, body []byte) {
	c, err := srv.nodeClient(node)
	if err != nil {
		writeError(w, err)
		return
	}
	up, hdr, err := c.Upgrade(r.Context(), r.URL.RequestURI(), json.RawMessage(body))
	if err != nil {
		writeError(w, err) // the owning node's answer, passed on
		return
	}
	defer up.Close()
	conn, br, ok := hijack(w, hdr)
	if !ok {
		return
	}
	defer conn.Close()
	clientDone := make(chan struct{})
	go func() {
		defer close(clientDone)
		_, _ = io.Copy(up, br)
		// The client is done (it read the last frame) or gone: either way
		// the owning node may end the session.
		up.Close()
	}()
	_, _ = io.Copy(conn, up) // until the owning node has sent its last frame
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	select {
	case <-clientDone:
	case <-time.After(streamGrace):
	}
}

func (srv *Server) handlePodAction(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		var req api.PodActionRequest
		if _, err := readBody(r, &req); err != nil {
			writeError(w, err)
			return
		}
		if req.Timeout != nil && *req.Timeout < 0 {
			writeError(w, invalid("%s %s: timeout must be >= 0 seconds", action, name))
			return
		}
		if action == api.ActionKill {
			sig, err := api.NormalizeSignal(req.Signal)
			if err != nil {
				writeError(w, invalid("kill %s: %v", name, err))
				return
			}
			req.Signal = sig
		}
		pod, err := srv.placedPod(action, name)
		bounded := action == api.ActionKill || action == api.ActionPause || action == api.ActionUnpause
		if err == nil && bounded {
			err = srv.engineAnswers(action, pod)
		}
		if err != nil {
			writeError(w, err)
			return
		}
		ctx := r.Context()
		if bounded {
			// stop|start|restart wait out the grace the user gave.
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, relayTimeout)
			defer cancel()
		}
		if pod.Node != srv.opts.Node {
			c, err := srv.nodeClient(pod.Node)
			if err != nil {
				writeError(w, fmt.Errorf("%s %s: %w", action, name, err))
				return
			}
			res, err := c.PodAction(ctx, name, action, req)
			if err != nil {
				writeError(w, err)
				return
			}
			writeJSON(w, res)
			return
		}
		if bounded {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, controlTimeout)
			defer cancel()
		}
		p, err := srv.localPodAction(ctx, name, action, req)
		if err != nil {
			writeError(w, localError(err))
			return
		}
		writeJSON(w, api.PodActionResult{Pod: p})
	}
}

// localPodAction acts on a pod of this node.
func (srv *Server) localPodAction(ctx context.Context, name, action string, req api.PodActionRequest) (api.Pod, error) {
	switch action {
	case api.ActionKill:
		return srv.local.KillPod(ctx, name, req.Signal)
	case api.ActionPause, api.ActionUnpause:
		return srv.local.PausePod(ctx, name, action == api.ActionPause)
	}
	var grace *time.Duration
	if req.Timeout != nil {
		g := time.Duration(*req.Timeout) * time.Second
		grace = &g
	}
	return srv.local.PodAction(ctx, name, action, grace)
}
