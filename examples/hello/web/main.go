// Command web is the front service of the hello example: it greets the caller
// with its hostname and a value fetched from the backend service.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/devhq/dev/examples/hello/internal/svc"
)

func main() {
	svc.Run("web", ":8080", func(mux *http.ServeMux, host string) string {
		backend := os.Getenv("BACKEND_ADDR")
		greeting := os.Getenv("GREETING")
		if greeting == "" {
			greeting = "Hello"
		}
		client := &http.Client{Timeout: 2 * time.Second}
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s from web %s\n", greeting, host)
			fmt.Fprintf(w, "backend: %s\n", fetchBackend(r.Context(), client, backend))
		})
		return fmt.Sprintf("backend %q", backend)
	})
}

// fetchBackend asks the backend for its answer and describes the outcome in one
// line; it never fails, so the page still renders when the backend is down.
func fetchBackend(ctx context.Context, client *http.Client, backend string) string {
	if backend == "" {
		return "not configured (set BACKEND_ADDR, e.g. backend:9090)"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+backend+"/", nil)
	if err != nil {
		return fmt.Sprintf("unreachable at %s: %v", backend, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Sprintf("unreachable at %s: %v", backend, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Sprintf("unreachable at %s: read body: %v", backend, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("error from %s: %s", backend, resp.Status)
	}
	var v struct {
		Backend string `json:"backend"`
		Count   int64  `json:"count"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return strings.TrimSpace(string(body))
	}
	return fmt.Sprintf("%s answered (count %d)", v.Backend, v.Count)
}
