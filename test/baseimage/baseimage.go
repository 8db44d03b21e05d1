// Package baseimage builds local stand-ins for the public base images the
// `dev init` starters build FROM (golang, nginx, redis, node, python) out of
// this host's own programs, for tests on machines that cannot pull images.
//
// Each stand-in is a FROM scratch image holding busybox (sh and the usual
// applets, from the busybox-static package), the real program copied from
// the host with the shared libraries ldd lists, and what the program needs at
// run time, laid out where the official image has it. The starters'
// Dockerfiles take their base image as a build argument (GO_IMAGE, ...), so a
// test points the argument at a stand-in (see Env).
//
// Images are labelled with a hash of their recipe and of the host files they
// were made from; Ensure rebuilds one only when that hash changes, so it is
// cheap to call from every test.
package baseimage

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/devhq/dev/test/testimage"
)

// Labels every stand-in carries. Images built FROM a stand-in inherit them,
// which is how PruneDangling finds what such builds leave behind.
const (
	LabelStandIn = "dev-base.standin" // the stand-in's name: golang, nginx, ...
	LabelRecipe  = "dev-base.recipe"  // hash of the recipe and the host files
)

// recipeVersion changes the hash of every stand-in when the recipes change in
// a way the hash of their inputs does not show.
const recipeVersion = "1"

// Image is one stand-in.
type Image struct {
	// Name is the official image's name: golang, nginx, redis, node, python.
	Name string
	// Arg is the build argument the starters' Dockerfiles take it from.
	Arg string
	// Tag is the local tag of the stand-in.
	Tag string
	// recipe lays out the image's files and returns its Dockerfile (after
	// FROM scratch and COPY rootfs/ /).
	recipe func(r *rootfs) (string, error)
}

// Images are the stand-ins, by name.
var Images = map[string]Image{
	"golang": {Name: "golang", Arg: "GO_IMAGE", Tag: "dev-base/golang:local", recipe: golangRecipe},
	"nginx":  {Name: "nginx", Arg: "NGINX_IMAGE", Tag: "dev-base/nginx:local", recipe: nginxRecipe},
	"redis":  {Name: "redis", Arg: "REDIS_IMAGE", Tag: "dev-base/redis:local", recipe: redisRecipe},
	"node":   {Name: "node", Arg: "NODE_IMAGE", Tag: "dev-base/node:local", recipe: nodeRecipe},
	"python": {Name: "python", Arg: "PYTHON_IMAGE", Tag: "dev-base/python:local", recipe: pythonRecipe},
}

// Env returns ARG=TAG for the named stand-ins, to add to the environment of
// `dev up --build` (the starters' compose files pass these variables on as
// build arguments).
func Env(names ...string) ([]string, error) {
	var out []string
	for _, n := range names {
		img, ok := Images[n]
		if !ok {
			return nil, fmt.Errorf("no stand-in for %q", n)
		}
		out = append(out, img.Arg+"="+img.Tag)
	}
	return out, nil
}

var buildMu sync.Mutex // one stand-in build at a time per process

// Ensure builds the named stand-ins on the engine behind cli unless an image
// of the same recipe and host files is already tagged.
func Ensure(ctx context.Context, cli *client.Client, names ...string) error {
	for _, n := range names {
		img, ok := Images[n]
		if !ok {
			return fmt.Errorf("no stand-in for %q", n)
		}
		if err := ensure(ctx, cli, img); err != nil {
			return err
		}
	}
	return nil
}

func ensure(ctx context.Context, cli *client.Client, img Image) error {
	buildMu.Lock()
	defer buildMu.Unlock()
	r := newRootfs()
	df, err := img.recipe(r)
	if err == nil {
		err = r.err()
	}
	if err != nil {
		return fmt.Errorf("stand-in %s: %w", img.Name, err)
	}
	dockerfile := "FROM scratch\nCOPY rootfs/ /\n" + df
	sum, err := r.hash(dockerfile)
	if err != nil {
		return fmt.Errorf("stand-in %s: %w", img.Name, err)
	}
	old, err := cli.ImageInspect(ctx, img.Tag)
	if err == nil && old.Config != nil && old.Config.Labels[LabelRecipe] == sum {
		return nil
	}

	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(r.writeContext(pw, dockerfile)) }()
	defer pr.Close()
	labels := map[string]string{LabelStandIn: img.Name, LabelRecipe: sum}
	if err := testimage.BuildContext(ctx, cli, pr, img.Tag, nil, labels); err != nil {
		return fmt.Errorf("stand-in %s: %w", img.Name, err)
	}
	if old.ID != "" {
		// The image of an older recipe, unless something still uses it.
		cli.ImageRemove(ctx, old.ID, image.RemoveOptions{PruneChildren: true}) //nolint:errcheck // best effort
	}
	return nil
}

// PruneDangling removes the untagged images that builds FROM a stand-in leave
// behind (the build stage of a multi-stage Dockerfile): they inherit
// LabelStandIn. Nothing else is touched.
func PruneDangling(ctx context.Context, cli *client.Client) error {
	_, err := cli.ImagesPrune(ctx, filters.NewArgs(filters.Arg("dangling", "true"), filters.Arg("label", LabelStandIn)))
	return err
}

// The recipes.

const pathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// golangRecipe: the host's GOROOT as /usr/local/go, like golang:*-alpine,
// with the standard library the starters use compiled into the build cache
// (the real image compiles it on first use; here it saves every test build a
// minute on a small machine).
func golangRecipe(r *rootfs) (string, error) {
	goroot, err := hostGOROOT()
	if err != nil {
		return "", err
	}
	version, err := os.ReadFile(filepath.Join(goroot, "VERSION"))
	if err != nil {
		return "", fmt.Errorf("read go version: %w", err)
	}
	v, _, _ := strings.Cut(string(version), "\n")
	r.base()
	r.file("/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/certs/ca-certificates.crt", 0o644)
	r.tree("/usr/local/go", goroot, func(rel string, d fs.DirEntry) bool {
		// Not needed to build: the toolchain's own tests and their data.
		return d.IsDir() && (rel == "test" || rel == "api" || rel == "doc" || d.Name() == "testdata")
	})
	r.dir("/go/bin", 0o777)
	r.dir("/go/src", 0o777)
	r.dir("/root/.cache", 0o755)
	return fmt.Sprintf(`ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    GOLANG_VERSION=%s GOPATH=/go GOTOOLCHAIN=local CGO_ENABLED=0 HOME=/root GOCACHE=/root/.cache/go-build
WORKDIR /go
RUN go version && go build -trimpath net/http html/template encoding/json flag log os/signal crypto/subtle
`, strings.TrimPrefix(v, "go")), nil
}

func hostGOROOT() (string, error) {
	if out, err := exec.Command("go", "env", "GOROOT").Output(); err == nil {
		if d := strings.TrimSpace(string(out)); d != "" {
			return d, nil
		}
	}
	if fileExists("/usr/local/go/bin/go") {
		return "/usr/local/go", nil
	}
	return "", errors.New("no Go toolchain on this host (go env GOROOT; /usr/local/go)")
}

// nginxRecipe: Debian's nginx laid out as the official image: nginx.conf that
// includes conf.d/*.conf, default.conf serving /usr/share/nginx/html on port
// 80, logs to stdout and stderr, user nginx.
func nginxRecipe(r *rootfs) (string, error) {
	const bin = "/usr/sbin/nginx"
	if !fileExists(bin) {
		return "", errors.New("no " + bin + " on this host: apt-get install nginx-light")
	}
	r.base()
	r.binary("/usr/sbin/nginx", bin)
	r.file("/etc/nginx/mime.types", "/etc/nginx/mime.types", 0o644)
	r.data("/etc/nginx/nginx.conf", []byte(nginxConf), 0o644)
	r.data("/etc/nginx/conf.d/default.conf", []byte(nginxDefaultConf), 0o644)
	r.data("/usr/share/nginx/html/index.html", []byte(nginxIndex), 0o644)
	r.data("/usr/share/nginx/html/50x.html", []byte(nginx50x), 0o644)
	r.symlink("/var/log/nginx/access.log", "/dev/stdout")
	r.symlink("/var/log/nginx/error.log", "/dev/stderr")
	for _, d := range []string{"/var/lib/nginx/body", "/var/lib/nginx/proxy", "/var/lib/nginx/fastcgi",
		"/var/lib/nginx/uwsgi", "/var/lib/nginx/scgi", "/var/cache/nginx", "/var/lock", "/run"} {
		r.dir(d, 0o755)
	}
	r.symlink("/var/run", "/run")
	return `ENV ` + pathEnv + `
RUN chown -R nginx:nginx /var/lib/nginx /var/cache/nginx && nginx -t
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
`, nil
}

const nginxConf = `user  nginx;
worker_processes  auto;

error_log  /var/log/nginx/error.log notice;
pid        /var/run/nginx.pid;

events {
    worker_connections  1024;
}

http {
    include       /etc/nginx/mime.types;
    default_type  application/octet-stream;

    log_format  main  '$remote_addr - $remote_user [$time_local] "$request" '
                      '$status $body_bytes_sent "$http_referer" '
                      '"$http_user_agent" "$http_x_forwarded_for"';

    access_log  /var/log/nginx/access.log  main;

    sendfile        on;
    keepalive_timeout  65;

    include /etc/nginx/conf.d/*.conf;
}
`

const nginxDefaultConf = `server {
    listen       80;
    listen  [::]:80;
    server_name  localhost;

    location / {
        root   /usr/share/nginx/html;
        index  index.html index.htm;
    }

    error_page   500 502 503 504  /50x.html;
    location = /50x.html {
        root   /usr/share/nginx/html;
    }
}
`

const nginxIndex = `<!DOCTYPE html>
<html><head><title>Welcome to nginx!</title></head>
<body><h1>Welcome to nginx!</h1><p>(a local stand-in for the nginx image)</p></body></html>
`

const nginx50x = `<!DOCTYPE html>
<html><head><title>Error</title></head>
<body><h1>An error occurred.</h1></body></html>
`

// redisRecipe: Debian's redis-server and redis-cli in /usr/local/bin, data in
// /data, as the official image.
func redisRecipe(r *rootfs) (string, error) {
	server, err := filepath.EvalSymlinks("/usr/bin/redis-server") // a symlink to redis-check-rdb
	if err != nil {
		return "", errors.New("no /usr/bin/redis-server on this host: apt-get install redis-server")
	}
	if !fileExists("/usr/bin/redis-cli") {
		return "", errors.New("no /usr/bin/redis-cli on this host: apt-get install redis-tools")
	}
	r.base()
	// The name matters: the binary decides what it is from argv[0].
	r.binary("/usr/local/bin/redis-server", server)
	r.binary("/usr/local/bin/redis-cli", "/usr/bin/redis-cli")
	r.dir("/data", 0o755)
	return `ENV ` + pathEnv + `
WORKDIR /data
RUN redis-server --version && redis-cli --version
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "no"]
`, nil
}

// nodeRecipe: the host's node in /usr/local/bin (and npm when the host has it
// in /usr/lib/node_modules), user node, as the official image.
func nodeRecipe(r *rootfs) (string, error) {
	bin, err := filepath.EvalSymlinks("/usr/bin/node")
	if err != nil {
		return "", errors.New("no /usr/bin/node on this host: apt-get install nodejs")
	}
	r.base()
	r.binary("/usr/local/bin/node", bin)
	check := "node --version"
	if npm := "/usr/lib/node_modules/npm"; fileExists(filepath.Join(npm, "bin", "npm-cli.js")) {
		r.tree("/usr/local/lib/node_modules/npm", npm, nil)
		r.symlink("/usr/local/bin/npm", "../lib/node_modules/npm/bin/npm-cli.js")
		r.symlink("/usr/local/bin/npx", "../lib/node_modules/npm/bin/npx-cli.js")
		check += " && npm --version"
	}
	r.dir("/home/node", 0o755)
	return `ENV ` + pathEnv + `
RUN chown node:node /home/node && ` + check + `
CMD ["node"]
`, nil
}

// pythonRecipe: Debian's python3 (not a pyenv one) with its standard library
// and extension modules, python and python3 in /usr/local/bin as the official
// image. No pip: the python starter runs pip only when requirements.txt lists
// packages.
func pythonRecipe(r *rootfs) (string, error) {
	bin, err := filepath.EvalSymlinks("/usr/bin/python3")
	if err != nil {
		return "", errors.New("no /usr/bin/python3 on this host: apt-get install python3")
	}
	ver := strings.TrimPrefix(filepath.Base(bin), "python") // 3.11
	lib := "/usr/lib/python" + ver
	if !fileExists(filepath.Join(lib, "os.py")) {
		return "", fmt.Errorf("no standard library for %s in %s", bin, lib)
	}
	r.base()
	r.binary("/usr/bin/python"+ver, bin)
	r.tree(lib, lib, func(rel string, d fs.DirEntry) bool {
		if !d.IsDir() {
			return false
		}
		switch rel {
		case "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "site-packages", "dist-packages":
			return true
		}
		return strings.HasPrefix(rel, "config-") // headers and static library
	})
	// Extension modules load their libraries at import time.
	dynload, _ := filepath.Glob(filepath.Join(lib, "lib-dynload", "*.so"))
	for _, so := range dynload {
		r.libs(so, true)
	}
	for _, l := range []string{"/usr/bin/python3", "/usr/local/bin/python3", "/usr/local/bin/python"} {
		r.symlink(l, "/usr/bin/python"+ver)
	}
	return `ENV ` + pathEnv + ` LANG=C.UTF-8
RUN python3 -c "import http.server, json, socket, ssl, sqlite3, urllib.request; print('python ok')"
CMD ["python3"]
`, nil
}

// The root file system of a stand-in.

type entry struct {
	typ   byte   // tar.TypeReg, TypeDir, TypeSymlink
	src   string // regular file: the host file (read when the tar is written)
	data  []byte // regular file: inline content, when src is ""
	link  string // symlink target
	mode  int64
	size  int64
	mtime time.Time
}

type rootfs struct {
	entries map[string]*entry // by absolute path in the image
	errs    []error
	lddSeen map[string]bool
}

func newRootfs() *rootfs {
	return &rootfs{entries: map[string]*entry{}, lddSeen: map[string]bool{}}
}

func (r *rootfs) fail(err error) { r.errs = append(r.errs, err) }

func (r *rootfs) err() error { return errors.Join(r.errs...) }

// base adds busybox with its applets, /etc files and the usual folders.
func (r *rootfs) base() {
	const bb = "/bin/busybox"
	out, err := exec.Command(bb, "--list-full").Output()
	if err != nil {
		r.fail(fmt.Errorf("busybox (%s --list-full): %v; apt-get install busybox-static", bb, err))
		return
	}
	r.file(bb, bb, 0o755)
	for _, applet := range strings.Fields(string(out)) {
		if p := "/" + applet; p != bb {
			r.symlink(p, bb)
		}
	}
	r.data("/etc/passwd", []byte(`root:x:0:0:root:/root:/bin/sh
nginx:x:101:101:nginx:/nonexistent:/bin/false
node:x:1000:1000:node:/home/node:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
`), 0o644)
	r.data("/etc/group", []byte(`root:x:0:
nginx:x:101:nginx
node:x:1000:node
nogroup:x:65534:
`), 0o644)
	r.data("/etc/nsswitch.conf", []byte("passwd: files\ngroup: files\nhosts: files dns\n"), 0o644)
	r.dir("/tmp", 0o1777)
	r.dir("/root", 0o700)
	r.dir("/var/tmp", 0o1777)
}

func (r *rootfs) parents(p string) {
	for d := path.Dir(p); d != "/"; d = path.Dir(d) {
		if _, ok := r.entries[d]; !ok {
			r.entries[d] = &entry{typ: tar.TypeDir, mode: 0o755}
		}
	}
}

func (r *rootfs) dir(p string, mode int64) {
	r.parents(p)
	r.entries[p] = &entry{typ: tar.TypeDir, mode: mode}
}

func (r *rootfs) data(p string, b []byte, mode int64) {
	r.parents(p)
	r.entries[p] = &entry{typ: tar.TypeReg, data: b, mode: mode, size: int64(len(b))}
}

func (r *rootfs) symlink(p, target string) {
	r.parents(p)
	r.entries[p] = &entry{typ: tar.TypeSymlink, link: target, mode: 0o777}
}

// file adds the host file src (symlinks followed) at p; mode 0 keeps src's.
func (r *rootfs) file(p, src string, mode int64) {
	fi, err := os.Stat(src)
	if err != nil {
		r.fail(err)
		return
	}
	if !fi.Mode().IsRegular() {
		r.fail(fmt.Errorf("%s is not a regular file", src))
		return
	}
	if mode == 0 {
		mode = int64(fi.Mode().Perm())
	}
	r.parents(p)
	r.entries[p] = &entry{typ: tar.TypeReg, src: src, mode: mode, size: fi.Size(), mtime: fi.ModTime()}
}

// binary adds an executable and the shared libraries it needs.
func (r *rootfs) binary(p, src string) {
	r.file(p, src, 0o755)
	r.libs(src, false)
}

// libs adds the shared libraries ldd lists for src, each at the path ldd
// prints (the loader looks there). A library ldd cannot find is an error
// unless optional.
func (r *rootfs) libs(src string, optional bool) {
	if r.lddSeen[src] {
		return
	}
	r.lddSeen[src] = true
	out, err := exec.Command("ldd", src).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "not a dynamic executable") {
			return // static
		}
		r.fail(fmt.Errorf("ldd %s: %v: %s", src, err, out))
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		var lib string
		switch {
		case strings.Contains(line, "=> not found"):
			if !optional {
				r.fail(fmt.Errorf("ldd %s: %s", src, line))
			}
			continue
		case strings.Contains(line, "=> "):
			_, rest, _ := strings.Cut(line, "=> ")
			lib, _, _ = strings.Cut(rest, " (")
		case strings.HasPrefix(line, "/"):
			lib, _, _ = strings.Cut(line, " (")
		}
		if lib = strings.TrimSpace(lib); lib == "" || !strings.HasPrefix(lib, "/") {
			continue // linux-vdso.so.1
		}
		if _, ok := r.entries[lib]; !ok {
			r.file(lib, lib, 0o755)
		}
	}
}

// tree copies the host folder src to p. Symlinks that stay inside src are
// kept; others are replaced by what they point to (or left out when that does
// not exist). skip leaves out entries (rel is slash-separated, relative to
// src).
func (r *rootfs) tree(p, src string, skip func(rel string, d fs.DirEntry) bool) {
	err := filepath.WalkDir(src, func(hp string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, hp)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		dst := p
		if rel != "." {
			dst = path.Join(p, rel)
			if skip != nil && skip(rel, d) {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		switch {
		case d.IsDir():
			info, err := d.Info()
			if err != nil {
				return err
			}
			r.dir(dst, int64(info.Mode().Perm()))
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(hp)
			if err != nil {
				return err
			}
			resolved, err := filepath.EvalSymlinks(hp)
			if err != nil {
				return nil // dangling: leave it out
			}
			if !filepath.IsAbs(target) && isWithin(src, resolved) {
				r.symlink(dst, target)
			} else if fi, err := os.Stat(resolved); err == nil && fi.Mode().IsRegular() {
				r.file(dst, resolved, 0)
			}
		case d.Type().IsRegular():
			r.file(dst, hp, 0)
		}
		return nil
	})
	if err != nil {
		r.fail(fmt.Errorf("copy %s: %w", src, err))
	}
}

func isWithin(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

func (r *rootfs) sorted() []string {
	paths := make([]string, 0, len(r.entries))
	for p := range r.entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths
}

// hash identifies the image: the Dockerfile, every path, its kind, mode and
// link, and for host files their size and modification time (a package
// upgrade changes them), for inline files their content.
func (r *rootfs) hash(dockerfile string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "recipe %s\n%s\n", recipeVersion, dockerfile)
	for _, p := range r.sorted() {
		e := r.entries[p]
		fmt.Fprintf(h, "%s %c %o %q %d %d ", p, e.typ, e.mode, e.link, e.size, e.mtime.UnixNano())
		if e.src == "" {
			h.Write(e.data)
		}
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeContext writes the build context: the Dockerfile and rootfs/.
func (r *rootfs) writeContext(w io.Writer, dockerfile string) error {
	tw := tar.NewWriter(w)
	epoch := time.Unix(0, 0)
	if err := tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(dockerfile)), ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := io.WriteString(tw, dockerfile); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: "rootfs/", Mode: 0o755, ModTime: epoch, Typeflag: tar.TypeDir}); err != nil {
		return err
	}
	for _, p := range r.sorted() {
		e := r.entries[p]
		hdr := &tar.Header{Name: "rootfs" + p, Mode: e.mode, ModTime: epoch, Typeflag: e.typ}
		switch e.typ {
		case tar.TypeDir:
			hdr.Name += "/"
		case tar.TypeSymlink:
			hdr.Linkname = e.link
		case tar.TypeReg:
			hdr.Size = e.size
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
		if e.typ != tar.TypeReg {
			continue
		}
		if e.src == "" {
			if _, err := tw.Write(e.data); err != nil {
				return err
			}
			continue
		}
		if err := copyFile(tw, e.src, e.size); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	return tw.Close()
}

func copyFile(w io.Writer, src string, size int64) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, size))
	if err == nil && n != size {
		err = fmt.Errorf("%s changed size while being copied", src)
	}
	return err
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
