// Command db is a stand-in for Postgres in the starter: it plays the database's
// role (port 5432, POSTGRES_* environment, data in PGDATA on a named volume, a
// healthcheck) with a tiny HTTP/JSON store, so the project runs without
// pulling an image. It is not Postgres and does not speak its protocol: see
// README.md in this folder to swap in the real thing.
//
// API (HTTP basic auth with POSTGRES_USER / POSTGRES_PASSWORD):
//
//	GET  /healthz                   200 once the data is loaded (pg_isready)
//	POST /{db}/counters/{name}      add one to a counter: {"value": n}
//	GET  /{db}/rows/{table}         the table's rows, a JSON array
//	POST /{db}/rows/{table}         append the JSON body as a row
package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

func main() {
	health := flag.Bool("health", false, "check that the server answers (for the compose healthcheck) and exit")
	flag.Parse()
	port := envOr("PGPORT", "5432")
	if *health {
		os.Exit(checkHealth("http://127.0.0.1:" + port + "/healthz"))
	}

	user := envOr("POSTGRES_USER", "postgres")
	pass := os.Getenv("POSTGRES_PASSWORD")
	if pass == "" {
		// As the postgres image does: no password, no start.
		log.Fatal("db: POSTGRES_PASSWORD is not set; set it in compose.yaml")
	}
	dbName := envOr("POSTGRES_DB", user)
	dir := envOr("PGDATA", "/var/lib/postgresql/data")
	st, err := open(filepath.Join(dir, dbName+".json"))
	if err != nil {
		log.Fatalf("db: %v", err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "accepting connections\n")
	})
	auth := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			u, p, ok := r.BasicAuth()
			if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(user)) != 1 || subtle.ConstantTimeCompare([]byte(p), []byte(pass)) != 1 {
				http.Error(w, fmt.Sprintf("password authentication failed for user %q", u), http.StatusUnauthorized)
				return
			}
			if r.PathValue("db") != dbName {
				http.Error(w, fmt.Sprintf("database %q does not exist", r.PathValue("db")), http.StatusNotFound)
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("POST /{db}/counters/{name}", auth(func(w http.ResponseWriter, r *http.Request) {
		v, err := st.incr(r.PathValue("name"))
		reply(w, map[string]int64{"value": v}, err)
	}))
	mux.HandleFunc("GET /{db}/rows/{table}", auth(func(w http.ResponseWriter, r *http.Request) {
		reply(w, st.rows(r.PathValue("table")), nil)
	}))
	mux.HandleFunc("POST /{db}/rows/{table}", auth(func(w http.ResponseWriter, r *http.Request) {
		var row json.RawMessage
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&row); err != nil {
			http.Error(w, "row: "+err.Error(), http.StatusBadRequest)
			return
		}
		reply(w, map[string]bool{"ok": true}, st.add(r.PathValue("table"), row))
	}))

	srv := &http.Server{Addr: ":" + port, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Printf("db: database %q ready to accept connections on :%s (data in %s)", dbName, port, dir)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("db: %v", err)
	}
}

func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// state is everything one database holds; it is rewritten as a whole on every
// change (fine for a stand-in).
type state struct {
	Counters map[string]int64             `json:"counters"`
	Tables   map[string][]json.RawMessage `json:"tables"`
}

type store struct {
	mu   sync.Mutex
	path string
	s    state
}

func open(path string) (*store, error) {
	st := &store{path: path, s: state{Counters: map[string]int64{}, Tables: map[string][]json.RawMessage{}}}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, st.save()
	}
	if err != nil {
		return nil, fmt.Errorf("read data: %w", err)
	}
	if err := json.Unmarshal(b, &st.s); err != nil {
		return nil, fmt.Errorf("read data %s: %w", path, err)
	}
	if st.s.Counters == nil {
		st.s.Counters = map[string]int64{}
	}
	if st.s.Tables == nil {
		st.s.Tables = map[string][]json.RawMessage{}
	}
	return st, nil
}

func (st *store) incr(name string) (int64, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.s.Counters[name]++
	if err := st.save(); err != nil {
		st.s.Counters[name]--
		return 0, err
	}
	return st.s.Counters[name], nil
}

func (st *store) add(table string, row json.RawMessage) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.s.Tables[table] = append(st.s.Tables[table], row)
	if err := st.save(); err != nil {
		st.s.Tables[table] = st.s.Tables[table][:len(st.s.Tables[table])-1]
		return err
	}
	return nil
}

func (st *store) rows(table string) []json.RawMessage {
	st.mu.Lock()
	defer st.mu.Unlock()
	rows := st.s.Tables[table]
	if rows == nil {
		return []json.RawMessage{}
	}
	return append([]json.RawMessage(nil), rows...)
}

// save writes the state to a temporary file and renames it over the old one,
// so a crash never leaves half a file.
func (st *store) save() error {
	b, err := json.Marshal(st.s)
	if err != nil {
		return err
	}
	tmp := st.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("save data: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("save data: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("save data: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save data: %w", err)
	}
	if err := os.Rename(tmp, st.path); err != nil {
		return fmt.Errorf("save data: %w", err)
	}
	return nil
}

func checkHealth(u string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, resp.Status)
		return 1
	}
	return 0
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
