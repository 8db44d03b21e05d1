package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client is the agent API as the CLI uses it.
type Client interface {
	Status(ctx context.Context) (Status, error)
	ApplyProject(ctx context.Context, p *Project) (ApplyResult, error)
	Projects(ctx context.Context) ([]ProjectSummary, error)
	DeleteProject(ctx context.Context, name string) (WriteResult, error)
	DeleteVolumes(ctx context.Context, project string) error
	Scale(ctx context.Context, project string, replicas map[string]int) (WriteResult, error)
	Pods(ctx context.Context, q PodQuery) (PodList, error)
	// Logs streams the logs of a pod's container: its service's, or a
	// sidecar's (container names it).
	Logs(ctx context.Context, pod, container string, follow bool, tail int) (io.ReadCloser, error)
	Nodes(ctx context.Context) ([]Node, error)
	Services(ctx context.Context, project string) ([]ServiceInfo, error)
	// Stats returns what the running pods use (CPU, memory, network), of
	// every node.
	Stats(ctx context.Context, q StatsQuery) (StatsList, error)
	// Token returns a join token (the worker's, or the manager's) and, for
	// a client name, a certificate bundle with role "admin" or "read".
	Token(ctx context.Context, req TokenRequest) (TokenResponse, error)
	Rollback(ctx context.Context, project, service string) (WriteResult, error)
	Leave(ctx context.Context) error
	// RemoveNode forgets a node that is gone for good and revokes its
	// certificate; a ready node only with force.
	RemoveNode(ctx context.Context, name string, force bool) (WriteResult, error)
	// CordonNode stops (cordoned) or resumes placing new pods on a node.
	CordonNode(ctx context.Context, name string, cordoned bool) (WriteResult, error)
	// LabelNode sets labels on a node (k: v) or removes them (k: ""),
	// whatever the node itself reports.
	LabelNode(ctx context.Context, name string, labels map[string]string) (WriteResult, error)
	// RevokeClient revokes every client bundle issued to name so far.
	RevokeClient(ctx context.Context, name string) (WriteResult, error)
	Revocations(ctx context.Context) ([]Revocation, error)
	// RotateToken makes a new join secret for the worker token (or the
	// manager token) and returns the new token.
	RotateToken(ctx context.Context, manager bool) (TokenResponse, error)
}

// PodQuery filters a pod listing; Index > 0 makes it a blocking query that
// returns once the store passes Index or Wait elapses.
type PodQuery struct {
	Project  string
	Node     string
	Selector Selector
	Index    uint64
	Wait     time.Duration
}

// ErrUnreachable wraps failures to reach the agent at all.
var ErrUnreachable = errors.New("agent unreachable")

// APIError is a non-2xx answer from the agent.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string { return e.Message }

// IsNotFound reports whether err is an API "not_found" answer.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == "not_found"
}

// HTTPClient talks to an agent over HTTP on a unix socket, or over HTTPS.
type HTTPClient struct {
	host string
	base string // URL prefix of requests
	hc   *http.Client
	// stream has no overall timeout, for logs and blocking queries.
	stream *http.Client
}

var _ Client = (*HTTPClient)(nil)

// NewClient returns a client for host: "unix:///path/to/dev.sock", or
// "tcp://ip:7948" with tlsConf (mutual TLS with a cluster certificate).
func NewClient(host string, tlsConf *tls.Config) (*HTTPClient, error) {
	u, err := url.Parse(host)
	if err != nil {
		return nil, fmt.Errorf("parse agent address %q: %w", host, err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 8}
	base := "http://dev"
	switch {
	case u.Scheme == "unix" && u.Path != "":
		path := u.Path
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
	case u.Scheme == "tcp" && u.Host != "":
		if tlsConf == nil {
			return nil, fmt.Errorf("agent address %q: a client certificate is needed; pass --tls-bundle (made by `dev token --client NAME` on a node)", host)
		}
		tr.TLSClientConfig = tlsConf
		base = "https://" + u.Host
	default:
		return nil, fmt.Errorf("agent address %q: want unix:///path/to/dev.sock or tcp://HOST:7948", host)
	}
	return &HTTPClient{
		host:   host,
		base:   base,
		hc:     &http.Client{Transport: tr, Timeout: 60 * time.Second},
		stream: &http.Client{Transport: tr},
	}, nil
}

// NewDialClient returns a client whose connections dial opens: a stream to
// the agent's API by some other way than a socket address (the CLI uses
// one through the Docker Engine to an agent in a container). name is what
// errors call the agent's address.
func NewDialClient(name string, dial func(ctx context.Context) (net.Conn, error)) *HTTPClient {
	tr := &http.Transport{MaxIdleConnsPerHost: 8,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) }}
	return &HTTPClient{
		host:   name,
		base:   "http://dev",
		hc:     &http.Client{Transport: tr, Timeout: 60 * time.Second},
		stream: &http.Client{Transport: tr},
	}
}

// Host is the address the client talks to.
func (c *HTTPClient) Host() string { return c.host }

func (c *HTTPClient) do(ctx context.Context, hc *http.Client, method, path string, body, out any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w at %s: %v", ErrUnreachable, c.host, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var e Error
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(b))
		}
		return nil, &APIError{Status: resp.StatusCode, Code: e.Code, Message: e.Message}
	}
	if out == nil {
		return resp, nil
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return nil, fmt.Errorf("decode %s %s answer: %w", method, path, err)
	}
	return resp, nil
}

// Do sends a JSON request to path and decodes the JSON answer into out (nil:
// the answer is discarded). Non-2xx answers come back as *APIError.
func (c *HTTPClient) Do(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.do(ctx, c.hc, method, path, body, out)
	if err == nil && out == nil {
		resp.Body.Close()
	}
	return err
}

// Stream sends a request to path and returns the answer's body, for the
// caller to read and close; it has no overall timeout (logs, images).
func (c *HTTPClient) Stream(ctx context.Context, method, path string) (io.ReadCloser, error) {
	resp, err := c.do(ctx, c.stream, method, path, nil, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Status implements Client.
func (c *HTTPClient) Status(ctx context.Context) (Status, error) {
	var s Status
	_, err := c.do(ctx, c.hc, http.MethodGet, "/v1/status", nil, &s)
	return s, err
}

// ApplyProject implements Client.
func (c *HTTPClient) ApplyProject(ctx context.Context, p *Project) (ApplyResult, error) {
	var r ApplyResult
	_, err := c.do(ctx, c.hc, http.MethodPut, "/v1/projects/"+url.PathEscape(p.Name), p, &r)
	return r, err
}

// Projects implements Client.
func (c *HTTPClient) Projects(ctx context.Context) ([]ProjectSummary, error) {
	var r []ProjectSummary
	_, err := c.do(ctx, c.hc, http.MethodGet, "/v1/projects", nil, &r)
	return r, err
}

// DeleteProject implements Client.
func (c *HTTPClient) DeleteProject(ctx context.Context, name string) (WriteResult, error) {
	var r WriteResult
	_, err := c.do(ctx, c.hc, http.MethodDelete, "/v1/projects/"+url.PathEscape(name), nil, &r)
	return r, err
}

// DeleteVolumes implements Client.
func (c *HTTPClient) DeleteVolumes(ctx context.Context, project string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/projects/"+url.PathEscape(project)+"/volumes", nil, &WriteResult{})
}

// Scale implements Client.
func (c *HTTPClient) Scale(ctx context.Context, project string, replicas map[string]int) (WriteResult, error) {
	var r WriteResult
	_, err := c.do(ctx, c.hc, http.MethodPost, "/v1/projects/"+url.PathEscape(project)+"/scale", ScaleRequest{Replicas: replicas}, &r)
	return r, err
}

// Pods implements Client.
func (c *HTTPClient) Pods(ctx context.Context, q PodQuery) (PodList, error) {
	v := url.Values{}
	if q.Project != "" {
		v.Set("project", q.Project)
	}
	if q.Node != "" {
		v.Set("node", q.Node)
	}
	if len(q.Selector) > 0 {
		v.Set("selector", q.Selector.String())
	}
	hc := c.hc
	if q.Index > 0 {
		v.Set("index", strconv.FormatUint(q.Index, 10))
		if q.Wait > 0 {
			v.Set("wait", q.Wait.String())
		}
		hc = c.stream
	}
	var r PodList
	_, err := c.do(ctx, hc, http.MethodGet, "/v1/pods?"+v.Encode(), nil, &r)
	return r, err
}

// Logs implements Client. The caller closes the stream.
func (c *HTTPClient) Logs(ctx context.Context, pod, container string, follow bool, tail int) (io.ReadCloser, error) {
	v := url.Values{}
	if container != "" {
		v.Set("container", container)
	}
	if follow {
		v.Set("follow", "1")
	}
	if tail >= 0 {
		v.Set("tail", strconv.Itoa(tail))
	}
	return c.Stream(ctx, http.MethodGet, "/v1/pods/"+url.PathEscape(pod)+"/logs?"+v.Encode())
}

// Nodes implements Client.
func (c *HTTPClient) Nodes(ctx context.Context) ([]Node, error) {
	var r []Node
	_, err := c.do(ctx, c.hc, http.MethodGet, "/v1/nodes", nil, &r)
	return r, err
}

// Services implements Client.
func (c *HTTPClient) Services(ctx context.Context, project string) ([]ServiceInfo, error) {
	var r []ServiceInfo
	_, err := c.do(ctx, c.hc, http.MethodGet, "/v1/services?project="+url.QueryEscape(project), nil, &r)
	return r, err
}

// Events returns the events after index; with wait > 0 it blocks until
// there are some or wait passes (a blocking query).
func (c *HTTPClient) Events(ctx context.Context, index uint64, wait time.Duration) (EventList, error) {
	var r EventList
	path := fmt.Sprintf("/v1/events?index=%d", index)
	hc := c.hc
	if wait > 0 {
		path += "&wait=" + wait.String()
		hc = c.stream // no client timeout: the server answers within wait
	}
	_, err := c.do(ctx, hc, http.MethodGet, path, nil, &r)
	return r, err
}

// Dashboard returns where the agent serves its dashboard and a login link.
func (c *HTTPClient) Dashboard(ctx context.Context) (DashboardInfo, error) {
	var r DashboardInfo
	_, err := c.do(ctx, c.hc, http.MethodGet, "/v1/dashboard", nil, &r)
	return r, err
}

// Token implements Client.
func (c *HTTPClient) Token(ctx context.Context, req TokenRequest) (TokenResponse, error) {
	var r TokenResponse
	q := url.Values{}
	if req.Client != "" {
		q.Set("client", req.Client)
	}
	if req.Role != "" {
		q.Set("role", req.Role)
	}
	if req.Manager {
		q.Set("manager", "1")
	}
	if req.ValidFor > 0 {
		q.Set("valid_for", req.ValidFor.String())
	}
	_, err := c.do(ctx, c.hc, http.MethodGet, "/v1/token?"+q.Encode(), nil, &r)
	return r, err
}

// LocalCA returns the local HTTPS CA's certificate (PEM).
func (c *HTTPClient) LocalCA(ctx context.Context) ([]byte, error) {
	var r LocalCAResponse
	if err := c.Do(ctx, http.MethodGet, "/v1/ca/local", nil, &r); err != nil {
		return nil, err
	}
	return r.CertPEM, nil
}

// RenewClient asks for a new certificate for the client bundle this client
// calls with, for the key of csr (PEM).
func (c *HTTPClient) RenewClient(ctx context.Context, csr []byte) (RenewResponse, error) {
	var r RenewResponse
	err := c.Do(ctx, http.MethodPost, "/v1/clients/renew", RenewRequest{CSR: csr}, &r)
	return r, err
}

// CA returns the cluster CA's fingerprint and its rotation in progress.
func (c *HTTPClient) CA(ctx context.Context) (CAStatus, error) {
	var r CAStatus
	err := c.Do(ctx, http.MethodGet, "/v1/ca", nil, &r)
	return r, err
}

// RotateCA starts moving the cluster to a new CA (dev ca rotate).
func (c *HTTPClient) RotateCA(ctx context.Context) (CAStatus, error) {
	var r CAStatus
	err := c.Do(ctx, http.MethodPost, "/v1/ca/rotate", nil, &r)
	return r, err
}

// Leave implements Client: the node moves its pods away, leaves, and stops.
func (c *HTTPClient) Leave(ctx context.Context) error {
	_, err := c.do(ctx, c.stream, http.MethodPost, "/v1/leave", nil, &WriteResult{})
	return err
}

// CordonNode implements Client.
func (c *HTTPClient) CordonNode(ctx context.Context, name string, cordoned bool) (WriteResult, error) {
	var r WriteResult
	verb := "uncordon"
	if cordoned {
		verb = "cordon"
	}
	err := c.Do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(name)+"/"+verb, nil, &r)
	return r, err
}

// DrainNode cordons a node and has its pods moved to other nodes (dev
// node drain); the node's record says Draining until they have moved.
func (c *HTTPClient) DrainNode(ctx context.Context, name string) (WriteResult, error) {
	var r WriteResult
	err := c.Do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(name)+"/drain", nil, &r)
	return r, err
}

// LabelNode implements Client.
func (c *HTTPClient) LabelNode(ctx context.Context, name string, labels map[string]string) (WriteResult, error) {
	var r WriteResult
	err := c.Do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(name)+"/labels", labels, &r)
	return r, err
}

// RemoveNode implements Client.
func (c *HTTPClient) RemoveNode(ctx context.Context, name string, force bool) (WriteResult, error) {
	var r WriteResult
	path := "/v1/nodes/" + url.PathEscape(name)
	if force {
		path += "?force=1"
	}
	err := c.Do(ctx, http.MethodDelete, path, nil, &r)
	return r, err
}

// RevokeClient implements Client.
func (c *HTTPClient) RevokeClient(ctx context.Context, name string) (WriteResult, error) {
	var r WriteResult
	err := c.Do(ctx, http.MethodDelete, "/v1/clients/"+url.PathEscape(name), nil, &r)
	return r, err
}

// RotateToken implements Client.
func (c *HTTPClient) RotateToken(ctx context.Context, manager bool) (TokenResponse, error) {
	var r TokenResponse
	err := c.Do(ctx, http.MethodPost, "/v1/token/rotate", RotateTokenRequest{Manager: manager}, &r)
	return r, err
}

// Revocations implements Client.
func (c *HTTPClient) Revocations(ctx context.Context) ([]Revocation, error) {
	var r []Revocation
	err := c.Do(ctx, http.MethodGet, "/v1/revocations", nil, &r)
	return r, err
}

// Rollback implements Client.
func (c *HTTPClient) Rollback(ctx context.Context, project, service string) (WriteResult, error) {
	var r WriteResult
	err := c.Do(ctx, http.MethodPost, "/v1/projects/"+url.PathEscape(project)+"/rollback", map[string]string{"service": service}, &r)
	return r, err
}

// Upgrade sends a JSON request asking to switch the connection to the
// interactive stream protocol and returns the upgraded connection and the
// 101 answer's headers. Any other answer is returned as an error
// (*APIError for non-2xx).
func (c *HTTPClient) Upgrade(ctx context.Context, path string, body any) (io.ReadWriteCloser, http.Header, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, nil, fmt.Errorf("encode request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(b))
	if err != nil {
		return nil, nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", StreamProtocol)
	resp, err := c.stream.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, fmt.Errorf("%w at %s: %v", ErrUnreachable, c.host, err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		rwc, ok := resp.Body.(io.ReadWriteCloser)
		if !ok {
			resp.Body.Close()
			return nil, nil, fmt.Errorf("upgrade %s: the connection cannot be written to", path)
		}
		return rwc, resp.Header, nil
	}
	defer resp.Body.Close()
	b, _ = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 == 2 {
		return nil, nil, fmt.Errorf("upgrade %s: the agent answered %s without switching protocols; is it older than this CLI?", path, resp.Status)
	}
	var e Error
	if json.Unmarshal(b, &e) != nil || e.Message == "" {
		e.Message = strings.TrimSpace(string(b))
	}
	return nil, nil, &APIError{Status: resp.StatusCode, Code: e.Code, Message: e.Message}
}

// Exec starts a command in a pod's container and returns the interactive
// stream; the caller closes it.
func (c *HTTPClient) Exec(ctx context.Context, pod string, req ExecRequest) (*Stream, error) {
	rwc, _, err := c.Upgrade(ctx, "/v1/pods/"+url.PathEscape(pod)+"/exec", req)
	if err != nil {
		return nil, err
	}
	return NewStream(rwc, nil), nil
}

// Run starts a one-off pod of a service and returns the interactive stream
// and the pod's name; the caller closes the stream.
func (c *HTTPClient) Run(ctx context.Context, project, service string, req RunRequest) (*Stream, string, error) {
	rwc, hdr, err := c.Upgrade(ctx, "/v1/projects/"+url.PathEscape(project)+"/services/"+url.PathEscape(service)+"/run", req)
	if err != nil {
		return nil, "", err
	}
	return NewStream(rwc, nil), hdr.Get(HeaderPod), nil
}

// PodAction stops, starts or restarts a pod's container (action is "stop",
// "start" or "restart").
func (c *HTTPClient) PodAction(ctx context.Context, pod, action string, req PodActionRequest) (PodActionResult, error) {
	var r PodActionResult
	_, err := c.do(ctx, c.stream, http.MethodPost, "/v1/pods/"+url.PathEscape(pod)+"/"+url.PathEscape(action), req, &r)
	return r, err
}

// PodTop lists the processes of a pod's running containers (`dev top`).
func (c *HTTPClient) PodTop(ctx context.Context, pod string) (PodTop, error) {
	var r PodTop
	_, err := c.do(ctx, c.hc, http.MethodGet, "/v1/pods/"+url.PathEscape(pod)+"/top", nil, &r)
	return r, err
}

// PodImages lists the images of a pod's containers (`dev images`).
func (c *HTTPClient) PodImages(ctx context.Context, pod string) (PodImages, error) {
	var r PodImages
	_, err := c.do(ctx, c.hc, http.MethodGet, "/v1/pods/"+url.PathEscape(pod)+"/images", nil, &r)
	return r, err
}

// Remove removes stopped pods of a project (`dev rm`).
func (c *HTTPClient) Remove(ctx context.Context, project string, req RemoveRequest) (RemoveResult, error) {
	var r RemoveResult
	_, err := c.do(ctx, c.hc, http.MethodPost, "/v1/projects/"+url.PathEscape(project)+"/rm", req, &r)
	return r, err
}
