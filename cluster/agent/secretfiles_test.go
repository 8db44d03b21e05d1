package agent_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/devhq/dev/cluster/agent"
	"github.com/devhq/dev/cluster/api"
)

// TestAgentRecreatesContainerWhoseFilesAreGone: a host reboot empties the
// tmpfs of secret and config files, and the agent then starts the pods'
// exited containers again; one that bind-mounts files that are gone would
// not start, so the agent removes it and makes it again, which writes its
// files again. With its files present, the same container is started
// again. Sidecars likewise.
func TestAgentRecreatesContainerWhoseFilesAreGone(t *testing.T) {
	tests := []struct {
		name         string
		sidecar      bool // the secret is the sidecar's, and the sidecar exits
		dropFiles    bool
		wantRecreate bool
	}{
		{name: "files gone: recreated", dropFiles: true, wantRecreate: true},
		{name: "files present: started again"},
		{name: "sidecar, files gone: recreated", sidecar: true, dropFiles: true, wantRecreate: true},
		{name: "sidecar, files present: started again", sidecar: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.cl.files = map[string][]byte{"sha256:aa": []byte("s3cret")}
			token := []api.SecretMount{{Name: "token", Target: "/run/secrets/token", Sealed: []byte{1, 2, 3}, Digest: "sha256:aa"}}
			s := spec("web", "")
			if tt.sidecar {
				side := spec("logs", api.RestartAlways)
				side.Secrets = token
				s.Sidecars = []api.ServiceSpec{side}
			} else {
				s.Secrets = token
			}
			name := e.deploy(s, 1, node)
			target := name // the container whose files go
			if tt.sidecar {
				target = api.SidecarContainer(name, "logs")
			}
			e.run()
			e.waitRunning(name, 0)
			var before agent.Container
			eventually(t, target+" running with its files", func() error {
				var ok bool
				if before, ok = e.d.container(target); !ok || before.State != "running" {
					return fmt.Errorf("container %+v", before)
				}
				if !e.d.HasFiles(target) {
					return errors.New("no files written")
				}
				return nil
			})

			if tt.dropFiles {
				e.d.dropFiles(target) // the reboot; then the container is found exited
			}
			e.d.exit(target, 1)

			var after agent.Container
			if tt.sidecar {
				eventually(t, "sidecar running again", func() error {
					p, _ := e.pod(name)
					if len(p.Status.Sidecars) != 1 || p.Status.Sidecars[0].State != api.PodRunning || p.Status.Sidecars[0].Restarts != 1 {
						return fmt.Errorf("sidecars %+v, want running with 1 restart", p.Status.Sidecars)
					}
					var ok bool
					if after, ok = e.d.container(target); !ok || after.State != "running" {
						return fmt.Errorf("sidecar container %+v", after)
					}
					return nil
				})
			} else {
				after = e.waitRunning(name, 1)
			}
			if recreated := after.ID != before.ID; recreated != tt.wantRecreate {
				t.Errorf("container %s, was %s: recreated %v, want %v (calls %+v)", after.ID, before.ID, recreated, tt.wantRecreate, e.d.callsFor(name))
			}
			if !e.d.HasFiles(target) {
				t.Errorf("%s runs without its files", target)
			}
			e.d.mu.Lock()
			got := e.d.specs[target]
			e.d.mu.Unlock()
			if len(got.Secrets) != 1 || string(got.Secrets[0].Content) != "s3cret" {
				t.Errorf("the last create of %s got secrets %+v, want token's content", target, got.Secrets)
			}
			if !tt.sidecar {
				wantCreates, wantRemoves := 1, 0
				if tt.wantRecreate {
					wantCreates, wantRemoves = 2, 1
				}
				if c, r := e.d.count("create", name), e.d.count("remove", name); c != wantCreates || r != wantRemoves {
					t.Errorf("creates %d, removes %d of %s; want %d, %d (calls %+v)", c, r, name, wantCreates, wantRemoves, e.d.callsFor(name))
				}
			}
		})
	}
}
