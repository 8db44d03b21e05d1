// Command backend is the back service of the hello example: it counts requests in
// memory, answers with JSON, and appends one line per request to a file on a volume.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

type server struct {
	host string
	path string // file that gets one line per request; "" disables it

	mu    sync.Mutex
	count int64
}

func main() {
	addr := flag.String("addr", ":9090", "address to listen on")
	health := flag.Bool("health", false, "probe the local /healthz endpoint and exit 0 if it answers 200 (for healthchecks)")
	flag.Parse()

	if *health {
		os.Exit(probe(*addr))
	}

	dataDir := os.Getenv("DATA_DIR")
	if dataDir == "" {
		dataDir = "/data"
	}
	host, _ := os.Hostname()
	s := &server{host: host, path: filepath.Join(dataDir, "requests.log")}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		log.Printf("data dir %s unusable, not recording requests: %v", dataDir, err)
		s.path = ""
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /{$}", s.handleRoot)

	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()

	log.Printf("backend %s listening on %s (recording to %q)", host, *addr, s.path)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("serve: %v", err)
	}
}

func (s *server) handleRoot(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.count++
	n := s.count
	if s.path != "" {
		if err := appendLine(s.path, fmt.Sprintf("%s %s %d %s\n", time.Now().UTC().Format(time.RFC3339Nano), s.host, n, r.RemoteAddr)); err != nil {
			log.Printf("record request: %v", err)
		}
	}
	s.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(struct {
		Backend string `json:"backend"`
		Count   int64  `json:"count"`
	}{s.host, n})
}

func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return err
	}
	return f.Close()
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
