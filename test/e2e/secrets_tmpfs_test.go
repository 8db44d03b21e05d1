package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"golang.org/x/sys/unix"
)

// TestSecretsOnTmpfs: an agent run as a process keeps the pods' secret
// files on a tmpfs it mounts at <data dir>/secrets (mode 0700, nosuid,
// nodev, noexec), where the pod reads them. After a reboot (simulated: the
// agent stopped, the pod's container stopped, the tmpfs unmounted) the
// agent makes the pod's container again, with its files on a new tmpfs,
// rather than start the old one, whose files are gone. `dev down` of the
// last pod with files unmounts the tmpfs.
//
// A data dir that already lies on a tmpfs (/tmp on some hosts) gets no
// mount of its own: the test then checks the files are on that tmpfs, and
// simulates the reboot by removing them.
func TestSecretsOnTmpfs(t *testing.T) {
	c := newCluster(t)
	const project = "e2etmpfs"
	secrets := filepath.Join(c.dir, "secrets")
	var st unix.Statfs_t
	if err := unix.Statfs(c.dir, &st); err != nil {
		t.Fatal(err)
	}
	dataDirOnTmpfs := st.Type == unix.TMPFS_MAGIC

	value := fmt.Sprintf("tmpfs-s3cret-%d", time.Now().UnixNano())
	secretFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(secretFile, []byte(value), 0o600); err != nil {
		t.Fatal(err)
	}
	compose := writeTemp(t, "name: "+project+"\nservices:\n  app:\n    image: "+testImage+"\n    command: [\"serve\"]\n"+
		"    secrets: [token]\nsecrets:\n  token:\n    file: "+secretFile+"\n")
	c.mustDev("up", "-d", "-f", compose)
	pod := wantRunning(c, project, "app", 1, 60*time.Second)[0]

	// (a) The secrets dir is a tmpfs of the agent's own (or lies on one).
	checkTmpfs := func(when string) {
		t.Helper()
		if err := unix.Statfs(secrets, &st); err != nil || st.Type != unix.TMPFS_MAGIC {
			t.Fatalf("%s: %s is not on a tmpfs (statfs type %#x, %v)", when, secrets, st.Type, err)
		}
		if dataDirOnTmpfs {
			return
		}
		ms := mountsAt(secrets)
		if len(ms) == 0 || ms[len(ms)-1].fstype != "tmpfs" {
			t.Fatalf("%s: %s is not a tmpfs mount point: %+v", when, secrets, ms)
		}
		m := ms[len(ms)-1]
		for _, opt := range []string{"nosuid", "nodev", "noexec"} {
			if !strings.Contains(","+m.options+",", ","+opt+",") {
				t.Errorf("%s: the tmpfs at %s is mounted %s, without %s", when, secrets, m.options, opt)
			}
		}
		if !strings.Contains(","+m.super+",", ",mode=700,") {
			t.Errorf("%s: the tmpfs at %s has options %s, want mode=700", when, secrets, m.super)
		}
	}
	checkTmpfs("after up")

	// (b) The file is there, and the pod reads it.
	file := filepath.Join(secrets, pod.Name, "secrets", "token")
	if b, err := os.ReadFile(file); err != nil || string(b) != value {
		t.Fatalf("secret file %s: %q, %v; want %q", file, b, err, value)
	}
	readInPod := func() error {
		out, err := c.dev("exec", "-p", project, "app", "/app", "cat", "/run/secrets/token")
		if err != nil || strings.TrimSpace(out) != value {
			return fmt.Errorf("dev exec cat /run/secrets/token: %v: %q", err, out)
		}
		return nil
	}
	if err := readInPod(); err != nil {
		t.Fatal(err)
	}

	// (c) A reboot: the agent and the pod's container stop, the tmpfs is gone.
	c.stopAgent()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.docker.ContainerStop(ctx, pod.Name, container.StopOptions{}); err != nil {
		t.Fatalf("docker stop %s: %v", pod.Name, err)
	}
	if dataDirOnTmpfs {
		if err := os.RemoveAll(filepath.Join(secrets, pod.Name)); err != nil {
			t.Fatal(err)
		}
	} else if err := unix.Unmount(secrets, unix.MNT_DETACH); err != nil {
		t.Fatalf("unmount %s: %v", secrets, err)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("secret file %s still there after the simulated reboot: %v", file, err)
	}
	c.startAgent()
	eventually(t, 60*time.Second, "the pod made again and running", func() error {
		rows := running(c.ps(project), "app")
		if len(rows) != 1 || rows[0].ContainerID == pod.ContainerID {
			return fmt.Errorf("running %+v, want a new container (was %s)", rows, pod.ContainerID)
		}
		return nil
	})
	eventually(t, 30*time.Second, "the secret read in the pod after the reboot", readInPod)
	checkTmpfs("after the reboot")

	// (d) dev down: the last pod with files gone, no mount is left.
	c.mustDev("down", "-p", project)
	eventually(t, 30*time.Second, "the tmpfs unmounted after dev down", func() error {
		if ms := mountsAt(secrets); len(ms) > 0 {
			return fmt.Errorf("mounted at %s: %+v", secrets, ms)
		}
		if _, err := os.Stat(filepath.Join(secrets, pod.Name)); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("the pod's files are left: %v", err)
		}
		return nil
	})
}
