// Package testimage builds the images Docker-backed tests run: the static
// test/testapp program in a FROM scratch image, or any directory with a
// Dockerfile, on a local engine (there is no registry to pull from).
package testimage

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// LabelBinary is the image label carrying the SHA-256 of the testapp binary an
// image was built with; Build skips the engine build when it already matches.
const LabelBinary = "dev.testapp.sha256"

// Dockerfile is the Dockerfile of the testapp image.
const Dockerfile = `FROM scratch
COPY app /app
ENTRYPOINT ["/app"]
CMD ["serve"]
EXPOSE 8080/tcp 8080/udp
`

var (
	binOnce sync.Once
	binData []byte
	binSum  string
	binErr  error

	buildMu sync.Mutex // one engine build at a time per process
)

// Binary compiles test/testapp statically (once per process) and returns the
// executable's bytes.
func Binary() ([]byte, error) {
	binOnce.Do(func() { binData, binSum, binErr = compile() })
	return binData, binErr
}

func compile() ([]byte, string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return nil, "", errors.New("compile testapp: cannot locate testimage source")
	}
	src := filepath.Join(filepath.Dir(file), "..", "testapp")
	dir, err := os.MkdirTemp("", "testapp-")
	if err != nil {
		return nil, "", fmt.Errorf("compile testapp: %w", err)
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "app")
	gobin := "go"
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) { //nolint:staticcheck // the toolchain running the tests
		gobin = p
	}
	cmd := exec.Command(gobin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=-buildvcs=false")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, "", fmt.Errorf("compile testapp: %w\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, "", fmt.Errorf("compile testapp: %w", err)
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:]), nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Build compiles test/testapp (once per process) and builds a FROM scratch
// image with it as /app (ENTRYPOINT ["/app"], CMD ["serve"]) tagged tag on the
// engine behind cli. It does nothing when tag already holds an image of the
// same binary (image label LabelBinary), so it is cheap to call from every
// test and from several test processes.
func Build(ctx context.Context, cli *client.Client, tag string) error {
	bin, err := Binary()
	if err != nil {
		return err
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	// The label is the cache: a test may have removed the image meanwhile.
	old, err := cli.ImageInspect(ctx, tag)
	if err == nil && old.Config != nil && old.Config.Labels[LabelBinary] == binSum {
		return nil
	}
	files := map[string]File{
		"Dockerfile": {Data: []byte(Dockerfile), Mode: 0o644},
		"app":        {Data: bin, Mode: 0o755},
	}
	ctxTar, err := Tar(files)
	if err != nil {
		return fmt.Errorf("build image %s: %w", tag, err)
	}
	if err := BuildContext(ctx, cli, ctxTar, tag, map[string]*string{}, map[string]string{LabelBinary: binSum}); err != nil {
		return err
	}
	if old.ID != "" {
		// Drop the image of an older binary unless something still uses it.
		cli.ImageRemove(ctx, old.ID, image.RemoveOptions{}) //nolint:errcheck // best effort
	}
	return nil
}

// File is one entry of an in-memory build context.
type File struct {
	Data []byte
	Mode int64
}

// Tar packs files (slash-separated relative paths) into a tar stream usable
// as a build context.
func Tar(files map[string]File) (io.Reader, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Unix(0, 0)
	for name, f := range files {
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		hdr := &tar.Header{Name: name, Mode: mode, Size: int64(len(f.Data)), ModTime: now, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("write tar header %s: %w", name, err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, fmt.Errorf("write tar entry %s: %w", name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close tar: %w", err)
	}
	return &buf, nil
}

// BuildDir builds the directory dir (a build context with a Dockerfile at its
// root) into an image tagged tag, passing build args.
func BuildDir(ctx context.Context, cli *client.Client, dir, tag string, args map[string]string) error {
	files := map[string]File{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !d.Type().IsRegular() {
			return nil // build contexts of tests hold regular files only
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = File{Data: b, Mode: int64(info.Mode().Perm())}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read build context %s: %w", dir, err)
	}
	r, err := Tar(files)
	if err != nil {
		return fmt.Errorf("build image %s: %w", tag, err)
	}
	bargs := map[string]*string{}
	for k, v := range args {
		bargs[k] = &v
	}
	return BuildContext(ctx, cli, r, tag, bargs, nil)
}

// BuildContext builds buildCtx (a tar stream with a Dockerfile at its root)
// as tag with the given build arguments and labels. A failed step comes as
// an error with the build's output.
func BuildContext(ctx context.Context, cli *client.Client, buildCtx io.Reader, tag string, args map[string]*string, labels map[string]string) error {
	resp, err := cli.ImageBuild(ctx, buildCtx, build.ImageBuildOptions{
		Tags:        []string{tag},
		Dockerfile:  "Dockerfile",
		Remove:      true,
		ForceRemove: true,
		BuildArgs:   args,
		Labels:      labels,
	})
	if err != nil {
		return fmt.Errorf("build image %s: %w", tag, err)
	}
	defer resp.Body.Close()
	// The body is a stream of JSON messages; a failed step is reported in
	// one of them, not by the HTTP status.
	var out bytes.Buffer
	dec := json.NewDecoder(resp.Body)
	for {
		var msg struct {
			Stream      string `json:"stream"`
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("build image %s: read output: %w", tag, err)
		}
		out.WriteString(msg.Stream)
		if msg.Error != "" || msg.ErrorDetail != nil {
			text := msg.Error
			if text == "" {
				text = msg.ErrorDetail.Message
			}
			return fmt.Errorf("build image %s: %s\n%s", tag, text, out.String())
		}
	}
}

// Docker returns a client for the engine at DOCKER_HOST (client.FromEnv with
// API version negotiation) once it answers a ping, and closes it when the test
// ends. When no engine answers the test is skipped, unless CI is set: then it
// fails, since Docker-backed tests must never silently skip in CI.
func Docker(t testing.TB) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		noDocker(t, fmt.Errorf("create docker client: %w", err))
		return nil
	}
	t.Cleanup(func() { cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		noDocker(t, fmt.Errorf("ping docker: %w", err))
		return nil
	}
	// Negotiate now rather than on first use, outside any test deadline.
	cli.NegotiateAPIVersion(ctx)
	return cli
}

func noDocker(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("docker engine required in CI: %v", err)
	}
	t.Skipf("no docker engine (set DOCKER_HOST, or CI to fail instead): %v", err)
}
