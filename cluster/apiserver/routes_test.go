package apiserver

import (
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/devhq/dev/cluster/raftstore/rafttest"
	"github.com/devhq/dev/cluster/state"
)

// tableRE reads a route of the table in cluster/api/requests.go.
var tableRE = regexp.MustCompile(`(?m)^//\t(public|read|admin|user|node)\s+(GET|PUT|POST|DELETE)\s+(/v1/\S+)`)

// TestRouteTable: every route of the documented table is served with the
// role it says: a caller one role short gets 403 naming that role (so the
// route exists, with that method, and checks that role); and every route
// the code registers with a literal pattern is in the table.
func TestRouteTable(t *testing.T) {
	src, err := os.ReadFile("../api/requests.go")
	if err != nil {
		t.Fatal(err)
	}
	rows := tableRE.FindAllStringSubmatch(string(src), -1)
	if len(rows) < 20 {
		t.Fatalf("read %d routes from the table, want them all", len(rows))
	}
	h := New(rafttest.New(state.New()), nil, nil, Options{Node: "n1"}).Routes()
	short := map[string]Caller{ // one role below each
		roleRead:  {},
		roleAdmin: {Name: "ro", Role: roleRead},
		roleUser:  {Name: "n2", Role: roleNode}, // a node, even a manager, gets no credentials
		roleNode:  {Name: "ci", Role: roleAdmin},
	}
	documented := map[string]bool{}
	for _, r := range rows {
		role, method, path := r[1], r[2], r[3]
		path, _, _ = strings.Cut(path, "?")
		i := strings.LastIndex(path, "/")
		for _, leaf := range strings.Split(path[i+1:], "|") { // .../stop|start|restart
			p := path[:i+1] + leaf
			documented[method+" "+p] = true
			if role == rolePublic {
				continue
			}
			url := regexp.MustCompile(`\{[a-z]+\}`).ReplaceAllString(p, "x")
			req := httptest.NewRequest(method, url, nil)
			rec := httptest.NewRecorder()
			func() {
				// A handler reached means the role let the caller through:
				// it has no manager or agent here, and may panic.
				defer func() {
					if recover() != nil {
						rec.Code = http.StatusOK
					}
				}()
				AsCaller(h, short[role]).ServeHTTP(rec, req)
			}()
			want := "needs the " + role + " role"
			if role == roleUser {
				want = "needs the admin role, of a user's certificate"
			}
			if role == roleNode {
				want = "node-to-node route"
			}
			if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), want) {
				t.Errorf("%s %s (table: %s) as %+v: %d %s; want 403 %q", method, p, role, short[role], rec.Code, strings.TrimSpace(rec.Body.String()), want)
			}
		}
	}

	// Code -> table: the literal patterns of the handle calls.
	files, _ := os.ReadDir(".")
	handleRE := regexp.MustCompile(`handle\(mux, "(GET|PUT|POST|DELETE) (/v1/[^"]+)"`)
	for _, f := range files {
		if !strings.HasSuffix(f.Name(), ".go") || strings.HasSuffix(f.Name(), "_test.go") {
			continue
		}
		b, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range handleRE.FindAllStringSubmatch(string(b), -1) {
			if p := m[1] + " " + m[2]; !documented[p] && !strings.HasSuffix(m[2], "/") {
				t.Errorf("%s registers %s, which the table in cluster/api/requests.go does not list", f.Name(), p)
			}
		}
	}
}
