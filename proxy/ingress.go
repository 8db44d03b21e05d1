package proxy

// The L7 ingress router: every node answers HTTP on one address (":80" by
// default) and routes each request by its Host and the longest path prefix
// to a ready pod of the service that declared the route (compose
// x-ingress), straight to the pod's IP across the overlay.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/netutil"

	"github.com/devhq/dev/cluster/api"
)

// Route is one HTTP route the ingress router serves.
type Route struct {
	Host string // lowercase, no port
	// Path is a prefix by whole segments ("/" takes everything).
	Path string
	// Service names the service for messages ("project/service").
	Service string
	// Port is the pods' port the service serves HTTP on.
	Port uint16
	// TLS is how the route is served over HTTPS (api.IngressTLSLocal:
	// with a certificate from CertSource).
	TLS string
	// H2C speaks HTTP/2 without TLS to the pods (api.IngressH2C: h2c and
	// gRPC routes), HTTP/1.1 otherwise.
	H2C bool
	// Backends are the service's ready pods.
	Backends []netip.Addr
}

// RouteSource gives the router its routes: Routes is read whenever Changed
// is closed (a new channel each time).
type RouteSource interface {
	Routes() []Route
	Changed() <-chan struct{}
}

// CertSource gives the router the certificate of a host it serves over
// HTTPS with tls: local.
type CertSource interface {
	Certificate(ctx context.Context, host string) (*tls.Certificate, error)
}

// The ACME challenges the router lets through to its ACMESource.
const (
	acmeTLS1          = "acme-tls/1"
	acmeChallengePath = "/.well-known/acme-challenge/"
)

// ACMESource serves the hosts of tls: auto routes: certificates from an
// ACME CA, and the CA's challenges.
type ACMESource interface {
	// GetCertificate answers a TLS client hello for a tls: auto host: its
	// certificate, or the CA's TLS-ALPN-01 challenge.
	GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error)
	// HandleHTTPChallenge answers the CA's HTTP-01 challenge request and
	// reports whether r was one.
	HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) bool
	// Has reports whether host has a certificate: plain HTTP is then
	// redirected to HTTPS.
	Has(host string) bool
}

// IngressConfig configures the ingress router.
type IngressConfig struct {
	// Listener is where HTTP is served.
	Listener net.Listener
	// TLSListener, when not nil, is where HTTPS is served, with
	// certificates from Certs.
	TLSListener net.Listener
	Certs       CertSource
	// ACME, when not nil, serves the hosts of tls: auto routes.
	ACME   ACMESource
	Source RouteSource
	// MaxConns caps the client connections held at once (default 4096),
	// MaxConnsPerSource those of one address (an IPv6 /64; default 256).
	MaxConns          int
	MaxConnsPerSource int
	// BodyIdle is how long a request body may go without a byte before
	// the request is cut off (default 30 s): a client that trickles its
	// body holds a connection, and a pod's, no longer.
	BodyIdle time.Duration
	// Observe, when set, is told of every request for a route once it is
	// answered (the node's metrics and access log).
	Observe func(a *Access)
	Log     *slog.Logger
}

// Access is a request the router answered for a route, as Observe is
// told of it.
type Access struct {
	Route  *Route
	Start  time.Time
	Client string // the client's address, without its port
	Method string
	Path   string
	Proto  string // the client's
	Status int
	Bytes  int64 // of the response body
	Took   time.Duration
	// Pod is the pod the request went to last (invalid when it went to
	// none: no ready pod, a redirect).
	Pod netip.Addr
}

// Ingress is the L7 router. New starts nothing; Run serves.
type Ingress struct {
	cfg       IngressConfig
	log       *slog.Logger
	table     atomic.Pointer[routeTable]
	next      atomic.Uint64 // round robin over a route's backends
	transport *http.Transport
	h2c       *http.Transport // HTTP/2 without TLS, for H2C routes
	proxy     *httputil.ReverseProxy
	// httpsPort is the port HTTPS is served on (0: none), where plain
	// HTTP requests of tls: local routes are redirected.
	httpsPort atomic.Int32
}

// routeTable is the routes by host, the longest path first, and each
// host's TLS mode (local if any route of it is, else auto if any is, else
// off), so that a handshake reads it without looking at every route.
type routeTable struct {
	routes map[string][]Route
	tls    map[string]string
}

// NewIngress returns a router over cfg.Source.
func NewIngress(cfg IngressConfig) *Ingress {
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 4096
	}
	if cfg.MaxConnsPerSource <= 0 {
		cfg.MaxConnsPerSource = 256
	}
	if cfg.BodyIdle <= 0 {
		cfg.BodyIdle = 30 * time.Second
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	in := &Ingress{cfg: cfg, log: log.With("component", "ingress")}
	in.setRoutes(nil)
	// Keep-alive pools to the pods; a dial gets 3 s (a pod that is gone
	// answers at once, one on a cut node does not).
	newTransport := func() *http.Transport {
		return &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:          1024,
			MaxIdleConnsPerHost:   64,
			MaxConnsPerHost:       512, // per pod
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
	}
	in.transport = newTransport()
	// h2c routes (gRPC): HTTP/2 with prior knowledge over plain TCP, a
	// connection to a pod carrying many streams; trailers pass through.
	in.h2c = newTransport()
	in.h2c.Protocols = new(http.Protocols)
	in.h2c.Protocols.SetUnencryptedHTTP2(true)
	in.h2c.HTTP2 = &http.HTTP2Config{PingTimeout: 15 * time.Second, SendPingTimeout: 30 * time.Second}
	in.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "pod" // the transport picks the pod
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport:     retryingTransport{in},
		FlushInterval: -1, // stream: server-sent events, long polls
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			name := r.Context().Value(routeKey{}).(*routed).route.Service // ServeHTTP put it there
			in.log.Debug("proxy error", "host", r.Host, "path", r.URL.Path, "service", name, "err", err)
			if errors.Is(err, context.Canceled) {
				return // the client went away
			}
			page(w, http.StatusBadGateway, "no pod of service %s answered", name)
		},
		ErrorLog: slog.NewLogLogger(in.log.Handler(), slog.LevelDebug),
	}
	return in
}

// Run serves until ctx ends, following the source's routes; it closes its
// listeners.
func (in *Ingress) Run(ctx context.Context) error {
	newServer := func() *http.Server {
		return &http.Server{
			Handler:           in,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			// HTTP/2: a connection carries at most 32 requests at once.
			HTTP2:       &http.HTTP2Config{MaxConcurrentStreams: 32},
			BaseContext: func(net.Listener) context.Context { return ctx }, // requests end with Run
			ErrorLog:    slog.NewLogLogger(in.log.Handler(), slog.LevelDebug),
		}
	}
	var servers []*http.Server
	errs := make(chan error, 2)
	serve := func(srv *http.Server, ln net.Listener, tlsOn bool) {
		servers = append(servers, srv)
		ln = netutil.LimitListener(limitPerSource(ln, in.cfg.MaxConnsPerSource), in.cfg.MaxConns)
		in.log.Info("ingress router listening", "addr", ln.Addr().String(), "tls", tlsOn)
		go func() {
			var err error
			if tlsOn {
				err = srv.ServeTLS(ln, "", "")
			} else {
				err = srv.Serve(ln)
			}
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			errs <- err
		}()
	}
	plain := newServer()
	// HTTP/2 with prior knowledge too (h2c): gRPC clients without TLS.
	plain.Protocols = new(http.Protocols)
	plain.Protocols.SetHTTP1(true)
	plain.Protocols.SetUnencryptedHTTP2(true)
	serve(plain, in.cfg.Listener, false)
	if in.cfg.TLSListener != nil {
		if in.cfg.Certs == nil {
			in.cfg.TLSListener.Close() // nothing to serve HTTPS with
		} else {
			srv := newServer()
			srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: in.certificate,
				// acme-tls/1: only an ACME CA's TLS-ALPN-01 check asks for it.
				NextProtos: []string{"h2", "http/1.1", acmeTLS1}}
			if a, ok := in.cfg.TLSListener.Addr().(*net.TCPAddr); ok {
				in.httpsPort.Store(int32(a.Port))
			}
			serve(srv, in.cfg.TLSListener, true)
		}
	}
	var err error
	for {
		changed := in.cfg.Source.Changed()
		in.setRoutes(in.cfg.Source.Routes())
		select {
		case <-ctx.Done():
		case err = <-errs:
			if err == nil {
				continue // cannot happen before Shutdown
			}
		case <-changed:
			continue
		}
		break
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, srv := range servers {
		if srv.Shutdown(sctx) != nil {
			_ = srv.Close() // streams and upgraded connections that outlast the grace
		}
	}
	in.transport.CloseIdleConnections()
	in.h2c.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("serve ingress: %w", err)
	}
	return nil
}

// certificate picks the certificate of the host a TLS client asks for
// (SNI): a route with tls: local gets one from the CertSource.
func (in *Ingress) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	host := strings.TrimSuffix(strings.ToLower(hello.ServerName), ".")
	switch in.table.Load().tls[host] {
	case "":
		return nil, fmt.Errorf("no route for %q", host)
	case api.IngressTLSLocal:
		ctx, cancel := context.WithTimeout(hello.Context(), 10*time.Second)
		defer cancel()
		return in.cfg.Certs.Certificate(ctx, host)
	case api.IngressTLSAuto:
		if in.cfg.ACME == nil {
			return nil, fmt.Errorf("no certificate for %s: this node serves no tls: auto route", host)
		}
		return in.cfg.ACME.GetCertificate(hello)
	}
	return nil, fmt.Errorf("%s is served over HTTP only (tls: off)", host)
}

// HostTLS is each host's TLS mode over routes: local if any route of the
// host is, else auto if any is, else off. The router serves and redirects
// by it, and the hosts it says are auto get ACME certificates.
func HostTLS(routes []Route) map[string]string {
	rank := map[string]int{api.IngressTLSOff: 1, api.IngressTLSAuto: 2, api.IngressTLSLocal: 3}
	out := map[string]string{}
	for _, r := range routes {
		if rank[r.TLS] > rank[out[r.Host]] {
			out[r.Host] = r.TLS
		}
	}
	return out
}

// setRoutes replaces the routes served.
func (in *Ingress) setRoutes(routes []Route) {
	t := routeTable{routes: map[string][]Route{}, tls: HostTLS(routes)}
	for _, r := range routes {
		t.routes[r.Host] = append(t.routes[r.Host], r)
	}
	for _, rs := range t.routes {
		sort.SliceStable(rs, func(i, j int) bool { return len(rs[i].Path) > len(rs[j].Path) })
	}
	in.table.Store(&t)
}

// routeKey carries a request's route to the transport, and back the pod
// the transport sent it to.
type routeKey struct{}

type routed struct {
	route *Route
	pod   netip.Addr // set by the transport, which runs in ServeHTTP's goroutine
}

// ServeHTTP routes one request.
func (in *Ingress) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host := strings.ToLower(r.Host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(host, ".")
	if !api.CleanRequestPath(r.URL.Path) {
		// "/api/../admin" (or %2e%2e, %2F) would be routed by its
		// prefix and resolved by the pod outside it.
		page(w, http.StatusBadRequest, "path %q has . or .. segments or an empty one", r.URL.Path)
		return
	}
	// The host's mode, not the route's: a challenge may come for a path
	// no route of the host takes.
	auto := in.cfg.ACME != nil && in.table.Load().tls[host] == api.IngressTLSAuto
	if auto && r.TLS == nil && strings.HasPrefix(r.URL.Path, acmeChallengePath) && in.cfg.ACME.HandleHTTPChallenge(w, r) {
		return
	}
	rt := in.lookup(host, r.URL.Path)
	if rt == nil {
		page(w, http.StatusNotFound, "no route for %s%s on this cluster's ingress", host, r.URL.Path)
		return
	}
	ro := &routed{route: rt}
	if in.cfg.Observe != nil {
		a := &Access{Route: rt, Start: time.Now(), Method: r.Method, Path: r.URL.Path, Proto: r.Proto}
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			a.Client = ap.Addr().Unmap().String()
		}
		rec := &codeRecorder{ResponseWriter: w, code: http.StatusOK}
		defer func() {
			a.Status, a.Bytes, a.Took, a.Pod = rec.code, rec.bytes, time.Since(a.Start), ro.pod
			in.cfg.Observe(a)
		}()
		w = rec
	}
	switch {
	case r.TLS == nil && in.httpsPort.Load() != 0 && (rt.TLS == api.IngressTLSLocal || auto && in.cfg.ACME.Has(host)):
		// Served over HTTPS: go there (308 keeps the method and body).
		target := "https://" + host
		if p := in.httpsPort.Load(); p != 443 {
			target = "https://" + net.JoinHostPort(host, strconv.Itoa(int(p)))
		}
		http.Redirect(w, r, target+r.URL.RequestURI(), http.StatusPermanentRedirect)
		return
	case len(rt.Backends) == 0:
		w.Header().Set("Retry-After", "5")
		page(w, http.StatusServiceUnavailable, "no ready pod of service %s: it is starting, failing its healthcheck, or scaled to 0 (dev ps)", rt.Service)
		return
	}
	if r.Body != nil && r.Body != http.NoBody && r.Header.Get("Upgrade") == "" {
		// A body that stops coming cuts the request off after BodyIdle.
		rc := http.NewResponseController(w)
		if rc.SetReadDeadline(time.Now().Add(in.cfg.BodyIdle)) == nil {
			r.Body = &idleBody{ReadCloser: r.Body, rc: rc, idle: in.cfg.BodyIdle}
		}
	}
	in.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), routeKey{}, ro)))
}

// codeRecorder keeps the status answered and counts the body's bytes;
// http.ResponseController finds the connection's flushes and hijacks
// (streams, upgrades) through Unwrap.
type codeRecorder struct {
	http.ResponseWriter
	code  int
	wrote bool
	bytes int64
}

func (c *codeRecorder) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.bytes += int64(n)
	return n, err
}

func (c *codeRecorder) WriteHeader(code int) {
	if !c.wrote && code >= 200 || code == http.StatusSwitchingProtocols {
		c.code, c.wrote = code, true
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *codeRecorder) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// idleBody extends a request's read deadline by idle at every read, and
// lifts it at the body's end.
type idleBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF:
		_ = b.rc.SetReadDeadline(time.Time{})
	case err == nil:
		_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	}
	// Another error (the deadline passed) keeps the deadline: the server
	// reads what is left of the body before it answers, and must not wait.
	return n, err
}

// lookup returns the route of host with the longest path prefix of path.
func (in *Ingress) lookup(host, path string) *Route {
	rs := in.table.Load().routes[host]
	for i := range rs {
		if api.MatchIngress(rs[i].Path, path) {
			return &rs[i]
		}
	}
	return nil
}

// page answers a short plain-text error page.
func page(w http.ResponseWriter, code int, format string, a ...any) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintf(w, "%d %s: %s\n", code, http.StatusText(code), fmt.Sprintf(format, a...))
}

// retryingTransport sends a request to one of its route's pods, in round
// robin, and to the next one (up to 3) when a pod cannot be reached at all
// (refused, unreachable): the request was not sent, so it is safe to send
// again, body included.
type retryingTransport struct{ in *Ingress }

func (t retryingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ro, _ := req.Context().Value(routeKey{}).(*routed)
	if ro == nil || len(ro.route.Backends) == 0 {
		return nil, errors.New("no route")
	}
	rt := ro.route
	var body *heldBody
	if req.Body != nil && req.Body != http.NoBody {
		body = &heldBody{ReadCloser: req.Body}
		req.Body = body
	}
	n := len(rt.Backends)
	first := int(t.in.next.Add(1) % uint64(n))
	var err error
	for i := range min(n, 3) {
		pod := rt.Backends[(first+i)%n]
		req.URL.Host = netip.AddrPortFrom(pod, rt.Port).String()
		ro.pod = pod
		var resp *http.Response
		tr := t.in.transport
		if rt.H2C {
			tr = t.in.h2c
		}
		resp, err = tr.RoundTrip(req)
		if err == nil {
			return resp, nil
		}
		if !dialFailed(err) || (body != nil && body.read.Load()) {
			return nil, err
		}
		t.in.log.Debug("pod unreachable: trying another", "service", rt.Service, "pod", pod, "err", err)
	}
	return nil, err
}

// dialFailed reports whether err is a failure to connect: nothing was sent.
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// heldBody is a request body that the transport's Close leaves open, so
// that another pod may get it after a failed dial; the server closes the
// request's body when the handler returns.
type heldBody struct {
	io.ReadCloser
	read atomic.Bool // something was read: it cannot be sent again
}

func (b *heldBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.read.Store(true)
	}
	return n, err
}

func (b *heldBody) Close() error { return nil }
