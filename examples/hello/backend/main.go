// Command backend is the back service of the hello example: it counts requests in
// memory, answers with JSON, and appends one line per request to a file on a volume.
package main

import (
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/devhq/dev/examples/hello/internal/svc"
)

type server struct {
	host string
	path string // file that gets one line per request; "" disables it

	mu    sync.Mutex
	count int64
}

func main() {
	svc.Run("backend", ":9090", func(mux *http.ServeMux, host string) string {
		dataDir := os.Getenv("DATA_DIR")
		if dataDir == "" {
			dataDir = "/data"
		}
		s := &server{host: host, path: filepath.Join(dataDir, "requests.log")}
		if err := os.MkdirAll(dataDir, 0o755); err != nil {
			log.Printf("data dir %s unusable, not recording requests: %v", dataDir, err)
			s.path = ""
		}
		mux.HandleFunc("GET /{$}", s.handleRoot)
		return fmt.Sprintf("recording to %q", s.path)
	})
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
