package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path"
	"time"

	"github.com/devhq/dev/cluster/api"
)

// The files API: copying files into, out of (`dev cp`), and removing files
// from, a pod's container (`dev up --watch` sync actions). Like the interactive API it is
// served by the node that runs the pod; any other node relays the request
// there over mutual TLS, the archive streamed through.

func (srv *Server) registerFiles(mux *http.ServeMux) {
	// Admin, not read: a container's files may hold secrets.
	handle(mux, "GET /v1/pods/{name}/files", roleAdmin, srv.handleCopyFrom)
	handle(mux, "PUT /v1/pods/{name}/files", roleAdmin, srv.handleCopyFiles, routeOpts{rawBody: true}) // a tar archive
	handle(mux, "DELETE /v1/pods/{name}/files", roleAdmin, srv.handleRemoveFiles)
}

// filesPod checks that the pod's container can take files and returns a
// client for the node that runs it, or nil when this node does.
func (srv *Server) filesPod(what, name string) (*api.HTTPClient, error) {
	pod, err := srv.placedPod(what, name)
	switch {
	case err != nil:
		return nil, err
	case pod.Status.State != api.PodRunning:
		return nil, conflict("%s %s: the pod is not running (%s)", what, name, pod.Status.State)
	case pod.Node == srv.opts.Node:
		return nil, nil
	}
	c, err := srv.nodeClient(pod.Node)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, name, err)
	}
	return c, nil
}

// cleanAbs returns p cleaned when it is absolute.
func cleanAbs(p string) (string, bool) {
	if !path.IsAbs(p) {
		return "", false
	}
	return path.Clean(p), true
}

func (srv *Server) handleCopyFiles(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	dir, ok := cleanAbs(r.URL.Query().Get("path"))
	if !ok {
		writeError(w, invalid("copy files to %s: path %q: want an absolute directory", name, r.URL.Query().Get("path")))
		return
	}
	peer, err := srv.filesPod("copy files to", name)
	if err != nil {
		writeError(w, err)
		return
	}
	if peer != nil {
		res, err := peer.CopyFiles(r.Context(), name, dir, r.Body)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, res)
		return
	}
	if err := srv.local.CopyFiles(r.Context(), name, dir, r.Body); err != nil {
		writeError(w, err)
		return
	}
	_, _ = io.Copy(io.Discard, r.Body) // tar padding the extraction did not read
	writeJSON(w, api.FilesResult{Pod: name, Node: srv.opts.Node})
}

// copyOutTimeout bounds a copy out of a pod's container, from the
// engine's first answer to the archive's last byte (at most api.MaxCopyOut).
var copyOutTimeout = 10 * time.Minute

// handleCopyFrom streams the archive of a path of a pod's container (or,
// with stat=1, says what the path is), from the node that runs the pod. An
// archive over api.MaxCopyOut, or one that breaks off, aborts the answer,
// so that the client sees an error rather than a shorter archive.
func (srv *Server) handleCopyFrom(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	q := r.URL.Query()
	p, ok := cleanAbs(q.Get("path"))
	if !ok {
		writeError(w, invalid("copy from %s: path %q: want an absolute path", name, q.Get("path")))
		return
	}
	stat := q.Get("stat") == "1"
	peer, err := srv.filesPod("copy from", name)
	if err != nil {
		writeError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), copyOutTimeout)
	defer cancel()
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(copyOutTimeout))
	var rc io.ReadCloser
	var st api.PathStat
	switch {
	case peer != nil && stat:
		st, err = peer.StatPodPath(ctx, name, p)
	case peer != nil:
		rc, st, err = peer.CopyFromPod(ctx, name, p)
	default:
		rc, st, err = srv.local.CopyFromPod(ctx, name, p, stat)
		if err != nil {
			err = localError(err)
		}
	}
	if err != nil {
		writeError(w, err)
		return
	}
	if stat {
		writeJSON(w, st)
		return
	}
	defer rc.Close()
	b, err := json.Marshal(st)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set(api.HeaderPathStat, string(b))
	w.Header().Set("Content-Type", api.ContentTypeTar)
	w.WriteHeader(http.StatusOK)
	n, err := io.Copy(w, io.LimitReader(rc, api.MaxCopyOut+1))
	if err != nil || n > api.MaxCopyOut {
		panic(http.ErrAbortHandler) // the client's read fails: no silently short archive
	}
}

func (srv *Server) handleRemoveFiles(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req api.RemoveFilesRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 8<<20)).Decode(&req); err != nil {
		writeError(w, invalid("decode request: %v", err))
		return
	}
	if len(req.Paths) == 0 {
		writeError(w, invalid("remove files in %s: no paths given", name))
		return
	}
	paths := make([]string, 0, len(req.Paths))
	for _, p := range req.Paths {
		c, ok := cleanAbs(p)
		if !ok || c == "/" {
			writeError(w, invalid("remove files in %s: path %q: want an absolute path below /", name, p))
			return
		}
		paths = append(paths, c)
	}
	peer, err := srv.filesPod("remove files in", name)
	if err != nil {
		writeError(w, err)
		return
	}
	if peer != nil {
		res, err := peer.RemoveFiles(r.Context(), name, paths)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, res)
		return
	}
	if err := srv.local.RemoveFiles(r.Context(), name, paths); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, api.FilesResult{Pod: name, Node: srv.opts.Node})
}
