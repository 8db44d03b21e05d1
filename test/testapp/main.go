// Command testapp is a tiny static program used as the container of Docker-backed
// tests: an HTTP and UDP echo server with health toggles, plus exit, sleep and cat
// helpers. It uses only the standard library so it runs in a FROM scratch image.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"syscall"
	"time"
)

// unhealthyFile marks the server unhealthy while it exists.
const unhealthyFile = "/tmp/unhealthy"

// ignoreEnv, when set, makes every command ignore SIGTERM and SIGINT, to test
// that a stop escalates to SIGKILL after its grace period.
const ignoreEnv = "TESTAPP_IGNORE_SIGNALS"

func main() {
	if os.Getenv(ignoreEnv) != "" {
		signal.Ignore(syscall.SIGTERM, syscall.SIGINT)
	}
	args := os.Args[1:]
	if len(args) == 0 {
		args = []string{"serve"}
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve()
	case "health":
		err = health(args[1:])
	case "exit":
		err = exit(args[1:])
	case "sleep":
		err = sleep(args[1:])
	case "cat":
		err = cat(args[1:])
	default:
		err = fmt.Errorf("unknown command %q (want serve, health, exit, sleep or cat)", args[0])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testapp:", err)
		os.Exit(1)
	}
}

func port() string {
	if p := os.Getenv("PORT"); p != "" {
		return p
	}
	return "8080"
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "unknown"
	}
	return h
}

// terminated returns a context cancelled on SIGTERM or SIGINT (never when
// TESTAPP_IGNORE_SIGNALS is set).
func terminated() (context.Context, context.CancelFunc) {
	if os.Getenv(ignoreEnv) != "" {
		// A pending timer keeps the runtime from declaring a deadlock.
		return context.WithTimeout(context.Background(), 100*365*24*time.Hour)
	}
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
}

func serve() error {
	ctx, stop := terminated()
	defer stop()
	host := hostname()
	addr := ":" + port()

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, "hello from %s\n", host)
	})
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		// The pod's name and the source address it saw the request come from.
		from, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprintf(w, "%s %s\n", host, from)
	})
	mux.HandleFunc("/env", func(w http.ResponseWriter, r *http.Request) {
		env := os.Environ()
		sort.Strings(env)
		for _, kv := range env {
			fmt.Fprintln(w, kv)
		}
	})
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if _, err := os.Stat(unhealthyFile); err == nil {
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("/unhealthy", func(w http.ResponseWriter, r *http.Request) {
		if err := os.MkdirAll("/tmp", 0o1777); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if err := os.WriteFile(unhealthyFile, nil, 0o644); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("/healthy", func(w http.ResponseWriter, r *http.Request) {
		if err := os.Remove(unhealthyFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("/resolve", handleResolve)
	mux.HandleFunc("/fetch", handleFetch)
	mux.HandleFunc("/udp", handleUDP)
	mux.HandleFunc("/procs", func(w http.ResponseWriter, r *http.Request) {
		// The processes this container sees: "PID COMMAND" per line.
		dirs, err := os.ReadDir("/proc")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		for _, d := range dirs {
			if _, err := strconv.Atoi(d.Name()); err != nil {
				continue
			}
			if comm, err := os.ReadFile("/proc/" + d.Name() + "/comm"); err == nil {
				fmt.Fprintf(w, "%s %s", d.Name(), comm)
			}
		}
	})
	mux.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) {
		b, err := os.ReadFile(r.URL.Query().Get("path"))
		if err != nil {
			status := http.StatusInternalServerError
			if errors.Is(err, os.ErrNotExist) {
				status = http.StatusNotFound
			}
			http.Error(w, err.Error(), status)
			return
		}
		w.Write(b) //nolint:errcheck // best effort
	})

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen tcp %s: %w", addr, err)
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		ln.Close()
		return fmt.Errorf("listen udp %s: %w", addr, err)
	}
	go udpEcho(pc, host)

	// /grpc answers as a gRPC server does: the protocol it was spoken to
	// in, then a Grpc-Status trailer.
	mux.HandleFunc("/grpc", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		fmt.Fprintf(w, "%s %s\n", host, r.Proto)
		w.Header().Set("Grpc-Status", "0")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	// HTTP/1.1 and HTTP/2 without TLS (h2c, prior knowledge), as a gRPC
	// server speaks it.
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Printf("testapp %s listening on %s (tcp+udp)\n", host, addr)

	select {
	case <-ctx.Done():
		fmt.Println("testapp: terminating")
		pc.Close()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx) //nolint:errcheck // exiting anyway
		return nil
	case err := <-errc:
		pc.Close()
		return fmt.Errorf("serve http: %w", err)
	}
}

func udpEcho(pc net.PacketConn, host string) {
	buf := make([]byte, 64*1024)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		reply := append([]byte(host+": "), buf[:n]...)
		pc.WriteTo(reply, from) //nolint:errcheck // best effort
	}
}

func health(args []string) error {
	url := "http://127.0.0.1:" + port() + "/health"
	if len(args) > 0 {
		url = args[0]
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return fmt.Errorf("check health: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body) //nolint:errcheck // drain only
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("check health: %s", resp.Status)
	}
	return nil
}

func exit(args []string) error {
	if len(args) < 1 {
		return errors.New("usage: exit CODE [after-duration]")
	}
	code, err := strconv.Atoi(args[0])
	if err != nil {
		return fmt.Errorf("parse exit code %q: %w", args[0], err)
	}
	if len(args) > 1 {
		d, err := time.ParseDuration(args[1])
		if err != nil {
			return fmt.Errorf("parse duration %q: %w", args[1], err)
		}
		fmt.Printf("testapp: exiting with %d after %s\n", code, d)
		time.Sleep(d)
	}
	fmt.Printf("testapp: exit %d\n", code)
	os.Exit(code)
	return nil
}

func sleep(args []string) error {
	ctx, stop := terminated()
	defer stop()
	if len(args) > 0 {
		d, err := time.ParseDuration(args[0])
		if err != nil {
			return fmt.Errorf("parse duration %q: %w", args[0], err)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	fmt.Println("testapp: sleeping")
	<-ctx.Done()
	return nil
}

func cat(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: cat PATH")
	}
	f, err := os.Open(args[0])
	if err != nil {
		return fmt.Errorf("open %s: %w", args[0], err)
	}
	defer f.Close()
	if _, err := io.Copy(os.Stdout, f); err != nil {
		return fmt.Errorf("read %s: %w", args[0], err)
	}
	return nil
}

// handleResolve answers GET /resolve?name=N with the addresses N resolves to
// through the container's resolver, one per line, sorted.
func handleResolve(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, r.URL.Query().Get("name"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	sort.Strings(addrs)
	for _, a := range addrs {
		fmt.Fprintln(w, a)
	}
}

// handleFetch answers GET /fetch?url=U with the body of GET U made from
// inside the container.
func handleFetch(w http.ResponseWriter, r *http.Request) {
	c := http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(r.URL.Query().Get("url"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// handleUDP answers GET /udp?addr=A&msg=M with the reply to one UDP datagram
// M sent to A from inside the container.
func handleUDP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	conn, err := net.DialTimeout("udp", q.Get("addr"), 3*time.Second)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := conn.Write([]byte(q.Get("msg"))); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	buf := make([]byte, 2048)
	n, err := conn.Read(buf)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	_, _ = w.Write(buf[:n])
}
