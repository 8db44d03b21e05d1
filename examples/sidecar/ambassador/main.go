// Command ambassador is the sidecar of the sidecar example: it serves the
// pod's port (:8080) and forwards every request to the app on the pod's
// loopback (localhost:8081), adding a header and logging each request, as a
// TLS terminator or an auth proxy would. With -health it probes its own
// /healthz (the image has no shell). /ps lists the processes it sees: with
// `pid: service:app` those of the app's container too.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	health := flag.Bool("health", false, "probe http://127.0.0.1:8080/healthz and exit 0 if it answers 200")
	flag.Parse()
	if *health {
		os.Exit(probe())
	}
	app, _ := url.Parse("http://localhost:8081")
	proxy := httputil.NewSingleHostReverseProxy(app)
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /ps", func(w http.ResponseWriter, r *http.Request) {
		dirs, err := os.ReadDir("/proc")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		for _, d := range dirs {
			if _, err := strconv.Atoi(d.Name()); err == nil {
				if comm, err := os.ReadFile("/proc/" + d.Name() + "/comm"); err == nil {
					fmt.Fprintf(w, "%5s %s", d.Name(), comm)
				}
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		log.Printf("%s %s from %s", r.Method, r.URL.Path, r.RemoteAddr)
		w.Header().Set("X-Ambassador", host)
		proxy.ServeHTTP(w, r)
	})
	srv := &http.Server{Addr: ":8080", Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Printf("ambassador %s listening on %s, forwarding to %s", host, srv.Addr, app)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("serve: %v", err)
	}
}

func probe() int {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://127.0.0.1:8080/healthz")
	if err != nil {
		fmt.Fprintln(os.Stderr, "health:", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "health:", resp.Status)
		return 1
	}
	return 0
}
