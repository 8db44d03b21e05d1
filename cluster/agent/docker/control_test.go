package docker

import "testing"

// TestSplitImageRef: repository and tag as docker compose images shows
// them.
func TestSplitImageRef(t *testing.T) {
	id := "sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		name, ref, want   string
		tags              []string
		wantRepo, wantTag string
	}{
		{name: "name only", ref: "shop-web", wantRepo: "shop-web", wantTag: "latest"},
		{name: "tagged", ref: "nginx:1.27-alpine", wantRepo: "nginx", wantTag: "1.27-alpine"},
		{name: "hub prefix", ref: "docker.io/library/redis:7", wantRepo: "redis", wantTag: "7"},
		{name: "registry with port", ref: "localhost:5000/team/app", wantRepo: "localhost:5000/team/app", wantTag: "latest"},
		{name: "registry port and tag", ref: "localhost:5000/app:v2", wantRepo: "localhost:5000/app", wantTag: "v2"},
		{name: "digest only", ref: "nginx@sha256:abcd", wantRepo: "nginx", wantTag: "<none>"},
		{name: "tag and digest", ref: "nginx:1.27@sha256:abcd", wantRepo: "nginx", wantTag: "1.27"},
		{name: "image ID with a tag", ref: id, tags: []string{"shop-web:dev", "other:1"}, wantRepo: "shop-web", wantTag: "dev"},
		{name: "image ID: the deployed name first", ref: id, want: "other", tags: []string{"shop-web:dev", "other:latest"}, wantRepo: "other", wantTag: "latest"},
		{name: "image ID: deployed name no longer a tag", ref: id, want: "gone:1", tags: []string{"shop-web:dev"}, wantRepo: "shop-web", wantTag: "dev"},
		{name: "image ID untagged", ref: id, wantRepo: "<none>", wantTag: "<none>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo, tag := SplitImageRef(tt.ref, tt.want, tt.tags)
			if repo != tt.wantRepo || tag != tt.wantTag {
				t.Errorf("SplitImageRef(%q, %q) = %q, %q; want %q, %q", tt.ref, tt.tags, repo, tag, tt.wantRepo, tt.wantTag)
			}
		})
	}
}
