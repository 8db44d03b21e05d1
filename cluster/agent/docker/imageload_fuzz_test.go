package docker

import (
	"archive/tar"
	"bytes"
	"errors"
	"testing"
)

// FuzzCheckImageArchive: whatever a peer sends, the archive check returns
// an ID only for exactly the image asked for, and never panics.
func FuzzCheckImageArchive(f *testing.F) {
	want := "sha256:" + string(bytes.Repeat([]byte("0f"), 32))
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	manifest := []byte(`[{"Config":"` + want[7:] + `.json","RepoTags":null,"Layers":[]}]`)
	_ = tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o644, Size: int64(len(manifest))})
	_, _ = tw.Write(manifest)
	_ = tw.Close()
	f.Add(b.Bytes())
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, data []byte) {
		id, err := checkImageArchive(bytes.NewReader(data), want)
		if err == nil && id != want {
			t.Fatalf("accepted image %s, asked for %s", id, want)
		}
		if err != nil && !errors.Is(err, ErrImageRefused) {
			t.Fatalf("error %v is not ErrImageRefused", err)
		}
	})
}
