package manager

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/raftstore"
	"github.com/devhq/dev/cluster/state"
)

// peers talks to other nodes' APIs over mutual TLS, one cached client per
// address.
type peers struct {
	tls     *tls.Config
	mu      sync.Mutex
	clients map[string]*api.HTTPClient
}

func newPeers(tlsConf *tls.Config) *peers {
	return &peers{tls: tlsConf, clients: map[string]*api.HTTPClient{}}
}

// client returns the client for a node's API address ("ip:port").
func (p *peers) client(addr string) (*api.HTTPClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clients[addr]; ok {
		return c, nil
	}
	c, err := api.NewClient("tcp://"+addr, p.tls)
	if err != nil {
		return nil, err
	}
	p.clients[addr] = c
	return c, nil
}

// do sends a JSON request to a node and decodes its JSON answer.
func (p *peers) do(ctx context.Context, method, addr, path string, body, out any) error {
	c, err := p.client(addr)
	if err != nil {
		return err
	}
	return c.Do(ctx, method, path, body, out)
}

// stream sends a GET to a node and returns the answer's body.
func (p *peers) stream(ctx context.Context, addr, path string) (io.ReadCloser, error) {
	c, err := p.client(addr)
	if err != nil {
		return nil, err
	}
	return c.Stream(ctx, http.MethodGet, path)
}

// applyRequest is a command forwarded to the leader: the raft entry bytes.
type applyRequest struct {
	Entry []byte `json:"entry"`
}

// leaderAPI returns the API address of the current leader.
func (m *Manager) leaderAPI() (string, error) {
	_, id := m.r.LeaderAddr()
	if id == "" {
		return "", fmt.Errorf("no leader elected yet: %w", raftstore.ErrNotLeader)
	}
	n, ok := m.r.State().Node(id)
	if !ok || n.APIAddr == "" {
		return "", fmt.Errorf("leader %s has not registered its API address yet: %w", id, raftstore.ErrNotLeader)
	}
	return n.APIAddr, nil
}

// forward sends cmd to the leader and waits until the local replica has
// applied it, so that the caller reads its own write.
func (m *Manager) forward(ctx context.Context, cmd state.Command) (uint64, error) {
	if m.peers == nil {
		return 0, raftstore.ErrNotLeader
	}
	addr, err := m.leaderAPI()
	if err != nil {
		return 0, err
	}
	entry, err := state.Encode(cmd)
	if err != nil {
		return 0, err
	}
	var res api.WriteResult
	if err := m.peers.do(ctx, http.MethodPost, addr, "/v1/internal/apply", applyRequest{Entry: entry}, &res); err != nil {
		return 0, fmt.Errorf("forward write to leader %s: %w", addr, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m.r.State().WaitIndex(wctx, res.Index-1)
	return res.Index, nil
}

func (m *Manager) handleInternalApply(w http.ResponseWriter, r *http.Request) {
	var req applyRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, invalid("decode forwarded command: %v", err))
		return
	}
	cmd, err := state.Decode(req.Entry)
	if err != nil {
		writeError(w, invalid("%v", err))
		return
	}
	idx, err := m.r.Apply(r.Context(), cmd)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, api.WriteResult{Index: idx})
}

// forwardRegister asks the leader to register n (it allocates subnets).
func (m *Manager) forwardRegister(ctx context.Context, n api.Node) (api.Node, error) {
	addr, err := m.leaderAPI()
	if err != nil {
		// The leader's own record may not be replicated yet: wait for it.
		return api.Node{}, err
	}
	var out api.Node
	if err := m.peers.do(ctx, http.MethodPost, addr, "/v1/internal/register", n, &out); err != nil {
		return api.Node{}, fmt.Errorf("register with leader %s: %w", addr, err)
	}
	return out, nil
}

func (m *Manager) handleInternalRegister(w http.ResponseWriter, r *http.Request) {
	var n api.Node
	if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
		writeError(w, invalid("decode node: %v", err))
		return
	}
	// A node registers itself (its agent, through its own manager) and no
	// other: a node certificate must not overwrite another node's record.
	if c, _ := callerFrom(r.Context()); c.Name != n.Name {
		writeError(w, &httpError{http.StatusForbidden, "forbidden",
			fmt.Errorf("register node %s: the certificate of %q may register only itself", n.Name, c.Name)})
		return
	}
	if !m.r.IsLeader() {
		writeError(w, raftstore.ErrNotLeader)
		return
	}
	got, err := m.RegisterNode(r.Context(), n)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, got)
}

// nodeClient returns a client for another node's API.
func (m *Manager) nodeClient(node string) (*api.HTTPClient, error) {
	if m.peers == nil {
		return nil, fmt.Errorf("the pod runs on node %s, which this node cannot reach", node)
	}
	addr, err := m.nodeAPI(node)
	if err != nil {
		return nil, err
	}
	return m.peers.client(addr)
}

// placedPod returns a pod that exists, is not being removed and is bound to
// a node; what names the operation in errors ("exec in", "stop").
func (m *Manager) placedPod(what, name string) (api.Pod, error) {
	pod, ok := m.r.State().Pod(name)
	switch {
	case !ok:
		return pod, notFound("no pod %s", name)
	case pod.Deleting:
		return pod, conflict("%s %s: the pod is being removed", what, name)
	case pod.Node == "":
		return pod, conflict("%s %s: the pod is not scheduled yet (%s)", what, name, pod.Status.Message)
	}
	return pod, nil
}
