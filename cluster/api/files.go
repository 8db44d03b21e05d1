package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Files of a pod's container (`dev up --watch`, `dev watch`):
//
//	PUT    /v1/pods/{name}/files?path=DIR   tar archive -> FilesResult
//	DELETE /v1/pods/{name}/files            RemoveFilesRequest -> FilesResult
//
// PUT extracts the archive into directory DIR of the container (absolute;
// created with its parents when missing), as `docker cp - CONTAINER:DIR`
// does. DELETE removes paths (absolute, recursively; missing ones are not an
// error). Both are served by the node that runs the pod: any other node
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
