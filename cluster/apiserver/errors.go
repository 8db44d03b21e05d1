package apiserver

import (
	"context"
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

// refusal is how a Local's pod action says that the pod's state refuses
// it (no such pod, not running, being removed: agent.RefusedError), told
// apart by behaviour.
type refusal interface {
	error
	Refused() bool
	NotFound() bool
}

// localError gives an error of a Local's pod action (kill, pause, top,
// stop...) its status by kind: 404 for no such pod, 409 for a state that
// refuses the action, 504 when the node's Engine did not answer in time,
// 500 for the rest.
func localError(err error) error {
	var r refusal
	switch {
	case errors.As(err, &r) && r.Refused() && r.NotFound():
		return &httpError{http.StatusNotFound, "not_found", err}
	case errors.As(err, &r) && r.Refused():
		return &httpError{http.StatusConflict, "conflict", err}
	case errors.Is(err, context.DeadlineExceeded):
		return &httpError{http.StatusGatewayTimeout, "timeout",
			fmt.Errorf("%w: the node's Docker Engine did not answer in time; see `dev nodes` and retry", err)}
	}
	return err
}

// unavailable is a 503: a part of the cluster the request needs does not
// answer now; the message says when to retry.
func unavailable(format string, a ...any) error {
	return &httpError{http.StatusServiceUnavailable, "unavailable", fmt.Errorf(format, a...)}
}
