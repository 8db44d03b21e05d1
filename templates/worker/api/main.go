// Command api is the starter's front service: it puts jobs on the queue (a
// Redis list) and shows what the workers made of them.
//
//	POST /jobs           enqueue a job (form field or body "text"): {"id": "1", "status": "queued"}
//	GET  /jobs/{id}      a job: its status ("queued", "done"), result and worker
//	GET  /               the latest finished jobs
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Keys shared with the worker.
const (
	queueKey = "jobs"      // list: LPUSH here, the workers BRPOP
	nextKey  = "jobs:next" // counter: job ids
	doneKey  = "jobs:done" // list: ids of finished jobs, latest first
)

func jobKey(id string) string { return "job:" + id }

func main() {
	health := flag.Bool("health", false, "check that the server answers (for the compose healthcheck) and exit")
	flag.Parse()
	port := envOr("PORT", "8080")
	if *health {
		os.Exit(checkHealth("http://127.0.0.1:" + port + "/healthz"))
	}
	q := newRedis(envOr("QUEUE_ADDR", "queue:6379"))

	mux := http.NewServeMux()
	mux.HandleFunc("POST /jobs", func(w http.ResponseWriter, r *http.Request) {
		text := strings.TrimSpace(r.FormValue("text"))
		if text == "" && r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			b, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
			text = strings.TrimSpace(string(b))
		}
		if text == "" {
			http.Error(w, "a job needs some text (form field or body)", http.StatusBadRequest)
			return
		}
		n, err := q.integer("INCR", nextKey)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		id := strconv.FormatInt(n, 10)
		job, _ := json.Marshal(map[string]string{"id": id, "text": text})
		if _, err := q.do(0, "HSET", jobKey(id), "text", text, "status", "queued",
			"queued_at", time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		if _, err := q.do(0, "LPUSH", queueKey, string(job)); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		log.Printf("api: queued job %s", id)
		writeJSON(w, http.StatusAccepted, map[string]string{"id": id, "status": "queued"})
	})
	mux.HandleFunc("GET /jobs/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		h, err := q.hash(jobKey(id))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		if len(h) == 0 {
			http.Error(w, "no job "+id, http.StatusNotFound)
			return
		}
		h["id"] = id
		writeJSON(w, http.StatusOK, h)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		ids, err := q.array(0, "LRANGE", doneKey, "0", "9")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "Queue at %s. Enqueue a job: curl -d text=hello http://localhost:8080/jobs\n\n", q.addr)
		if len(ids) == 0 {
			fmt.Fprintln(w, "No finished jobs yet.")
		}
		for _, id := range ids {
			h, err := q.hash(jobKey(id))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			fmt.Fprintf(w, "job %s: %q -> %q (by %s)\n", id, h["text"], h["result"], h["worker"])
		}
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
	log.Printf("api: listening on :%s, queue at %s", port, q.addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("api: %v", err)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
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
