// Package svc is the process scaffolding the hello example's services share:
// flags, a /healthz endpoint, a -health probe for healthchecks (there is no
// shell in a FROM scratch image), and graceful shutdown on SIGTERM.
package svc

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Run serves the handlers that register adds to mux (it gets the host name
// and returns a line describing the service for the start-up log) on -addr,
// default defaultAddr, until SIGTERM or SIGINT. With -health it probes a
// running instance instead and exits 0 when it is healthy.
func Run(name, defaultAddr string, register func(mux *http.ServeMux, host string) string) {
	addr := flag.String("addr", defaultAddr, "address to listen on")
	health := flag.Bool("health", false, "probe the local /healthz endpoint and exit 0 if it answers 200 (for healthchecks)")
	flag.Parse()
	if *health {
		os.Exit(probe(*addr))
	}

	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	detail := register(mux, host)

	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	log.Printf("%s %s listening on %s (%s)", name, host, *addr, detail)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("serve: %v", err)
	}
}

// probe does an HTTP GET on 127.0.0.1:<port of addr>/healthz and returns the
// exit code.
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
