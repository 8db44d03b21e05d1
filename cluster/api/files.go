package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// Files of a pod's container (`dev up --watch`, `dev watch`):
//
//	GET    /v1/pods/{name}/files?path=P     -> tar archive (PathStat of P in HeaderPathStat)
//	GET    /v1/pods/{name}/files?path=P&stat=1 -> PathStat
//	PUT    /v1/pods/{name}/files?path=DIR   tar archive -> FilesResult
//	DELETE /v1/pods/{name}/files            RemoveFilesRequest -> FilesResult
//
// PUT extracts the archive into directory DIR of the container (absolute;
// created with its parents when missing), as `docker cp - CONTAINER:DIR`
// does. DELETE removes paths (absolute, recursively; missing ones are not an
// error). GET archives path P (absolute) of the container as `docker cp
// CONTAINER:P -` does (its last element is the archive's top entry), at most
// MaxCopyOut bytes; with stat=1 it only describes P. All are served by the node that runs the pod: any other node
// relays them there over mutual TLS.

// RemoveFilesRequest lists the absolute paths to remove from a pod's
// container.
type RemoveFilesRequest struct {
	Paths []string `json:"paths"`
}

// FilesResult answers a copy or removal: the pod and the node that ran it.
type FilesResult struct {
	Pod  string `json:"pod"`
	Node string `json:"node"`
}

// PathStat describes a path in a pod's container (docker's
// container.PathStat).
type PathStat struct {
	Name       string      `json:"name"`
	Size       int64       `json:"size"`
	Mode       os.FileMode `json:"mode"`
	LinkTarget string      `json:"linkTarget,omitempty"`
}

// IsDir tells whether the path is a directory.
func (s PathStat) IsDir() bool { return s.Mode.IsDir() }

// HeaderPathStat carries the JSON PathStat of the archived path with a GET
// of a pod's files.
const HeaderPathStat = "X-Dev-Path-Stat"

// MaxCopyOut bounds the archive a GET of a pod's files streams: the node
// cuts it there, and the client refuses what is longer.
const MaxCopyOut int64 = 1 << 30

// ContentTypeTar is the content type of a tar archive body.
const ContentTypeTar = "application/x-tar"

// CopyFiles extracts the tar archive into directory dir of a pod's running
// container. The archive is streamed: no overall timeout applies.
func (c *HTTPClient) CopyFiles(ctx context.Context, pod, dir string, archive io.Reader) (FilesResult, error) {
	path := "/v1/pods/" + url.PathEscape(pod) + "/files?" + url.Values{"path": {dir}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.base+path, archive)
	if err != nil {
		return FilesResult{}, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", ContentTypeTar)
	var r FilesResult
	err = c.send(ctx, c.stream, req, &r)
	return r, err
}

// CopyFromPod streams a tar archive of path p (absolute) of a pod's running
// container, with what p is. The caller closes the archive.
func (c *HTTPClient) CopyFromPod(ctx context.Context, pod, p string) (io.ReadCloser, PathStat, error) {
	path := "/v1/pods/" + url.PathEscape(pod) + "/files?" + url.Values{"path": {p}}.Encode()
	resp, err := c.do(ctx, c.stream, http.MethodGet, path, nil, nil)
	if err != nil {
		return nil, PathStat{}, err
	}
	var st PathStat
	if err := json.Unmarshal([]byte(resp.Header.Get(HeaderPathStat)), &st); err != nil {
		resp.Body.Close()
		return nil, PathStat{}, fmt.Errorf("copy from %s:%s: the node sent no valid %s header: %w", pod, p, HeaderPathStat, err)
	}
	return resp.Body, st, nil
}

// StatPodPath describes path p (absolute) of a pod's running container.
func (c *HTTPClient) StatPodPath(ctx context.Context, pod, p string) (PathStat, error) {
	var st PathStat
	path := "/v1/pods/" + url.PathEscape(pod) + "/files?" + url.Values{"path": {p}, "stat": {"1"}}.Encode()
	_, err := c.do(ctx, c.hc, http.MethodGet, path, nil, &st)
	return st, err
}

// RemoveFiles removes paths (absolute, recursively) from a pod's running
// container.
func (c *HTTPClient) RemoveFiles(ctx context.Context, pod string, paths []string) (FilesResult, error) {
	b, err := json.Marshal(RemoveFilesRequest{Paths: paths})
	if err != nil {
		return FilesResult{}, fmt.Errorf("encode request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, c.base+"/v1/pods/"+url.PathEscape(pod)+"/files", bytes.NewReader(b))
	if err != nil {
		return FilesResult{}, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	var r FilesResult
	err = c.send(ctx, c.stream, req, &r)
	return r, err
}

// send sends a prepared request and decodes the JSON answer into out, with
// the errors of do.
func (c *HTTPClient) send(ctx context.Context, hc *http.Client, req *http.Request, out any) error {
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w at %s: %v", ErrUnreachable, c.host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e Error
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(b))
		}
		return &APIError{Status: resp.StatusCode, Code: e.Code, Message: e.Message}
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode %s %s answer: %w", req.Method, req.URL.Path, err)
	}
	return nil
}
