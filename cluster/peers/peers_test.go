package peers

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/devhq/dev/cluster/api"
)

type loader struct{ got []string }

func (l *loader) LoadImage(_ context.Context, r io.Reader, _ string) error {
	b, err := io.ReadAll(r)
	l.got = append(l.got, string(b))
	return err
}

// TestFetchImage: an image this node lacks comes from the first ready peer
// that has it; this node, nodes that are not ready and peers without the
// image are passed over.
func TestFetchImage(t *testing.T) {
	serve := func(has bool, asked *int) *httptest.Server {
		return httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			*asked++
			if r.URL.Path != PathImage || r.URL.Query().Get("ref") != "shop/web:1" {
				http.Error(w, `{"message":"wrong request"}`, http.StatusBadRequest)
				return
			}
			if !has {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusNotFound)
				_, _ = io.WriteString(w, `{"message":"image shop/web:1: no such image","code":"not_found"}`)
				return
			}
			_, _ = io.WriteString(w, "tar of shop/web:1")
		}))
	}
	var askedA, askedB, askedDown, askedSelf int
	a, b, down, self := serve(false, &askedA), serve(true, &askedB), serve(true, &askedDown), serve(true, &askedSelf)
	for _, s := range []*httptest.Server{a, b, down, self} {
		defer s.Close()
	}
	addr := func(s *httptest.Server) string { return s.Listener.Addr().String() }
	nodes := []api.Node{
		{Name: "me", Status: api.NodeReady, APIAddr: addr(self)},
		{Name: "a", Status: api.NodeReady, APIAddr: addr(a)},
		{Name: "down", Status: api.NodeDown, APIAddr: addr(down)},
		{Name: "b", Status: api.NodeReady, APIAddr: addr(b)},
	}
	l := &loader{}
	im := Images{Peers: New(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}), //nolint:gosec // test servers' own certificates
		Self: "me", Nodes: func() []api.Node { return nodes }, Loader: l}
	if err := im.FetchImage(t.Context(), "shop/web:1"); err != nil {
		t.Fatal(err)
	}
	if len(l.got) != 1 || l.got[0] != "tar of shop/web:1" {
		t.Errorf("loaded %q, want the archive of b", l.got)
	}
	if askedA != 1 || askedB != 1 || askedDown != 0 || askedSelf != 0 {
		t.Errorf("asked a=%d b=%d down=%d self=%d; want a and b once, never down or this node", askedA, askedB, askedDown, askedSelf)
	}

	nodes = nodes[:3] // only a, which lacks it
	err := im.FetchImage(t.Context(), "shop/web:1")
	if err == nil || !strings.Contains(err.Error(), "no such image") {
		t.Errorf("FetchImage with no peer holding it = %v, want the peers' answers", err)
	}
}
