package apiserver

import (
	"context"
	"io"
	"path"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// filesLocal records what reaches this node's agent.
type filesLocal struct {
	Local
	mu      sync.Mutex
	copied  map[string]string // pod -> dir + ":" + archive bytes
	removed map[string][]string
}

func (l *filesLocal) CopyFiles(_ context.Context, pod, dir string, archive io.Reader) error {
	b, err := io.ReadAll(archive)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.copied[pod] = dir + ":" + string(b)
	return nil
}

func (l *filesLocal) RemoveFiles(_ context.Context, pod string, paths []string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.removed[pod] = paths
	return nil
}

func (l *filesLocal) CopyFromPod(_ context.Context, pod, p string, stat bool) (io.ReadCloser, api.PathStat, error) {
	st := api.PathStat{Name: path.Base(p), Size: 3, Mode: 0o644}
	if stat {
		return nil, st, nil
	}
	return io.NopCloser(strings.NewReader("TAR")), st, nil
}

func TestFilesAPI(t *testing.T) {
	st := state.New()
	err := st.Update(1, func(tx *state.Txn) error {
		pod := func(name, node, phase string) api.Pod {
			return api.Pod{Name: name, Project: "shop", Service: "web", Labels: map[string]string{}, Node: node,
				Status: api.PodStatus{State: phase}}
		}
		for _, cmd := range []state.Command{
			&state.ApplyProject{Project: api.Project{Name: "shop", Services: []api.ServiceSpec{{Project: "shop", Name: "web", Image: "x", Replicas: 1}}}},
			&state.PutNode{Node: api.Node{Name: "n1", Status: api.NodeReady}},
			&state.CreatePods{Pods: []api.Pod{
				pod("shop-web-1", "", ""), pod("shop-web-2", "", ""), pod("shop-web-3", "", ""),
			}},
			&state.AssignPods{Nodes: map[string]string{"shop-web-1": "n1", "shop-web-2": "n1", "shop-web-3": "n2"}},
			&state.PodStatus{Name: "shop-web-1", Node: "n1", Status: api.PodStatus{State: api.PodRunning}},
			&state.PodStatus{Name: "shop-web-2", Node: "n1", Status: api.PodStatus{State: api.PodExited}},
			&state.PodStatus{Name: "shop-web-3", Node: "n2", Status: api.PodStatus{State: api.PodRunning}},
		} {
			if err := tx.Apply(cmd); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	local := &filesLocal{copied: map[string]string{}, removed: map[string][]string{}}
	c := serveTestAPI(t, st, local)
	ctx := context.Background()

	res, err := c.CopyFiles(ctx, "shop-web-1", "/srv/../srv/app/", strings.NewReader("TAR"))
	if err != nil || res != (api.FilesResult{Pod: "shop-web-1", Node: "n1"}) {
		t.Fatalf("CopyFiles = %+v, %v", res, err)
	}
	if got := local.copied["shop-web-1"]; got != "/srv/app:TAR" {
		t.Fatalf("the agent got %q, want the cleaned directory and the archive", got)
	}
	if _, err := c.RemoveFiles(ctx, "shop-web-1", []string{"/srv/a", "/srv/x/../b"}); err != nil {
		t.Fatalf("RemoveFiles: %v", err)
	}
	if got, want := local.removed["shop-web-1"], []string{"/srv/a", "/srv/b"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("the agent got %q, want %q", got, want)
	}

	rc, ps, err := c.CopyFromPod(ctx, "shop-web-1", "/etc/../etc/hosts")
	if err != nil {
		t.Fatalf("CopyFromPod: %v", err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "TAR" || ps.Name != "hosts" {
		t.Fatalf("CopyFromPod = %q, %+v; want the archive and the cleaned path's stat", b, ps)
	}
	if st, err := c.StatPodPath(ctx, "shop-web-1", "/etc/hosts"); err != nil || st.Name != "hosts" || st.IsDir() {
		t.Fatalf("StatPodPath = %+v, %v", st, err)
	}

	tests := []struct {
		name     string
		call     func() error
		wantCode string
		wantMsg  string
	}{
		{name: "relative directory", call: func() error {
			_, err := c.CopyFiles(ctx, "shop-web-1", "srv", strings.NewReader(""))
			return err
		}, wantCode: "invalid", wantMsg: "absolute"},
		{name: "unknown pod", call: func() error {
			_, err := c.CopyFiles(ctx, "shop-nope-1", "/srv", strings.NewReader(""))
			return err
		}, wantCode: "not_found", wantMsg: "no pod"},
		{name: "pod not running", call: func() error {
			_, err := c.CopyFiles(ctx, "shop-web-2", "/srv", strings.NewReader(""))
			return err
		}, wantCode: "conflict", wantMsg: "not running"},
		{name: "pod on an unreachable node", call: func() error {
			_, err := c.CopyFiles(ctx, "shop-web-3", "/srv", strings.NewReader(""))
			return err
		}, wantCode: "internal", wantMsg: "cannot reach"},
		{name: "copy from a relative path", call: func() error {
			_, _, err := c.CopyFromPod(ctx, "shop-web-1", "etc/hosts")
			return err
		}, wantCode: "invalid", wantMsg: "absolute"},
		{name: "copy from a pod not running", call: func() error {
			_, err := c.StatPodPath(ctx, "shop-web-2", "/etc")
			return err
		}, wantCode: "conflict", wantMsg: "not running"},
		{name: "remove the root", call: func() error {
			_, err := c.RemoveFiles(ctx, "shop-web-1", []string{"/srv", "/.."})
			return err
		}, wantCode: "invalid", wantMsg: "below /"},
		{name: "remove nothing", call: func() error {
			_, err := c.RemoveFiles(ctx, "shop-web-1", nil)
			return err
		}, wantCode: "invalid", wantMsg: "no paths"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			ae, ok := err.(*api.APIError)
			if !ok || ae.Code != tt.wantCode || !strings.Contains(ae.Message, tt.wantMsg) {
				t.Fatalf("err = %#v, want code %s with %q", err, tt.wantCode, tt.wantMsg)
			}
		})
	}
}
