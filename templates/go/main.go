// Command web is the starter's web service: a page that counts its visits and
// keeps notes, both stored in the database service named by DATABASE_URL.
//
// Run it with `dev up --build`, then open http://localhost:8080/.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	health := flag.Bool("health", false, "check that the server answers (for the compose healthcheck) and exit")
	flag.Parse()
	port := envOr("PORT", "8080")
	if *health {
		os.Exit(checkHealth("http://127.0.0.1:" + port + "/healthz"))
	}

	db, err := newStore(os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatalf("web: %v", err)
	}
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		visits, err := db.incr(r.Context(), "visits")
		if err != nil {
			http.Error(w, "database: "+err.Error(), http.StatusBadGateway)
			return
		}
		var notes []note
		if err := db.list(r.Context(), "notes", &notes); err != nil {
			http.Error(w, "database: "+err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = page.Execute(w, map[string]any{"Visits": visits, "Host": host, "Notes": notes})
	})
	mux.HandleFunc("POST /notes", func(w http.ResponseWriter, r *http.Request) {
		text := strings.TrimSpace(r.FormValue("text"))
		if text == "" {
			http.Error(w, "a note needs some text (form field text)", http.StatusBadRequest)
			return
		}
		if err := db.add(r.Context(), "notes", note{Text: text, Created: time.Now().UTC()}); err != nil {
			http.Error(w, "database: "+err.Error(), http.StatusBadGateway)
			return
		}
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /api/notes", func(w http.ResponseWriter, r *http.Request) {
		var notes []note
		if err := db.list(r.Context(), "notes", &notes); err != nil {
			http.Error(w, "database: "+err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(notes)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})

	srv := &http.Server{Addr: ":" + port, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Printf("web: listening on :%s, database at %s", port, db.base.Host)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("web: %v", err)
	}
}

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Hello from dev</title></head>
<body>
<h1>Hello from dev!</h1>
<p>Visits: {{.Visits}} (served by {{.Host}})</p>
<h2>Notes</h2>
<ul>{{range .Notes}}<li>{{.Text}}</li>{{else}}<li>No notes yet.</li>{{end}}</ul>
<form method="post" action="/notes"><input name="text" placeholder="a note"> <button>Add</button></form>
</body></html>
`))

type note struct {
	Text    string    `json:"text"`
	Created time.Time `json:"created"`
}

// store talks to the database service. The starter's database is a small
// stand-in that speaks HTTP on the Postgres port (see db/README.md); with a
// real Postgres, replace this type with database/sql and a driver.
type store struct {
	base   *url.URL // http://db:5432/app
	user   string
	pass   string
	client *http.Client
}

// newStore reads a URL like postgres://app:secret@db:5432/app.
func newStore(dsn string) (*store, error) {
	if dsn == "" {
		return nil, errors.New("DATABASE_URL is not set (e.g. postgres://app:secret@db:5432/app)")
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	s := &store{
		base:   &url.URL{Scheme: "http", Host: u.Host, Path: "/" + strings.TrimPrefix(u.Path, "/")},
		user:   u.User.Username(),
		client: &http.Client{Timeout: 5 * time.Second},
	}
	s.pass, _ = u.User.Password()
	return s, nil
}

func (s *store) do(ctx context.Context, method, p string, body, out any) error {
	var in io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		in = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base.JoinPath(p).String(), in)
	if err != nil {
		return err
	}
	req.SetBasicAuth(s.user, s.pass)
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("%s %s: %s: %s", method, p, resp.Status, strings.TrimSpace(string(msg)))
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// incr adds one to a counter and returns its new value.
func (s *store) incr(ctx context.Context, counter string) (int64, error) {
	var v struct {
		Value int64 `json:"value"`
	}
	err := s.do(ctx, http.MethodPost, "counters/"+counter, nil, &v)
	return v.Value, err
}

// add appends a row to a table.
func (s *store) add(ctx context.Context, table string, row any) error {
	return s.do(ctx, http.MethodPost, "rows/"+table, row, nil)
}

// list reads a table's rows into out (a pointer to a slice).
func (s *store) list(ctx context.Context, table string, out any) error {
	return s.do(ctx, http.MethodGet, "rows/"+table, nil, out)
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
