// Package dashboard serves the agent's live web dashboard: nodes, services,
// pods placed on nodes, recent events and the logs of a chosen pod, rendered
// on the server with html/template and kept current by a little plain
// JavaScript that long-polls the watch API (blocking queries by index).
package dashboard

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/devhq/dev/cluster/api"
)

//go:embed web
var webFS embed.FS

// Source is what the dashboard reads: the cluster as this node sees it.
type Source interface {
	// Snapshot returns what the page shows.
	Snapshot() Snapshot
	// WaitIndex blocks until the state index passes after, or ctx ends, and
	// returns the index.
	WaitIndex(ctx context.Context, after uint64) uint64
	// Events returns the recorded events after index, oldest first.
	Events(after uint64) api.EventList
}

// Snapshot is the cluster at one state index.
type Snapshot struct {
	Index    uint64
	Node     string // the node serving the page
	Leader   string
	Nodes    []api.Node // Role and Pods filled in
	Services []api.ServiceInfo
	Pods     []api.Pod
}

// Options configures a dashboard.
type Options struct {
	// Listener is where Run serves (Listen opens it).
	Listener *Listener
	// API serves the API routes the page's script calls under /api/ (pod
	// logs, the watch API), without authentication of its own: requests
	// reach it only after the dashboard's, and only GETs of allowed paths.
	API http.Handler
	// Token is the login secret; random when empty.
	Token string
	Log   *slog.Logger
}

// Server is the dashboard HTTP server.
type Server struct {
	src  Source
	opts Options
	log  *slog.Logger
	page *pageTemplates

	renderCost atomic.Int64 // duration of the last /live render, ns
}

// cookieName holds the login token in the browser.
const cookieName = "dev_dashboard"

// NewToken returns a random login secret.
func NewToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make dashboard token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// New returns a dashboard server; it starts nothing.
func New(src Source, opts Options) (*Server, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Token == "" {
		tok, err := NewToken()
		if err != nil {
			return nil, err
		}
		opts.Token = tok
	}
	pt, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	return &Server{src: src, opts: opts, log: opts.Log.With("component", "dashboard"), page: pt}, nil
}

// Login is the address and login link of a dashboard at url (a Listener's)
// whose login secret is token: what `dev dashboard` prints.
func Login(url, token string) api.DashboardInfo {
	return api.DashboardInfo{Addr: strings.TrimPrefix(strings.TrimPrefix(url, "https://"), "http://"), URL: url + "/?token=" + token}
}

// Info is the dashboard's address and login link.
func (s *Server) Info() (api.DashboardInfo, error) {
	if s.opts.Listener == nil {
		return api.DashboardInfo{}, errors.New("the dashboard has no listener")
	}
	return Login(s.opts.Listener.URL, s.opts.Token), nil
}

// Run serves on Options.Listener until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	if s.opts.Listener == nil {
		return errors.New("run dashboard: no listener (dashboard.Listen opens one)")
	}
	// No write timeout: the page's live view is a blocking query.
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	s.log.Info("dashboard listening", "url", s.opts.Listener.URL)
	err := srv.Serve(s.opts.Listener)
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Listener is a dashboard's socket and its base URL. The node opens it
// before it builds the API, whose GET /v1/dashboard gives its login link.
type Listener struct {
	net.Listener
	URL string // http://127.0.0.1:7949, or https:// on other addresses
}

// Listen opens the dashboard's socket on addr: a loopback address serves
// plain HTTP, any other address HTTPS with tlsConf (required then: the
// node's certificate; a client certificate of the cluster, if the browser
// presents one, logs in like the token does).
func Listen(addr string, tlsConf *tls.Config) (*Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dashboard address %q: want host:port, like 127.0.0.1:7949", addr)
	}
	loopback := host == "localhost"
	if a, err := netip.ParseAddr(host); err == nil {
		loopback = a.IsLoopback()
	}
	if !loopback && tlsConf == nil {
		return nil, fmt.Errorf("dashboard address %s is not a loopback address and no TLS certificate is set", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen dashboard on %s (pick another --dashboard-addr): %w", addr, err)
	}
	scheme := "http"
	if !loopback {
		ln = tls.NewListener(ln, tlsConf)
		scheme = "https"
	}
	return &Listener{Listener: ln, URL: scheme + "://" + ln.Addr().String()}, nil
}

// Handler is the dashboard's HTTP handler (exported for tests).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(webFS, "web/static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.Handle("GET /{$}", s.authed(http.HandlerFunc(s.handlePage)))
	mux.Handle("GET /live", s.authed(http.HandlerFunc(s.handleLive)))
	mux.Handle("GET /api/", s.authed(http.HandlerFunc(s.handleAPI)))
	return securityHeaders(mux)
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// Scripts and styles come only from /static: no inline code runs.
		h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

// authed lets a request through with the login cookie or a verified client
// certificate of the cluster. A valid ?token= on the page sets the cookie
// and redirects to the same page without the token in the address bar.
func (s *Server) authed(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok := r.URL.Query().Get("token"); tok != "" && r.URL.Path == "/" {
			if !s.tokenOK(tok) {
				s.unauthorized(w, "this login link is not valid (the agent makes a new one each time it starts)")
				return
			}
			http.SetCookie(w, &http.Cookie{
				Name: cookieName, Value: s.opts.Token, Path: "/", HttpOnly: true,
				Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
			})
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		if c, err := r.Cookie(cookieName); err == nil && s.tokenOK(c.Value) {
			next.ServeHTTP(w, r)
			return
		}
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 { // verified in the handshake (pki.VerifiedLeaf)
			next.ServeHTTP(w, r)
			return
		}
		s.unauthorized(w, "log in with the link `dev dashboard` prints")
	})
}

func (s *Server) tokenOK(tok string) bool {
	return subtle.ConstantTimeCompare([]byte(tok), []byte(s.opts.Token)) == 1
}

func (s *Server) unauthorized(w http.ResponseWriter, why string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	fmt.Fprintf(w, "dev dashboard: %s.\nRun `dev dashboard` on a node of the cluster for a login link.\n", why)
}

// apiPaths are the API routes the page may call: reads only, and nothing
// that hands out secrets (tokens) or internal data (images).
var apiPaths = regexp.MustCompile(`^/v1/(status|nodes|services|pods|events|pods/[a-zA-Z0-9_.-]+/logs)$`)

func (s *Server) handleAPI(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimPrefix(r.URL.Path, "/api")
	if s.opts.API == nil || !apiPaths.MatchString(p) {
		http.Error(w, "not available from the dashboard", http.StatusNotFound)
		return
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = p
	r2.URL.RawPath = ""
	r2.RequestURI = ""
	s.opts.API.ServeHTTP(w, r2)
}
