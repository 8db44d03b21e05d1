package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/devhq/dev/cluster/api"
)

// ingressLogClient is what `dev logs --ingress` needs of the API.
type ingressLogClient interface {
	Services(ctx context.Context, project string) ([]api.ServiceInfo, error)
	IngressLog(ctx context.Context, q api.IngressLogQuery) (api.IngressLog, error)
}

var _ ingressLogClient = (*api.HTTPClient)(nil)

// ingressLogWait is how long one query of a follow waits for new entries.
const ingressLogWait = 30 * time.Second

// streamIngressLog prints the access log entries of the project's routes
// (of services, if any) from every node's ingress router, the last tail
// of them (tail < 0: all). With follow it goes on with blocking queries
// (each bounded by ingressLogWait) until ctx ends. Nodes whose entries
// are missing are warned about on stderr, when that changes.
func streamIngressLog(ctx context.Context, c ingressLogClient, project string, services []string, follow bool, tail int, w, stderr io.Writer) error {
	if len(services) > 0 {
		infos, err := c.Services(ctx, project)
		if err != nil {
			return fmt.Errorf("list services: %w", err)
		}
		for _, s := range services {
			i := slices.IndexFunc(infos, func(si api.ServiceInfo) bool { return si.Name == s })
			switch {
			case i < 0:
				return fmt.Errorf("no service %s in project %s (dev services -p %s lists them)", s, project, project)
			case len(infos[i].Ingress) == 0:
				return fmt.Errorf("service %s of project %s has no ingress route: declare one with x-ingress in the compose file", s, project)
			}
		}
	}
	lp := newLogPrinter(w)
	q := api.IngressLogQuery{Project: project, Services: services, Tail: tail}
	var warned string
	for {
		start := time.Now()
		l, err := c.IngressLog(ctx, q)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read the ingress access logs: %w", err)
		}
		if e := strings.Join(l.Errors, "\n"); e != warned {
			for _, msg := range l.Errors {
				fmt.Fprintf(stderr, "warning: no access log from %s\n", msg)
			}
			warned = e
		}
		for _, e := range l.Entries {
			lp.line(e.Service, e.String())
		}
		if !follow || ctx.Err() != nil {
			return nil
		}
		q.After, q.Tail, q.Wait = l.Cursor, -1, ingressLogWait
		if len(l.Entries) == 0 {
			// An agent that did not wait (an older one): ask at most once
			// a second.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second - time.Since(start)):
			}
		}
	}
}
