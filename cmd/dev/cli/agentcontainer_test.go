package cli

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// elfFile makes a minimal 64-bit little-endian ELF executable for machine,
// with a PT_INTERP program header when dynamic.
func elfFile(machine uint16, dynamic bool) []byte {
	const ehsize, phsize = 64, 56
	b := make([]byte, ehsize+phsize)
	copy(b, "\x7fELF")
	b[4], b[5], b[6] = 2, 1, 1 // 64-bit, little endian, version 1
	le := binary.LittleEndian
	le.PutUint16(b[16:], 2) // ET_EXEC
	le.PutUint16(b[18:], machine)
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[32:], ehsize) // program headers right after
	le.PutUint16(b[52:], ehsize)
	le.PutUint16(b[54:], phsize)
	le.PutUint16(b[56:], 1)
	ptype := uint32(1) // PT_LOAD
	if dynamic {
		ptype = 3 // PT_INTERP
	}
	le.PutUint32(b[ehsize:], ptype)
	return b
}

func TestCheckAgentBinary(t *testing.T) {
	const x86, arm = 62, 183
	tests := []struct {
		name    string
		bin     []byte
		os      string
		arch    string
		wantErr string
	}{
		{name: "static amd64", bin: elfFile(x86, false), os: "linux", arch: "x86_64"},
		{name: "static arm64", bin: elfFile(arm, false), os: "linux", arch: "aarch64"},
		{name: "dynamic", bin: elfFile(x86, true), os: "linux", arch: "x86_64", wantErr: "CGO_ENABLED=0"},
		{name: "other architecture", bin: elfFile(arm, false), os: "linux", arch: "x86_64", wantErr: "--agent-binary"},
		{name: "not ELF (a macOS build)", bin: []byte("\xcf\xfa\xed\xfe rest"), os: "linux", arch: "x86_64", wantErr: "GOOS=linux"},
		{name: "windows engine", bin: elfFile(x86, false), os: "windows", arch: "x86_64", wantErr: "Linux engine"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkAgentBinary(tt.bin, tt.os, tt.arch)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("err %v, want none", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestAgentContainerConfig(t *testing.T) {
	b := agentBox{name: "dev-agent"}
	cfg, host := b.config(agentSpec{image: "dev-agent:abc", engineSocket: "/run/docker.sock",
		args: []string{"--fast=true"}, env: []string{"DEV_TOKEN=tok-123"}})
	if got := b.socket(); got != "/run/dev-agent/dev.sock" {
		t.Errorf("socket %s", got)
	}
	wantCmd := []string{"agent", "--data-dir", "/var/lib/dev", "--socket", "/run/dev-agent/dev.sock", "--socket-docker-group",
		"--secrets-dir", "/run/dev-agent/secrets", "--secrets-tmpfs=false", "--host-root", "/host", "--fast=true"}
	if !slices.Equal(cfg.Cmd, wantCmd) {
		t.Errorf("cmd %q, want %q", cfg.Cmd, wantCmd)
	}
	if host.Privileged || host.NetworkMode != "host" || host.PidMode != "host" || host.UTSMode != "host" {
		t.Errorf("namespaces: privileged %v network %s pid %s uts %s", host.Privileged, host.NetworkMode, host.PidMode, host.UTSMode)
	}
	// No restart until it answered once (launch sets unless-stopped then).
	if host.RestartPolicy.Name != container.RestartPolicyDisabled {
		t.Errorf("restart policy %s, want none at creation", host.RestartPolicy.Name)
	}
	if slices.ContainsFunc(cfg.Cmd, func(a string) bool { return strings.Contains(a, "tok-123") }) || !slices.Contains(cfg.Env, "DEV_TOKEN=tok-123") {
		t.Errorf("cmd %q, env %q: want the token in the environment only", cfg.Cmd, cfg.Env)
	}
	// An upgrade makes the same agent from the labels.
	got := specOf(&container.InspectResponse{Config: cfg}, "dev-agent:def")
	if got.image != "dev-agent:def" || got.engineSocket != "/run/docker.sock" || !slices.Equal(got.args, []string{"--fast=true"}) {
		t.Errorf("spec of the container %+v", got)
	}
	for _, c := range []string{"NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE", "SYS_MODULE"} {
		if !slices.Contains(host.CapAdd, c) {
			t.Errorf("capabilities %v lack %s", host.CapAdd, c)
		}
	}
	// An empty (not nil) list overrides the Engine's read-only /proc/sys.
	if host.ReadonlyPaths == nil || len(host.ReadonlyPaths) != 0 {
		t.Errorf("readonly paths %v, want an empty list", host.ReadonlyPaths)
	}
	wantBinds := []string{"/run/dev-agent:/run/dev-agent", "/run/docker.sock:/var/run/docker.sock", "/:/host:rslave"}
	if !slices.Equal(host.Binds, wantBinds) {
		t.Errorf("binds %q, want %q", host.Binds, wantBinds)
	}
	if len(host.Mounts) != 1 || host.Mounts[0].Source != "dev-agent-data" || host.Mounts[0].Target != "/var/lib/dev" {
		t.Errorf("mounts %+v, want the volume dev-agent-data at /var/lib/dev", host.Mounts)
	}
}

func TestEngineError(t *testing.T) {
	tests := []struct {
		name string
		host string
		err  error
		want string
	}{
		{"not in the docker group", "unix:///var/run/docker.sock",
			fmt.Errorf("dial unix /var/run/docker.sock: %w", syscall.EACCES), "usermod -aG docker"},
		{"no engine", "unix:///var/run/docker.sock",
			fmt.Errorf("dial unix /var/run/docker.sock: %w", syscall.ENOENT), "no Docker Engine answers"},
		{"refused", "tcp://10.0.0.1:2375", fmt.Errorf("dial tcp: %w", syscall.ECONNREFUSED), "no Docker Engine answers"},
		{"other", "unix:///var/run/docker.sock", errors.New("boom"), "reach the Docker Engine at unix:///var/run/docker.sock: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := engineError(tt.host, tt.err).Error(); !strings.Contains(got, tt.want) {
				t.Errorf("%q, want it to contain %q", got, tt.want)
			}
		})
	}
}

func TestLastErrorLine(t *testing.T) {
	tests := []struct{ name, log, want string }{
		{"error line", "started\nError: listen on :7948: address in use\nbye", "listen on :7948: address in use"},
		{"last line", "a\nb\n", "b"},
		{"empty", "", "no log"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := lastErrorLine(tt.log); got != tt.want {
				t.Errorf("%q, want %q", got, tt.want)
			}
		})
	}
}

// TestExecConn: an exec session's multiplexed output read as a connection:
// stdout is the stream, stderr becomes the error at its end, Close unblocks
// a pending Read.
func TestExecConn(t *testing.T) {
	t.Run("stdout then EOF", func(t *testing.T) {
		c, engine := execPair()
		go func() {
			_, _ = stdcopy.NewStdWriter(engine, stdcopy.Stdout).Write([]byte("HTTP/1.1 200 OK\r\n"))
			engine.Close()
		}()
		b, err := io.ReadAll(c)
		if err != nil || string(b) != "HTTP/1.1 200 OK\r\n" {
			t.Fatalf("read %q, %v", b, err)
		}
	})
	t.Run("stderr is the error", func(t *testing.T) {
		c, engine := execPair()
		go func() {
			_, _ = stdcopy.NewStdWriter(engine, stdcopy.Stderr).Write([]byte("reach the agent: no such file"))
			engine.Close()
		}()
		_, err := io.ReadAll(c)
		if err == nil || !strings.Contains(err.Error(), "reach the agent") {
			t.Fatalf("err %v, want the session's stderr", err)
		}
	})
	t.Run("writes reach stdin", func(t *testing.T) {
		c, engine := execPair()
		go func() { _, _ = c.Write([]byte("GET / HTTP/1.1\r\n")) }()
		buf := make([]byte, 64)
		n, err := engine.Read(buf)
		if err != nil || string(buf[:n]) != "GET / HTTP/1.1\r\n" {
			t.Fatalf("stdin got %q, %v", buf[:n], err)
		}
		c.Close()
	})
	t.Run("close unblocks a read", func(t *testing.T) {
		c, _ := execPair()
		done := make(chan error, 1)
		go func() { _, err := c.Read(make([]byte, 1)); done <- err }()
		c.Close()
		if err := <-done; err == nil {
			t.Fatal("read after close: no error")
		}
	})
}

// execPair is an execConn over an in-memory connection and the Engine's end.
func execPair() (*execConn, net.Conn) {
	client, engine := net.Pipe()
	return newExecConn(types.NewHijackedResponse(client, "")), engine
}
