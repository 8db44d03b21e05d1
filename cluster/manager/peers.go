package manager

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/raftstore"
	"github.com/devhq/dev/cluster/state"
)

// peers talks to other nodes' APIs over mutual TLS.
type peers struct {
	hc     *http.Client // bounded requests
	stream *http.Client // logs, images: no overall timeout
}

func newPeers(tlsConf *tls.Config) *peers {
	tr := &http.Transport{TLSClientConfig: tlsConf, MaxIdleConnsPerHost: 4, ForceAttemptHTTP2: false}
	return &peers{
		hc:     &http.Client{Transport: tr, Timeout: 30 * time.Second},
		stream: &http.Client{Transport: tr},
	}
}

// do sends a JSON request to https://addr/path and decodes the JSON answer.
func (p *peers) do(ctx context.Context, method, addr, path string, body, out any) error {
	resp, err := p.send(ctx, p.hc, method, addr, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode answer of %s %s: %w", addr, path, err)
	}
	return nil
}

func (p *peers) send(ctx context.Context, hc *http.Client, method, addr, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+addr+path, rd)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach node %s: %w", addr, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var e api.Error
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &e) != nil || e.Message == "" {
			e.Message = string(b)
		}
		return nil, &httpError{status: resp.StatusCode, code: e.Code, err: errors.New(e.Message)}
	}
	return resp, nil
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
