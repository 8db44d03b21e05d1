package cli

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/devhq/dev/cluster/api"
)

// fakeRmAPI removes the stopped pods of fakePodsAPI's list.
type fakeRmAPI struct {
	fakePodsAPI
	reqs []api.RemoveRequest
}

func (f *fakeRmAPI) Remove(_ context.Context, _ string, req api.RemoveRequest) (api.RemoveResult, error) {
	f.reqs = append(f.reqs, req)
	res := api.RemoveResult{Removed: []string{}}
	var kept []api.Pod
	for _, p := range f.pods {
		asked := (len(req.Services) == 0 || slices.Contains(req.Services, p.Service)) &&
			(len(req.Pods) == 0 || slices.Contains(req.Pods, p.Name))
		if asked && p.Stopped {
			res.Removed = append(res.Removed, p.Name)
			if !req.DryRun {
				continue
			}
		}
		kept = append(kept, p)
	}
	f.pods = kept
	return res, nil
}

func TestRm(t *testing.T) {
	tests := []struct {
		name     string
		services []string
		force    bool
		stdin    string
		wantOut  string
		wantReqs int
	}{
		{name: "asks, removes on yes", stdin: "y\n", wantReqs: 2,
			wantOut: "Going to remove shop-db-1\nAre you sure? [yN] removed shop-db-1\n"},
		{name: "asks, keeps on anything else", stdin: "\n", wantReqs: 1,
			wantOut: "Going to remove shop-db-1\nAre you sure? [yN] "},
		{name: "-f does not ask", force: true, wantReqs: 2, wantOut: "removed shop-db-1\n"},
		{name: "nothing stopped", services: []string{"web"}, force: true, wantReqs: 1, wantOut: "No stopped pods\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeRmAPI{fakePodsAPI: fakePodsAPI{pods: testPods()}}
			var out bytes.Buffer
			o := rmOptions{force: tt.force, wait: time.Second}
			if err := runRm(context.Background(), f, "shop", tt.services, o, strings.NewReader(tt.stdin), &out); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.wantOut {
				t.Errorf("output %q, want %q", out.String(), tt.wantOut)
			}
			if len(f.reqs) != tt.wantReqs {
				t.Fatalf("requests %+v, want %d", f.reqs, tt.wantReqs)
			}
			if !f.reqs[0].DryRun {
				t.Errorf("first request %+v, want a dry run", f.reqs[0])
			}
			if tt.wantReqs == 2 && !slices.Equal(f.reqs[1].Pods, []string{"shop-db-1"}) {
				t.Errorf("remove request %+v, want only the pods listed", f.reqs[1])
			}
		})
	}
}

// TestRmStopFirst: -s stops the running pods, then removes them all.
func TestRmStopFirst(t *testing.T) {
	f := &fakeRmAPI{fakePodsAPI: fakePodsAPI{pods: testPods()[:1]}} // shop-web-1, running
	f.onAction = func(pod, action string) {
		for i := range f.pods {
			if f.pods[i].Name == pod && action == api.ActionStop {
				f.pods[i].Stopped = true
			}
		}
	}
	var out bytes.Buffer
	if err := runRm(context.Background(), f, "shop", nil, rmOptions{force: true, stop: true, wait: time.Second}, strings.NewReader(""), &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "removed shop-web-1\n" {
		t.Errorf("output %q", out.String())
	}
}

// blockingRmAPI answers the pod list with blocking queries: the removed
// pod is still listed at index 5, and gone only from a query that waits
// past it.
type blockingRmAPI struct {
	fakeRmAPI
	removed bool
	queries []api.PodQuery
}

func (f *blockingRmAPI) Remove(ctx context.Context, project string, req api.RemoveRequest) (api.RemoveResult, error) {
	pods := f.pods
	res, err := f.fakeRmAPI.Remove(ctx, project, req)
	if !req.DryRun {
		f.removed, f.pods = true, pods // still listed until its node removed it
	}
	return res, err
}

func (f *blockingRmAPI) Pods(_ context.Context, q api.PodQuery) (api.PodList, error) {
	if !f.removed {
		return api.PodList{Pods: f.pods}, nil
	}
	f.queries = append(f.queries, q)
	if q.Index < 5 || q.Wait <= 0 {
		return api.PodList{Index: 5, Pods: f.pods}, nil
	}
	return api.PodList{Index: 6}, nil
}

// TestRmWaitsWithBlockingQueries: dev rm waits for the removed pods to go
// with blocking queries from the index it saw, not by polling.
func TestRmWaitsWithBlockingQueries(t *testing.T) {
	f := &blockingRmAPI{fakeRmAPI: fakeRmAPI{fakePodsAPI: fakePodsAPI{pods: testPods()}}}
	var out bytes.Buffer
	if err := runRm(context.Background(), f, "shop", nil, rmOptions{force: true, wait: 5 * time.Second}, strings.NewReader(""), &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "removed shop-db-1\n" {
		t.Errorf("output %q", out.String())
	}
	if len(f.queries) != 2 || f.queries[1].Index != 5 || f.queries[1].Wait <= 0 {
		t.Errorf("pod queries while waiting %+v, want two, the second blocking from index 5", f.queries)
	}
}
