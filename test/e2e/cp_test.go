package e2e

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// `dev cp`, as `docker compose cp`: both directions, by service (its first
// running pod, or --index N) or by pod name, docker cp's destination rules,
// and, across nodes, an archive through stdin and stdout.

// tarFile is a tar archive of one file.
func tarFile(t *testing.T, name, body string) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write([]byte(body))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// untarFiles reads the regular files of a tar archive.
func untarFiles(t *testing.T, archive string) map[string]string {
	t.Helper()
	files := map[string]string{}
	tr := tar.NewReader(strings.NewReader(archive))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		} else if err != nil {
			t.Fatalf("read archive: %v", err)
		}
		if h.Typeflag == tar.TypeReg {
			b, _ := io.ReadAll(tr)
			files[h.Name] = string(b)
		}
	}
}

// TestVerbCp: a local tree into a service's first pod under a new name, a
// file into pod 2 with --index, the tree back out (new name, then into an
// existing directory), a file to stdout as a tar archive; a missing path
// is an error that names it.
func TestVerbCp(t *testing.T) {
	c := newCluster(t)
	c.mustDev("up", "-d", "-f", fixture("basic"))
	local := t.TempDir()
	src := filepath.Join(local, "site")
	if err := os.MkdirAll(filepath.Join(src, "css"), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(src, "index.html"), []byte("<h1>cp</h1>"), 0o644)
	_ = os.WriteFile(filepath.Join(src, "css", "a.css"), []byte("a{}"), 0o644)
	_ = os.WriteFile(filepath.Join(local, "two.txt"), []byte("pod two"), 0o644)

	// Into the pods: /site does not exist there, so it is the tree (into
	// /data, a volume that exists, it would land as /data/site, as docker
	// cp does: checked below).
	c.mustDev("cp", "-p", "e2ebasic", src, "web:/site")
	c.mustDev("cp", "-p", "e2ebasic", src, "web:/data")
	if res := c.sess("", "", "exec", "-p", "e2ebasic", "e2ebasic-web-1", "/app", "cat", "/data/site/index.html"); res.code != 0 || strings.TrimSpace(res.stdout) != "<h1>cp</h1>" {
		t.Errorf("cat /data/site/index.html in web-1 after dev cp into an existing directory: %s", res)
	}
	c.mustDev("cp", "-p", "e2ebasic", "--index", "2", filepath.Join(local, "two.txt"), "web:/drop/two.txt")
	if res := c.sess("", "", "exec", "-p", "e2ebasic", "e2ebasic-web-1", "/app", "cat", "/site/css/a.css"); res.code != 0 || strings.TrimSpace(res.stdout) != "a{}" {
		t.Errorf("cat /site/css/a.css in web-1 after dev cp in: %s", res)
	}
	if res := c.sess("", "", "exec", "-p", "e2ebasic", "e2ebasic-web-2", "/app", "cat", "/drop/two.txt"); res.code != 0 || strings.TrimSpace(res.stdout) != "pod two" {
		t.Errorf("cat /drop/two.txt in web-2 after dev cp --index 2: %s", res)
	}

	// Out of them.
	out := filepath.Join(local, "back")
	c.mustDev("cp", "-p", "e2ebasic", "web:/site", out)
	for name, want := range map[string]string{"index.html": "<h1>cp</h1>", "css/a.css": "a{}"} {
		if b, err := os.ReadFile(filepath.Join(out, name)); err != nil || string(b) != want {
			t.Errorf("back/%s = %q, %v; want %q", name, b, err, want)
		}
	}
	c.mustDev("cp", "-p", "e2ebasic", "e2ebasic-web-2:/drop/two.txt", out)
	if b, err := os.ReadFile(filepath.Join(out, "two.txt")); err != nil || string(b) != "pod two" {
		t.Errorf("back/two.txt = %q, %v", b, err)
	}
	res := c.sess("", "", "cp", "-p", "e2ebasic", "web:/site/index.html", "-")
	if res.code != 0 {
		t.Fatalf("dev cp web:/site/index.html -: %s", res)
	}
	if files := untarFiles(t, res.stdout); files["index.html"] != "<h1>cp</h1>" {
		t.Errorf("dev cp to stdout: archive holds %v", files)
	}
	res = c.sess("", "", "cp", "-p", "e2ebasic", "web:/nope", filepath.Join(local, "x"))
	if res.code != 1 || !strings.Contains(res.stderr, "/nope") {
		t.Errorf("dev cp of a missing path: %s", res)
	}
}

// TestMultiHostCp: `dev cp` into and out of a pod on another node than
// the CLI's (the files routes relayed between nodes).
func TestMultiHostCp(t *testing.T) {
	hosts := newHosts(t, 2)
	ms := newReadyMultiCluster(t, hosts)
	file := writeTemp(t, `name: e2emcp
services:
  pinned:
    image: dev-testapp:e2e
    command: ["serve"]
    deploy:
      placement:
        constraints: ["node.hostname==h2"]
`)
	ms[0].mustDev(t, "up", "-d", "-f", file)
	eventually(t, 60*time.Second, "the pinned pod running on h2", func() error {
		if p := running(ms[0].pods(t, "e2emcp"), "pinned"); len(p) != 1 || p[0].Node != "h2" {
			return fmt.Errorf("pinned pods %+v", p)
		}
		return nil
	})
	res := ms[0].sess(t, tarFile(t, "across.txt", "from h1"), "cp", "-p", "e2emcp", "-", "pinned:/drop")
	if res.code != 0 {
		t.Fatalf("dev cp - pinned:/drop from h1: %s", res)
	}
	res = ms[0].sess(t, "", "cp", "-p", "e2emcp", "e2emcp-pinned-1:/drop/across.txt", "-")
	if res.code != 0 {
		t.Fatalf("dev cp e2emcp-pinned-1:/drop/across.txt - from h1: %s", res)
	}
	if files := untarFiles(t, res.stdout); files["across.txt"] != "from h1" {
		t.Errorf("copied back across nodes: archive holds %v", files)
	}
}
