package docker

import (
	"archive/tar"
	"bytes"
	"io"
	"path"
	"strings"
	"testing"
)

// FuzzRebase: whatever archive a client sends for `dev cp`, every entry
// rebase writes (and every hard link's target) lies below the prefix.
func FuzzRebase(f *testing.F) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range []*tar.Header{
		{Name: "a/b.txt", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg},
		{Name: "../../etc/passwd", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg},
		{Name: "link", Linkname: "../../../etc/shadow", Typeflag: tar.TypeLink},
	} {
		_ = tw.WriteHeader(h)
		if h.Size > 0 {
			_, _ = tw.Write([]byte("x"))
		}
	}
	_ = tw.Close()
	f.Add(b.Bytes(), "srv/data")
	f.Add([]byte("not a tar"), "")
	f.Fuzz(func(t *testing.T, archive []byte, dir string) {
		prefix := strings.TrimPrefix(path.Clean("/"+dir), "/")
		var out bytes.Buffer
		if err := rebase(bytes.NewReader(archive), &out, prefix); err != nil {
			return
		}
		below := func(name string) bool {
			clean := strings.TrimPrefix(path.Clean("/"+name), "/")
			return prefix == "" || clean == prefix || strings.HasPrefix(clean, prefix+"/")
		}
		tr := tar.NewReader(&out)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Fatalf("rebase wrote a broken archive: %v", err)
			}
			if !below(h.Name) || (h.Typeflag == tar.TypeLink && !below(h.Linkname)) {
				t.Fatalf("entry %q (link %q) is outside %q", h.Name, h.Linkname, prefix)
			}
		}
	})
}
