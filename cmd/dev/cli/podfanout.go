package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/devhq/dev/cluster/api"
)

// podLister is what finding or waiting for a project's pods needs of the API.
type podLister interface {
	Pods(ctx context.Context, q api.PodQuery) (api.PodList, error)
}

// servicePods returns the project's pods of services (all without) that
// keep accepts, in name order. A named service with no pod at all (kept
// or not) is an error that says how to list them.
func servicePods(ctx context.Context, c podLister, project string, services []string, keep func(api.Pod) bool) ([]api.Pod, error) {
	list, err := c.Pods(ctx, api.PodQuery{Project: project})
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	var pods []api.Pod
	has := map[string]bool{}
	for _, p := range list.Pods {
		if len(services) > 0 && !slices.Contains(services, p.Service) {
			continue
		}
		has[p.Service] = true
		if keep(p) {
			pods = append(pods, p)
		}
	}
	for _, s := range services {
		if !has[s] {
			return nil, fmt.Errorf("no pods of service %s in project %s; `dev ps -p %s` lists them", s, project, project)
		}
	}
	slices.SortFunc(pods, func(a, b api.Pod) int { return strings.Compare(a.Name, b.Name) })
	return pods, nil
}

// eachPod asks about every pod at once (ask goes to the pod's node) and
// returns the answers and errors in the pods' order; a failed answer is
// the zero T, its error "VERB POD (node NODE): ...".
func eachPod[T any](pods []api.Pod, verb string, ask func(api.Pod) (T, error)) ([]T, []error) {
	got := make([]T, len(pods))
	errs := make([]error, len(pods))
	var wg sync.WaitGroup
	for i, p := range pods {
		wg.Go(func() {
			got[i], errs[i] = ask(p)
			if errs[i] != nil {
				errs[i] = fmt.Errorf("%s %s (node %s): %w", verb, p.Name, p.Node, errs[i])
			}
		})
	}
	wg.Wait()
	return got, errs
}
