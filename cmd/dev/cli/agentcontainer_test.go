package cli

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/docker/docker/api/types/container"
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
	cfg, host := b.config("dev-agent:abc", "/var/run/docker.sock", []string{"--fast=true"})
	if got := b.socket(); got != "/run/dev-agent/dev.sock" {
		t.Errorf("socket %s", got)
	}
	wantCmd := []string{"agent", "--data-dir", "/var/lib/dev", "--socket", "/run/dev-agent/dev.sock", "--socket-docker-group",
		"--secrets-dir", "/run/dev-agent/secrets", "--host-root", "/host", "--fast=true"}
	if !slices.Equal(cfg.Cmd, wantCmd) {
		t.Errorf("cmd %q, want %q", cfg.Cmd, wantCmd)
	}
	if host.Privileged || host.NetworkMode != "host" || host.PidMode != "host" || host.UTSMode != "host" {
		t.Errorf("namespaces: privileged %v network %s pid %s uts %s", host.Privileged, host.NetworkMode, host.PidMode, host.UTSMode)
	}
	if host.RestartPolicy.Name != container.RestartPolicyUnlessStopped {
		t.Errorf("restart policy %s", host.RestartPolicy.Name)
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
	wantBinds := []string{"/run/dev-agent:/run/dev-agent", "/var/run/docker.sock:/var/run/docker.sock", "/:/host"}
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
