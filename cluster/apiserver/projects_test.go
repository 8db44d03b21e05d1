package apiserver

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// TestProjectsHideSecrets: GET /v1/projects shows the names, targets and
// digests of secrets and configs, a sidecar's and the previous template's
// too, and never their content.
func TestProjectsHideSecrets(t *testing.T) {
	spec := func(secret string) api.ServiceSpec {
		return api.ServiceSpec{Project: "shop", Name: "web", Image: "x", Replicas: 1,
			Secrets: []api.SecretMount{{Name: "token", Target: "/run/secrets/token", Content: []byte(secret)}},
			Configs: []api.SecretMount{{Name: "conf", Target: "/conf", Content: []byte("config-" + secret)}},
			Sidecars: []api.ServiceSpec{{Project: "shop", Name: "side", Image: "y",
				Secrets: []api.SecretMount{{Name: "side", Target: "/run/secrets/side", Content: []byte("side-" + secret)}}}},
		}
	}
	st := state.New()
	for i, secret := range []string{"first-s3cret", "second-s3cret"} {
		if err := st.Update(uint64(i+1), func(tx *state.Txn) error {
			return tx.Apply(&state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{spec(secret)}}})
		}); err != nil {
			t.Fatal(err)
		}
	}
	c := serveTestAPI(t, st, nil)
	ps, err := c.Projects(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(ps)
	for _, secret := range []string{"first-s3cret", "second-s3cret", "config-first-s3cret", "config-second-s3cret", "side-first-s3cret", "side-second-s3cret"} {
		if strings.Contains(string(b), base64.StdEncoding.EncodeToString([]byte(secret))) {
			t.Fatalf("GET /v1/projects shows the content %q:\n%s", secret, b)
		}
	}
	if len(ps) != 1 || len(ps[0].Services) != 1 || ps[0].Services[0].Previous == nil {
		t.Fatalf("projects = %s, want shop/web with a previous template", b)
	}
	sum := sha256.Sum256([]byte("second-s3cret"))
	got := ps[0].Services[0].Template.Secrets[0]
	if got.Name != "token" || got.Target != "/run/secrets/token" || got.Digest != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("secret as listed = %+v, want its name, target and the content's digest", got)
	}
	// The state keeps the content: the agents mount it.
	if rc, _ := st.RC(api.RCKey("shop", "web")); string(rc.Template.Secrets[0].Content) != "second-s3cret" {
		t.Errorf("the stored template lost its secret: %+v", rc.Template.Secrets)
	}
}
