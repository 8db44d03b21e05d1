package apiserver

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/raftstore/rafttest"
	"github.com/devhq/dev/cluster/state"
)

// replayingRaft is a node whose raft log is still being replayed until
// caughtUp is closed.
type replayingRaft struct {
	*rafttest.Raft
	caughtUp chan struct{}
}

func (r replayingRaft) WaitReady(ctx context.Context) error {
	select {
	case <-r.caughtUp:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestAwaitState: right after a start, the API answers from the state only
// once it has caught up with the log (a `dev down` answered from the empty
// store said "not deployed" and did nothing); node-to-node routes pass.
func TestAwaitState(t *testing.T) {
	rr := replayingRaft{rafttest.New(state.New()), make(chan struct{})}
	srv := New(rr, nil, nil, Options{Node: "n1"})
	var served []string
	h := srv.awaitState(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served = append(served, r.URL.Path)
	}))
	do := func(ctx context.Context, method, path string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, method, path, nil))
		return rec.Code
	}

	// Node-to-node routes do not wait.
	if code := do(context.Background(), http.MethodPost, "/v1/internal/apply"); code != http.StatusOK || len(served) != 1 {
		t.Fatalf("internal route while replaying: %d, served %v", code, served)
	}
	// So does the status, which says what is missing.
	if code := do(context.Background(), http.MethodGet, "/v1/status"); code != http.StatusOK || len(served) != 2 {
		t.Fatalf("status while replaying: %d, served %v", code, served)
	}
	// A public route waits; one whose caller gives up gets 503 and no answer.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if code := do(ctx, http.MethodDelete, "/v1/projects/p"); code != http.StatusServiceUnavailable || len(served) != 2 {
		t.Fatalf("public route while replaying: %d, served %v; want 503 and not served", code, served)
	}
	// Once caught up, it is served.
	done := make(chan int)
	go func() { done <- do(context.Background(), http.MethodDelete, "/v1/projects/p") }()
	close(rr.caughtUp)
	if code := <-done; code != http.StatusOK || len(served) != 3 {
		t.Fatalf("public route after the replay: %d, served %v", code, served)
	}
}
