package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/devhq/dev/cluster/api"
)

func TestLsRows(t *testing.T) {
	rc := func(svc string) api.ReplicationController { return api.ReplicationController{Service: svc} }
	projects := []api.ProjectSummary{
		{Name: "shop", Services: []api.ReplicationController{rc("web"), rc("db")}},
		{Name: "blog", Services: []api.ReplicationController{rc("web")}},
		{Name: "idle", Services: []api.ReplicationController{rc("job")}},
	}
	pod := func(project, node, state string, deleting bool) api.Pod {
		return api.Pod{Project: project, Node: node, Deleting: deleting, Status: api.PodStatus{State: state}}
	}
	pods := []api.Pod{
		pod("shop", "n1", api.PodRunning, false),
		pod("shop", "n2", api.PodRunning, false),
		pod("shop", "", "", false),              // not placed yet
		pod("shop", "n1", "", false),            // placed, not started
		pod("shop", "n1", api.PodRunning, true), // going
		{Project: "shop", Node: "n2", Status: api.PodStatus{State: api.PodRunning, Paused: true}},
		pod("blog", "n1", api.PodExited, false),
		pod("other", "n1", api.PodRunning, false), // no such project (deleted)
	}
	var b bytes.Buffer
	if err := printLs(&b, lsRows(projects, pods)); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"NAME   STATUS                                           SERVICES",
		"blog   exited(1)                                        1",
		"idle   no pods                                          1",
		"shop   paused(1), pending(2), removing(1), running(2)   2",
	}
	if got := strings.Split(strings.TrimSpace(b.String()), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("dev ls:\n%s\nwant:\n%s", b.String(), strings.Join(want, "\n"))
	}
}
