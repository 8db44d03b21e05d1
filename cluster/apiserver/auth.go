package apiserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/devhq/dev/cluster/pki"
)

// Every API route has a role, checked from the caller's certificate:
//
//	public  anyone, certificate or not (only the join handshake)
//	read    read, admin and node certificates: look, never change
//	admin   admin certificates, and managers' node certificates (they
//	        relay users' requests)
//	user    admin certificates only, never a node's: the routes that
//	        hand out credentials (tokens, client bundles)
//	node    node certificates only: node-to-node routes
//
// The local unix socket is admin (its file mode guards it); the dashboard
// calls the API as read. A worker's node certificate (a node of a cluster
// whose secrets are sealed, admitted with the worker token) is the caller
// role worker: node routes and reads, no user's request, so that a stolen
// worker cannot change the cluster or reach a manager's secrets.
const (
	rolePublic = "public"
	roleRead   = pki.RoleRead
	roleAdmin  = pki.RoleAdmin
	roleUser   = "user"
	roleNode   = pki.RoleNode
	roleWorker = "worker" // a caller role, not a certificate's
)

// Caller is who sends a request, as the API's front established it.
type Caller struct {
	Name string // the certificate's name; "local" on the unix socket
	Role string // pki.RoleNode, pki.RoleAdmin or pki.RoleRead; "" for none
}

// String says who the caller is, for errors.
func (c Caller) String() string {
	if c.Role == "" {
		return "this caller has no certificate"
	}
	if c.Role == roleWorker {
		return fmt.Sprintf("%q is a worker node: users' changes are made on a manager", c.Name)
	}
	return fmt.Sprintf("%q has role %s", c.Name, c.Role)
}

type callerKey struct{}

// withCaller returns ctx carrying the caller.
func withCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// callerFrom returns the caller the front (authenticate, AsCaller) put in
// ctx.
func callerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// AsCaller serves next with every request made by c.
func AsCaller(next http.Handler, c Caller) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(withCaller(r.Context(), c)))
	})
}

// allows says whether a caller of role may use a route of role route.
func allows(route, role string) bool {
	switch route {
	case rolePublic:
		return true
	case roleRead:
		return role == roleRead || role == roleAdmin || role == roleNode || role == roleWorker
	case roleAdmin:
		return role == roleAdmin || role == roleNode
	case roleUser:
		return role == roleAdmin
	case roleNode:
		return role == roleNode || role == roleWorker
	}
	return false
}

// isNode reports whether role is a node certificate's.
func isNode(role string) bool { return role == roleNode || role == roleWorker }

// routeOpts are a route's checks besides its role.
type routeOpts struct {
	// rawBody: the body is not JSON (a tar archive), so no content type is
	// required of it.
	rawBody bool
}

// handle registers h for pattern behind the route's role and request checks.
func handle(mux *http.ServeMux, pattern, role string, h http.HandlerFunc, opts ...routeOpts) {
	var o routeOpts
	if len(opts) > 0 {
		o = opts[0]
	}
	mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := callerFrom(r.Context())
		if !allows(role, c.Role) {
			need := role + " role"
			if role == roleUser {
				need = "admin role, of a user's certificate (credentials are never handed to a node)"
			}
			writeError(w, &httpError{http.StatusForbidden, "forbidden",
				fmt.Errorf("%s %s needs the %s; %s", r.Method, r.URL.Path, need, c)})
			return
		}
		if changesState(r.Method) {
			if err := sameSite(r); err != nil {
				writeError(w, &httpError{http.StatusForbidden, "forbidden", err})
				return
			}
			if !o.rawBody {
				if err := jsonBody(r); err != nil {
					writeError(w, &httpError{http.StatusUnsupportedMediaType, "unsupported_media_type", err})
					return
				}
				if r.ContentLength > maxJSONBody {
					writeError(w, &httpError{http.StatusRequestEntityTooLarge, "too_large",
						fmt.Errorf("%s %s: a body of %d bytes is over the %d MiB limit; nothing was changed", r.Method, r.URL.Path, r.ContentLength, maxJSONBody>>20)})
					return
				}
				// A body without a length is cut at the limit: its decoding fails.
				r.Body = http.MaxBytesReader(w, r.Body, maxJSONBody)
				// And it must arrive in time: a client that trickles it
				// (slowloris) is cut off, where the server's own timeouts
				// cannot be set for streaming routes. The deadline goes once
				// the body has come: left on, it would end the request's
				// context when it passes, under a handler that takes longer
				// (dev leave drains the node first).
				if r.ContentLength != 0 {
					rc := http.NewResponseController(w)
					_ = rc.SetReadDeadline(time.Now().Add(jsonBodyTimeout))
					r.Body = &deadlineBody{ReadCloser: r.Body, clear: func() { _ = rc.SetReadDeadline(time.Time{}) }}
				}
			}
		}
		h(w, r)
	}))
}

// deadlineBody calls clear once its body has been read to the end.
type deadlineBody struct {
	io.ReadCloser
	clear func()
	once  sync.Once
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.once.Do(b.clear)
	}
	return n, err
}

// maxJSONBody bounds a JSON request body: a project apply is the largest,
// and a real one is a few hundred KiB.
const maxJSONBody = 8 << 20

// jsonBodyTimeout bounds how long a JSON request body may take to arrive.
var jsonBodyTimeout = 30 * time.Second

func changesState(method string) bool {
	return method != http.MethodGet && method != http.MethodHead && method != http.MethodOptions
}

// jsonBody refuses a request with a body that is not application/json: a
// browser can send text/plain cross-site without asking first.
func jsonBody(r *http.Request) error {
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return fmt.Errorf("%s %s takes an application/json body, not %q", r.Method, r.URL.Path, ct)
	}
	return nil
}

// sameSite refuses a state-changing request a browser sends on behalf of
// another site: a browser holding a client certificate must not be usable
// from a page elsewhere. Non-browser clients send neither header.
func sameSite(r *http.Request) error {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return fmt.Errorf("%s %s: cross-site request refused (Sec-Fetch-Site: %s)", r.Method, r.URL.Path, r.Header.Get("Sec-Fetch-Site"))
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return fmt.Errorf("%s %s: request from origin %q refused (this API is %s)", r.Method, r.URL.Path, o, r.Host)
		}
	}
	return nil
}

// authenticate puts the caller in the request's context: on TLS, the
// name and role of its verified cluster certificate (none: only the join
// route will take it); on the local unix socket (no TLS), admin, which the
// socket's file mode guards. Each route checks the role (auth.go). A
// certificate revoked since its connection's handshake (revoked may be
// nil) is refused on the connection's next request.
func authenticate(next http.Handler, revoked pki.RevokedFunc, isWorker func(node string) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := Caller{Name: "local", Role: roleAdmin}
		if r.TLS != nil {
			c = Caller{}
			if leaf := pki.VerifiedLeaf(r.TLS); leaf != nil {
				peer, err := pki.PeerOf(leaf)
				if err != nil {
					writeError(w, &httpError{http.StatusForbidden, "forbidden", err})
					return
				}
				if revoked.Of(peer, leaf) {
					writeError(w, &httpError{http.StatusUnauthorized, "unauthorized",
						fmt.Errorf("the certificate of %s %q is revoked", peer.Kind(), peer.Name)})
					return
				}
				c = Caller{Name: peer.Name, Role: peer.Role}
				if c.Role == roleNode && isWorker != nil && isWorker(c.Name) {
					c.Role = roleWorker
				}
			} else if r.URL.Path != "/v1/join" {
				writeError(w, &httpError{http.StatusUnauthorized, "unauthorized",
					errors.New("a client certificate of this cluster is required (dev token --client makes one)")})
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(withCaller(r.Context(), c)))
	})
}
