package docker

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devhq/dev/cluster/api"
)

func TestTmpfsMountPointIn(t *testing.T) {
	const mountinfo = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
25 22 0:22 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,mode=755
90 22 0:50 / /var/lib/dev/secrets rw,nosuid,nodev,noexec shared:40 - tmpfs dev-secrets rw,size=65536k,mode=700
91 22 0:51 / /var/lib/dev\040x/secrets rw,nosuid,nodev,noexec - tmpfs dev-secrets rw,size=65536k,mode=700
97 22 0:56 / /dev/shm rw,nosuid,nodev - tmpfs shm rw
92 22 8:1 /srv /data/secrets rw,relatime shared:1 master:3 - ext4 /dev/sda1 rw
93 22 0:52 / /stacked rw - ext4 /dev/sdb1 rw
94 93 0:53 / /stacked rw - tmpfs dev-secrets rw
95 22 0:54 / /hidden rw - tmpfs tmpfs rw
96 95 0:55 / /hidden rw - ext4 /dev/sdc1 rw
`
	tests := []struct {
		name string
		dir  string
		want bool
	}{
		{name: "tmpfs mounted there", dir: "/var/lib/dev/secrets", want: true},
		{name: "octal escape in the mount point", dir: "/var/lib/dev x/secrets", want: true},
		{name: "under a tmpfs, not its mount point", dir: "/run/dev-agent/secrets"},
		{name: "a prefix of a mount point", dir: "/var/lib/dev"},
		{name: "a longer path than the mount point", dir: "/var/lib/dev/secrets/pod"},
		{name: "a bind mount of a disk", dir: "/data/secrets"},
		{name: "tmpfs on top of another mount", dir: "/stacked", want: true},
		{name: "another mount on top of a tmpfs", dir: "/hidden"},
		{name: "the root", dir: "/"},
		{name: "a tmpfs of another's (not dev's source)", dir: "/dev/shm"},
		{name: "a tmpfs named tmpfs", dir: "/run"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tmpfsMountPointIn([]byte(mountinfo), tt.dir); got != tt.want {
				t.Errorf("tmpfsMountPointIn(%q) = %v, want %v", tt.dir, got, tt.want)
			}
		})
	}
}

func TestUnescapeMountField(t *testing.T) {
	tests := []struct{ in, want string }{
		{`/plain`, `/plain`},
		{`/a\040b`, `/a b`},
		{`/tab\011nl\012`, "/tab\tnl\n"},
		{`/back\134slash`, `/back\slash`},
		{`/short\04`, `/short\04`},
		{`/not\999octal`, `/not\999octal`},
	}
	for _, tt := range tests {
		if got := unescapeMountField(tt.in); got != tt.want {
			t.Errorf("unescapeMountField(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// fakeSecretsFS stands for the kernel: it records mounts and unmounts
// without making any (the files land in the test's folder).
type fakeSecretsFS struct {
	under    bool  // the dir lies on a tmpfs it is not the mount point of
	mountErr error // what mount returns
	mounted  bool
	mounts   int
	unmounts int
}

func (f *fakeSecretsFS) onTmpfs(string) (bool, error)           { return f.under || f.mounted, nil }
func (f *fakeSecretsFS) isTmpfsMountPoint(string) (bool, error) { return f.mounted, nil }

func (f *fakeSecretsFS) mount(string) error {
	f.mounts++
	if f.mountErr != nil {
		return f.mountErr
	}
	f.mounted = true
	return nil
}

func (f *fakeSecretsFS) unmount(string) error {
	f.unmounts++
	f.mounted = false
	return nil
}

// TestSecretsTmpfs: the driver mounts a tmpfs at the secrets dir before
// the first file (unless it lies on a tmpfs, or SecretsTmpfs is off),
// writes on disk with one warning when the mount is refused, and unmounts
// its own mount once the last container's files are removed, never a dir
// that merely lies on a tmpfs.
func TestSecretsTmpfs(t *testing.T) {
	tests := []struct {
		name         string
		off          bool // SecretsTmpfs false
		under        bool
		mountErr     error
		wantMounts   int
		wantUnmounts int
		wantWarnings int
	}{
		{name: "mounted before the first file, unmounted after the last", wantMounts: 1, wantUnmounts: 1},
		{name: "SecretsTmpfs off: never mounted", off: true},
		{name: "already under a tmpfs: neither mounted nor unmounted", under: true},
		{name: "mount refused: on disk, said once", mountErr: errors.New("operation not permitted"), wantMounts: 1, wantWarnings: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			fake := &fakeSecretsFS{under: tt.under, mountErr: tt.mountErr}
			dir := filepath.Join(t.TempDir(), "secrets")
			d := New(nil, Options{SecretsDir: dir, SecretsTmpfs: !tt.off,
				Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
			d.fs = fake
			spec := &api.ServiceSpec{Secrets: []api.SecretMount{{Name: "token", Content: []byte("s3cret")}}}

			// Two containers with files, and one without, which changes nothing.
			for _, name := range []string{"p-web-1", "p-web-2"} {
				mounts, err := d.writeSecrets(name, spec)
				if err != nil || len(mounts) != 1 {
					t.Fatalf("writeSecrets(%s) = %v, %v", name, mounts, err)
				}
				if b, err := os.ReadFile(mounts[0].Source); err != nil || string(b) != "s3cret" {
					t.Fatalf("file %s: %q, %v", mounts[0].Source, b, err)
				}
				if !d.HasFiles(name) {
					t.Fatalf("HasFiles(%s) false after writeSecrets", name)
				}
			}
			if _, err := d.writeSecrets("p-db-1", &api.ServiceSpec{}); err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("secrets dir: %v, %v; want mode 0700", fi, err)
			}

			d.removeSecrets("p-web-1")
			if fake.unmounts != 0 {
				t.Errorf("unmounted while p-web-2 has files")
			}
			d.removeSecrets("p-web-2")
			d.removeSecrets("p-db-1")
			if d.HasFiles("p-web-2") {
				t.Errorf("HasFiles(p-web-2) true after removeSecrets")
			}
			if fake.mounts != tt.wantMounts || fake.unmounts != tt.wantUnmounts {
				t.Errorf("mounts %d, unmounts %d; want %d, %d", fake.mounts, fake.unmounts, tt.wantMounts, tt.wantUnmounts)
			}
			if n := strings.Count(logs.String(), "they stay on disk"); n != tt.wantWarnings {
				t.Errorf("%d warnings of files on disk, want %d:\n%s", n, tt.wantWarnings, logs.String())
			}

			// A pod with files again: mounted again (when it was unmounted).
			if _, err := d.writeSecrets("p-web-3", spec); err != nil {
				t.Fatal(err)
			}
			if tt.wantUnmounts > 0 && fake.mounts != tt.wantMounts+1 {
				t.Errorf("mounts %d after a new pod with files, want %d", fake.mounts, tt.wantMounts+1)
			}
		})
	}
}

// TestMoveTree: files written on disk before the tmpfs are moved into it,
// with their permissions, and none stays behind.
func TestMoveTree(t *testing.T) {
	from, to := t.TempDir(), t.TempDir()
	files := map[string]os.FileMode{
		"p-web-1/secrets/token":  0o444,
		"p-web-1/configs/app":    0o400,
		"p-web-1.side/secrets/x": 0o444,
	}
	for name, mode := range files {
		p := filepath.Join(from, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := writeFileMode(p, []byte(name), mode); err != nil {
			t.Fatal(err)
		}
	}
	root, err := os.OpenRoot(from)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if err := moveTree(root, to); err != nil {
		t.Fatalf("moveTree: %v", err)
	}
	for name, mode := range files {
		p := filepath.Join(to, name)
		b, err := os.ReadFile(p)
		if err != nil || string(b) != name {
			t.Errorf("%s: %q, %v", p, b, err)
			continue
		}
		if fi, _ := os.Stat(p); fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), mode)
		}
		if fi, _ := os.Stat(filepath.Dir(p)); fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, want 0700", filepath.Dir(p), fi.Mode().Perm())
		}
	}
	if left, _ := os.ReadDir(from); len(left) != 0 {
		t.Errorf("left on disk: %v", left)
	}
}
