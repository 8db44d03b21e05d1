package docker

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPauseELF: the infra program is a valid static x86-64 executable that
// runs and keeps running (blocked in pause) until killed.
func TestPauseELF(t *testing.T) {
	bin := pauseELF()
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("not an ELF file: %v", err)
	}
	if f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC || len(f.Progs) != 1 || f.Progs[0].Type != elf.PT_LOAD {
		t.Fatalf("ELF %v %v with %d program headers, want one LOAD of an x86-64 executable", f.Machine, f.Type, len(f.Progs))
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("dynamically linked")
		}
	}
	if runtime.GOARCH != "amd64" || runtime.GOOS != "linux" {
		t.Skipf("runs only on linux/amd64 (this is %s/%s)", runtime.GOOS, runtime.GOARCH)
	}
	path := filepath.Join(t.TempDir(), "pause")
	if err := os.WriteFile(path, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() { _ = cmd.Process.Kill() }()
	// It blocks in pause(2): its state becomes S (sleeping), not R
	// (spinning) or gone.
	stat := filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "stat")
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(stat)
		if err != nil {
			t.Fatalf("the pause program ended: %v", err)
		}
		// pid (comm) STATE ...
		if fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:])); len(fields) > 0 && fields[0] == "S" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pause program is not sleeping: %s", b)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// SIGTERM ends it with status 0.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("after SIGTERM: %v, want exit status 0", err)
	}
}

// TestPauseReapsOrphans: as PID 1 of a PID namespace, the pause program
// reaps the orphans that land on it, as it must when a pod's containers
// share its PID namespace; without that they would stay zombies.
func TestPauseReapsOrphans(t *testing.T) {
	if runtime.GOARCH != "amd64" || runtime.GOOS != "linux" {
		t.Skipf("runs only on linux/amd64 (this is %s/%s)", runtime.GOOS, runtime.GOARCH)
	}
	if os.Geteuid() != 0 && os.Getenv("CI") == "" {
		t.Skip("needs root for a PID namespace")
	}
	path := filepath.Join(t.TempDir(), "pause")
	if err := os.WriteFile(path, pauseELF(), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	// A shell in its namespace starts a sleep and exits: the sleep is
	// orphaned onto pause, and ends a moment later.
	out, err := exec.Command("nsenter", "--target", strconv.Itoa(pid), "--pid", "--",
		"sh", "-c", "sleep 1 >/dev/null 2>&1 & exit 0").CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter: %v: %s", err, out)
	}
	seen := false
	deadline := time.Now().Add(10 * time.Second)
	for {
		kids := childrenOf(t, pid)
		if len(kids) > 0 {
			seen = true
		} else if seen {
			return // it was there and is gone: reaped
		}
		if time.Now().After(deadline) {
			if !seen {
				ps, _ := exec.Command("ps", "-eo", "pid,ppid,stat,comm").Output()
				t.Fatalf("no process was orphaned onto pause (%d):\n%s", pid, ps)
			}
			t.Fatalf("pause did not reap its orphans: %v", kids)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// childrenOf lists the processes whose parent is pid, with their state
// (an unreaped one stays as Z).
func childrenOf(t *testing.T, pid int) []string {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) STATE PPID ...
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, d.Name()+" "+f[0])
		}
	}
	return out
}
