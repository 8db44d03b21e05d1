package apiserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/raftstore"
)

// httpError carries a status code and a stable code to the client.
type httpError struct {
	status int
	code   string
	err    error
}

func (e *httpError) Error() string { return e.err.Error() }
func (e *httpError) Unwrap() error { return e.err }

func invalid(format string, a ...any) error {
	return &httpError{http.StatusBadRequest, "invalid", fmt.Errorf(format, a...)}
}

func notFound(format string, a ...any) error {
	return &httpError{http.StatusNotFound, "not_found", fmt.Errorf(format, a...)}
}

func conflict(format string, a ...any) error {
	return &httpError{http.StatusConflict, "conflict", fmt.Errorf(format, a...)}
}

func writeError(w http.ResponseWriter, err error) {
	status, code := http.StatusInternalServerError, "internal"
	var he *httpError
	var ae *api.APIError
	switch {
	case errors.As(err, &he):
		status, code = he.status, he.code
	case errors.As(err, &ae):
		status, code = ae.Status, ae.Code // a peer's answer, passed on
	case errors.Is(err, raftstore.ErrNotLeader):
		status, code = http.StatusServiceUnavailable, "unavailable"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(api.Error{Message: err.Error(), Code: code})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
