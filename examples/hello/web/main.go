// Command web is the front service of the hello example: it greets the caller
// with its hostname and a value fetched from the backend service.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", ":8080", "address to listen on")
	health := flag.Bool("health", false, "probe the local /healthz endpoint and exit 0 if it answers 200 (for healthchecks)")
	flag.Parse()

	if *health {
		os.Exit(probe(*addr))
	}

	backend := os.Getenv("BACKEND_ADDR")
	greeting := os.Getenv("GREETING")
	if greeting == "" {
		greeting = "Hello"
	}
	host, _ := os.Hostname()

	client := &http.Client{Timeout: 2 * time.Second}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s from web %s\n", greeting, host)
		fmt.Fprintf(w, "backend: %s\n", fetchBackend(r.Context(), client, backend))
	})

	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()

	log.Printf("web %s listening on %s (backend %q)", host, *addr, backend)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("serve: %v", err)
	}
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

// probe does an HTTP GET on 127.0.0.1:<port of addr>/healthz and returns the exit code.
func probe(addr string) int {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "health: parse addr %q: %v\n", addr, err)
		return 1
	}
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + net.JoinHostPort("127.0.0.1", port) + "/healthz")
	if err != nil {
		fmt.Fprintf(os.Stderr, "health: %v\n", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(os.Stderr, "health: %s\n", resp.Status)
		return 1
	}
	return 0
}
