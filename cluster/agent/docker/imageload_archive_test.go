package docker

import (
	"archive/tar"
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestCheckImageArchive: the files an engine reads tags and images from
// are each checked, whatever their path's spelling, and may appear once.
func TestCheckImageArchive(t *testing.T) {
	id := "sha256:" + strings.Repeat("ab", 32)
	manifest := func(tags string) string {
		return `[{"Config":"` + id[7:] + `.json","RepoTags":` + tags + `,"Layers":[]}]`
	}
	archive := func(files ...[2]string) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, f := range files {
			_ = tw.WriteHeader(&tar.Header{Name: f[0], Mode: 0o644, Size: int64(len(f[1]))})
			_, _ = tw.Write([]byte(f[1]))
		}
		_ = tw.Close()
		return b.Bytes()
	}
	for _, tt := range []struct {
		name    string
		archive []byte
		want    string
		ok      bool
	}{
		{"by ID", archive([2]string{"manifest.json", manifest("null")}), id, true},
		{"by tag", archive([2]string{"manifest.json", manifest(`["shop/web:1"]`)}, [2]string{"repositories", `{"shop/web":{"1":"` + id[7:] + `"}}`}), "shop/web:1", true},
		{"a newer engine's index", archive([2]string{"manifest.json", manifest(`["web:1"]`)},
			[2]string{"index.json", `{"manifests":[{"annotations":{"io.containerd.image.name":"docker.io/library/web:1"}}]}`}), "web:1", true},
		{"a second manifest.json", archive([2]string{"manifest.json", manifest("null")}, [2]string{"manifest.json", manifest(`["nginx:latest"]`)}), id, false},
		{"/manifest.json after manifest.json", archive([2]string{"manifest.json", manifest("null")}, [2]string{"/manifest.json", manifest("null")}), id, false},
		{"repositories that would tag", archive([2]string{"manifest.json", manifest("null")}, [2]string{"repositories", `{"nginx":{"latest":"x"}}`}), id, false},
		{"an index that would tag", archive([2]string{"manifest.json", manifest(`["web:1"]`)},
			[2]string{"./index.json", `{"manifests":[{"annotations":{"io.containerd.image.name":"nginx:latest"}}]}`}), "web:1", false},
		{"no tag for a tag asked for", archive([2]string{"manifest.json", manifest("null")}), "web:1", false},
	} {
		got, err := checkImageArchive(bytes.NewReader(tt.archive), tt.want)
		if tt.ok && (err != nil || got != id) {
			t.Errorf("%s: %s, %v; want %s", tt.name, got, err, id)
		}
		if !tt.ok && !errors.Is(err, ErrImageRefused) {
			t.Errorf("%s: %s, %v; want refused", tt.name, got, err)
		}
	}
}
