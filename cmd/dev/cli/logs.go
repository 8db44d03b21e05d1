package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/devhq/dev/cluster/api"
)

type logsOptions struct {
	project   projectFlags
	follow    bool
	tail      string
	container string
	ingress   bool
	services  []string
}

// NewLogsCommand is `dev logs`.
func NewLogsCommand(g *globals) *cobra.Command {
	var o logsOptions
	cmd := &cobra.Command{
		Use:   "logs [SERVICE...]",
		Short: "Show the logs of a project's pods, prefixed with service-n (service-n/sidecar for a sidecar's)",
		Long: "Show the logs of a project's pods, prefixed with service-n (service-n/sidecar for a sidecar's).\n" +
			"With --ingress, the access logs of the project's x-ingress routes instead, from every node's\n" +
			"router (each keeps its last 4096 requests in memory), prefixed with the service:\n" +
			"  time node client \"METHOD host/path PROTO\" status bytes duration pod",
		RunE: func(cmd *cobra.Command, args []string) error {
			o.services = args
			if o.ingress && o.container != "" {
				return fmt.Errorf("--ingress shows the routers' access logs, which have no containers: drop -c %s", o.container)
			}
			tail := -1
			if o.tail != "all" {
				if _, err := fmt.Sscan(o.tail, &tail); err != nil || tail < 0 {
					return fmt.Errorf("--tail %q: want a number >= 0 or all", o.tail)
				}
			}
			name, c, err := o.project.connect(cmd.Context(), g, false)
			if err != nil {
				return err
			}
			if o.ingress {
				return streamIngressLog(cmd.Context(), c, name, o.services, o.follow, tail, cmd.OutOrStdout(), cmd.ErrOrStderr())
			}
			return streamLogs(cmd.Context(), c, name, o.services, o.container, o.follow, tail, cmd.OutOrStdout())
		},
	}
	o.project.registerFile(cmd, "")
	cmd.Flags().BoolVarP(&o.follow, "follow", "f", false, "follow log output, including pods started later")
	cmd.Flags().StringVarP(&o.tail, "tail", "n", "all", "number of lines to show from the end of each pod's log (with --ingress: of the access log)")
	cmd.Flags().BoolVar(&o.ingress, "ingress", false, "show the ingress routers' access logs of the project's routes (of every node) instead of the pods' logs")
	cmd.Flags().StringVarP(&o.container, "container", "c", "", "one container of each pod: the service's own or a sidecar's, by its service name (default: every container)")
	return cmd
}

// logPrinter writes whole lines with a "service-n | " prefix, like compose.
type logPrinter struct {
	mu    sync.Mutex
	w     io.Writer
	color bool
	width int
	hues  map[string]int
}

func newLogPrinter(w io.Writer) *logPrinter {
	color := false
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		color = true
	}
	return &logPrinter{w: w, color: color, width: 8, hues: map[string]int{}}
}

// fit widens the prefix column for the prefixes of pods' containers.
func (lp *logPrinter) fit(pods []api.Pod, container string) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	for _, p := range pods {
		for _, src := range logSources(p, container) {
			lp.width = max(lp.width, len(logPrefix(p, src.container)))
		}
	}
}

func (lp *logPrinter) line(prefix, text string) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if len(prefix) > lp.width {
		lp.width = len(prefix)
	}
	if !lp.color {
		fmt.Fprintf(lp.w, "%-*s | %s\n", lp.width, prefix, text)
		return
	}
	hue, ok := lp.hues[prefix]
	if !ok {
		hue = 31 + len(lp.hues)%6
		lp.hues[prefix] = hue
	}
	fmt.Fprintf(lp.w, "\x1b[%dm%-*s |\x1b[0m %s\n", hue, lp.width, prefix, text)
}

// streamLogs prints the logs of the project's pods (of services, if any).
// With follow it keeps going until ctx ends, picking up pods and containers
// that start later.
func streamLogs(ctx context.Context, c api.Client, project string, services []string, container string, follow bool, tail int, w io.Writer) error {
	want := map[string]bool{}
	for _, s := range services {
		want[s] = true
	}
	lp := newLogPrinter(w)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait() // runs before cancel: without follow, streams end on their own

	started := map[string]bool{} // pod/container/start time already streamed
	var index uint64
	first := true
	for {
		list, err := c.Pods(ctx, api.PodQuery{Project: project, Index: index, Wait: 30 * time.Second})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			cancel() // followed streams would otherwise hold the return (wg.Wait) forever
			return fmt.Errorf("list pods: %w", err)
		}
		if first && len(services) > 0 {
			known := map[string]bool{}
			for _, p := range list.Pods {
				known[p.Service] = true
			}
			for _, s := range services {
				if !known[s] {
					return fmt.Errorf("no pods of service %s in project %s", s, project)
				}
			}
		}
		index = list.Index
		lp.fit(list.Pods, container)
		for _, p := range list.Pods {
			if (len(want) > 0 && !want[p.Service]) || p.Node == "" || p.Status.ContainerID == "" {
				continue
			}
			for _, src := range logSources(p, container) {
				if started[src.key] {
					continue
				}
				started[src.key] = true
				t := tail
				if !first {
					t = 0 // a restarted container: only what it writes from now on
					if !src.running {
						t = -1
					}
				}
				wg.Add(1)
				go func(p api.Pod, container string, tail int) {
					defer wg.Done()
					prefix := logPrefix(p, container)
					rc, err := c.Logs(ctx, p.Name, container, follow, tail)
					if err != nil {
						if ctx.Err() == nil {
							lp.line(prefix, fmt.Sprintf("(logs unavailable: %v)", err))
						}
						return
					}
					defer rc.Close()
					sc := bufio.NewScanner(rc)
					sc.Buffer(make([]byte, 64*1024), 1024*1024)
					for sc.Scan() {
						lp.line(prefix, sc.Text())
					}
				}(p, src.container, t)
			}
		}
		first = false
		if !follow {
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// logSource is one container's log in a pod: key names one run of it (a
// new key after a restart starts a new stream).
type logSource struct {
	container string // "" for the service's own
	key       string
	running   bool
}

// logSources are the containers of p whose logs are shown: the one named
// container (the service's own when it is "" or the service's name), or
// with container "" every container of the pod, sidecars included.
func logSources(p api.Pod, container string) []logSource {
	if container == p.Service {
		container = ""
	}
	if container != "" {
		for _, sc := range p.Status.Sidecars {
			if sc.Name == container {
				return []logSource{sidecarSource(p, sc)}
			}
		}
		// Not (yet) reported: the agent answers with the pod's containers.
		// The key is the one the report will give, so as not to follow it twice.
		return []logSource{sidecarSource(p, api.ContainerStatus{Name: container})}
	}
	out := []logSource{{key: p.Name + "//" + p.Status.ContainerID + "/" + p.Status.StartedAt.String(), running: p.Status.State == api.PodRunning}}
	for _, sc := range p.Status.Sidecars {
		if sc.State != api.PodPending {
			out = append(out, sidecarSource(p, sc))
		}
	}
	return out
}

func sidecarSource(p api.Pod, sc api.ContainerStatus) logSource {
	return logSource{container: sc.Name, key: fmt.Sprintf("%s/%s/%d", p.Name, sc.Name, sc.Restarts), running: sc.State == api.PodRunning}
}

// logPrefix is a pod's line prefix: service-n, and /container for a
// sidecar's.
func logPrefix(p api.Pod, container string) string {
	if container == "" || container == p.Service {
		return p.ShortName()
	}
	return p.ShortName() + "/" + container
}
