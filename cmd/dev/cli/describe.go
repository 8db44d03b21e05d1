package cli

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/api"
)

// describeClient is what `dev describe` needs of the API: what `dev ps`,
// `dev services`, `dev nodes` and `dev events` read, nothing of its own.
type describeClient interface {
	Pods(ctx context.Context, q api.PodQuery) (api.PodList, error)
	Projects(ctx context.Context) ([]api.ProjectSummary, error)
	Services(ctx context.Context, project string) ([]api.ServiceInfo, error)
	Nodes(ctx context.Context) ([]api.Node, error)
	Events(ctx context.Context, index uint64, wait time.Duration) (api.EventList, error)
}

var _ describeClient = (*api.HTTPClient)(nil)

// The kinds `dev describe` knows, with kubectl's other names for them.
var describeKinds = map[string]string{
	"pod": "pod", "pods": "pod", "po": "pod",
	"service": "service", "services": "service", "svc": "service",
	"node": "node", "nodes": "node", "no": "node",
}

type describeOptions struct {
	project projectFlags
	output  string
	now     func() time.Time
}

// NewDescribeCommand is `dev describe pod|service|node NAME`, in kubectl's
// spirit.
func NewDescribeCommand(g *globals) *cobra.Command {
	o := describeOptions{now: time.Now}
	cmd := &cobra.Command{
		Use:   "describe pod|service|node NAME",
		Short: "Show one pod, service or node in detail: spec, status, events, why a pod is pending",
		Long: "Show one object in detail, as kubectl describe does:\n" +
			"  pod NAME      its spec (image, command, ports, environment names, mounts, labels), status\n" +
			"                (node, IP, state, ready, restarts, started), why it is pending, its events;\n" +
			"                NAME is the pod's name (dev ps), or SERVICE-N in the folder's project or -p\n" +
			"  service NAME  replicas desired and ready, VIP, ports, published ports, ingress routes,\n" +
			"                update settings and progress, its pods, its events; NAME is SERVICE (of the\n" +
			"                folder's project, -p, or the one project that has it) or PROJECT/SERVICE\n" +
			"  node NAME     status, role, address, labels, allocatable and reserved, its pods, events\n" +
			"Environment values are not shown (they may hold credentials), nor secrets' content.\n" +
			"Events are those the agent has seen since it started.",
		Args:      cobra.ExactArgs(2),
		ValidArgs: []string{"pod", "service", "node"},
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, ok := describeKinds[strings.ToLower(args[0])]
			if !ok {
				return fmt.Errorf("describe %s: unknown kind; describe a pod, a service or a node", args[0])
			}
			ctx := cmd.Context()
			project, c, err := o.project.connectOutput(ctx, g, &o.output, "")
			if err != nil {
				return err
			}
			return runDescribe(ctx, c, kind, args[1], project, o, cmd.OutOrStdout())
		},
	}
	o.project.register(cmd)
	cmd.Flags().StringVarP(&o.output, "output", "o", "table", "output format: table (text) or json (the object)")
	return cmd
}

// runDescribe fetches the object kind NAME and what goes with it, and
// prints it; project ("" for none) resolves short pod and service names.
func runDescribe(ctx context.Context, c describeClient, kind, name, project string, o describeOptions, w io.Writer) error {
	if o.now == nil {
		o.now = time.Now
	}
	var (
		obj   any
		print func(io.Writer, time.Time)
		err   error
	)
	switch kind {
	case "pod":
		var d podDescription
		d, err = describePod(ctx, c, name, project)
		obj, print = d, d.print
	case "service":
		var d serviceDescription
		d, err = describeService(ctx, c, name, project)
		obj, print = d, d.print
	default:
		var d nodeDescription
		d, err = describeNode(ctx, c, name)
		obj, print = d, d.print
	}
	if err != nil {
		return err
	}
	if o.output == "json" {
		return printJSON(w, obj)
	}
	print(w, o.now())
	return nil
}

// eventsOf returns the events the agent has of one object.
func eventsOf(ctx context.Context, c describeClient, kind, name string) ([]api.Event, error) {
	l, err := c.Events(ctx, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	out := []api.Event{}
	for _, e := range l.Events {
		if e.Kind == kind && e.Name == name {
			out = append(out, e)
		}
	}
	return out, nil
}

// specView is a pod template as describe shows it: environment variables
// by name only, secrets and configs by name and path.
type specView struct {
	Image       string              `json:"image"`
	ImageID     string              `json:"image_id,omitempty"`
	Command     []string            `json:"command,omitempty"`
	Entrypoint  []string            `json:"entrypoint,omitempty"`
	Ports       []api.PortSpec      `json:"ports,omitempty"`
	Expose      []string            `json:"expose,omitempty"`
	Environment []string            `json:"environment,omitempty"` // names
	Volumes     []api.VolumeMount   `json:"volumes,omitempty"`
	Secrets     []fileView          `json:"secrets,omitempty"`
	Configs     []fileView          `json:"configs,omitempty"`
	Labels      map[string]string   `json:"labels,omitempty"`
	Healthcheck *api.Healthcheck    `json:"healthcheck,omitempty"`
	Restart     string              `json:"restart"` // the effective policy (default always)
	Resources   api.Resources       `json:"resources,omitzero"`
	Placement   api.Placement       `json:"placement,omitzero"`
	HostNetwork bool                `json:"host_network,omitempty"`
	Sidecars    map[string]specView `json:"sidecars,omitempty"`
}

// fileView is a secret or config without its content.
type fileView struct {
	Name   string `json:"name"`
	Target string `json:"target"`
}

func viewSpec(s api.ServiceSpec) specView {
	files := func(ms []api.SecretMount) []fileView {
		var out []fileView
		for _, m := range ms {
			out = append(out, fileView{Name: m.Name, Target: m.Target})
		}
		return out
	}
	v := specView{
		Image: s.Image, ImageID: s.ImageID, Command: s.Command, Entrypoint: s.Entrypoint,
		Ports: s.Ports, Expose: s.Expose, Volumes: s.Volumes, Secrets: files(s.Secrets), Configs: files(s.Configs),
		Labels: s.Labels, Healthcheck: s.Healthcheck, Restart: s.RestartPolicy(), Resources: s.Resources,
		Placement: s.Placement, HostNetwork: s.HostNetwork,
	}
	for k := range s.Environment {
		v.Environment = append(v.Environment, k)
	}
	slices.Sort(v.Environment)
	for _, sc := range s.Sidecars {
		if v.Sidecars == nil {
			v.Sidecars = map[string]specView{}
		}
		v.Sidecars[sc.Name] = viewSpec(sc)
	}
	return v
}

// findRC returns the controller of project/service.
func findRC(projects []api.ProjectSummary, project, service string) (api.ReplicationController, bool) {
	for _, p := range projects {
		if p.Name != project {
			continue
		}
		for _, rc := range p.Services {
			if rc.Service == service {
				return rc, true
			}
		}
	}
	return api.ReplicationController{}, false
}

// podDescription is `dev describe pod`: the pod as `GET /v1/pods` has it,
// the template it was made from, why it is pending, its events.
type podDescription struct {
	Pod api.Pod `json:"pod"`
	// Template is the spec the pod was made from (nil when its service no
	// longer has it); Current says whether that is the service's current
	// template (false: an update will replace the pod).
	Template *specView `json:"template,omitempty"`
	Current  bool      `json:"current"`
	// Pending says why the pod is not running yet ("" when it is not
	// pending): the scheduler's reason while it has no node, else what
	// its node's agent reported.
	Pending string      `json:"pending,omitempty"`
	Events  []api.Event `json:"events"`
}

func describePod(ctx context.Context, c describeClient, name, project string) (podDescription, error) {
	list, err := c.Pods(ctx, api.PodQuery{})
	if err != nil {
		return podDescription{}, fmt.Errorf("list pods: %w", err)
	}
	var pod *api.Pod
	for i := range list.Pods {
		p := &list.Pods[i]
		if p.Name == name || (project != "" && p.Project == project && p.Name == project+"-"+name) {
			pod = p
			break
		}
	}
	if pod == nil {
		where := ""
		if project != "" {
			where = " -p " + project
		}
		return podDescription{}, fmt.Errorf("describe pod %s: no such pod; `dev ps%s` lists them", name, where)
	}
	d := podDescription{Pod: *pod, Pending: pendingReason(*pod)}
	projects, err := c.Projects(ctx)
	if err != nil {
		return podDescription{}, fmt.Errorf("list projects: %w", err)
	}
	if rc, ok := findRC(projects, pod.Project, pod.Service); ok {
		switch {
		case rc.SpecHash == pod.SpecHash:
			v := viewSpec(rc.Template)
			d.Template, d.Current = &v, true
		case rc.Previous != nil && rc.Previous.Hash() == pod.SpecHash:
			v := viewSpec(*rc.Previous)
			d.Template = &v
		}
	}
	if d.Events, err = eventsOf(ctx, c, "pod", pod.Name); err != nil {
		return podDescription{}, err
	}
	return d, nil
}

// pendingReason says why a pod is not running yet, or "".
func pendingReason(p api.Pod) string {
	if p.Deleting || (p.Node != "" && p.Status.State != "" && p.Status.State != api.PodPending) {
		return ""
	}
	if p.Node == "" {
		if p.Status.Message != "" {
			return p.Status.Message // the scheduler's: "0/3 nodes available: ..."
		}
		return "waiting for the scheduler to place it"
	}
	if p.Status.Message != "" {
		return fmt.Sprintf("placed on node %s: %s", p.Node, p.Status.Message)
	}
	return fmt.Sprintf("placed on node %s, whose agent has not started it yet", p.Node)
}

func (d podDescription) print(w io.Writer, now time.Time) {
	p := d.Pod
	row := toRow(p)
	tw, kv := fieldWriter(w)
	kv("Name", p.Name)
	kv("Project", p.Project)
	kv("Service", p.Service)
	kv("Node", orDash(p.Node))
	kv("IP", orDash(p.Status.IP))
	state := row.State
	if p.Stopped {
		state += " (stopped by dev stop; dev start starts it)"
	}
	if p.Deleting {
		state += " (being removed)"
	}
	kv("State", state)
	if d.Pending != "" {
		kv("Pending", d.Pending)
	}
	kv("Ready", row.Ready)
	if p.Status.Health != "" {
		kv("Health", p.Status.Health)
	}
	kv("Restarts", fmt.Sprint(p.Status.Restarts))
	if p.Status.State == api.PodExited {
		kv("Exit code", fmt.Sprint(p.Status.ExitCode))
	}
	kv("Started", when(p.Status.StartedAt, now))
	if p.Status.Message != "" && d.Pending == "" {
		kv("Message", p.Status.Message)
	}
	if row.ContainerID != "" {
		kv("Container", row.ContainerID)
	}
	kv("Labels", labelList(p.Labels))
	tmpl := p.SpecHash
	switch {
	case d.Template == nil:
		tmpl += " (no longer the service's: its spec is not shown)"
	case !d.Current:
		tmpl += " (the previous one: an update will replace this pod)"
	}
	kv("Template", tmpl)
	if d.Template != nil {
		printSpec(kv, *d.Template)
		for _, sc := range p.Status.Sidecars {
			s := d.Template.Sidecars[sc.Name]
			kv("Sidecar "+sc.Name, fmt.Sprintf("%s, %s, %d restarts", s.Image, sc.State, sc.Restarts))
		}
	}
	tw.Flush()
	printEvents(w, d.Events, now)
}

// printSpec writes a template's fields, the empty ones left out.
func printSpec(kv func(k, v string), s specView) {
	image := s.Image
	if s.ImageID != "" {
		image += " (" + shortID(s.ImageID) + ")"
	}
	kv("Image", image)
	if len(s.Entrypoint) > 0 {
		kv("Entrypoint", strings.Join(s.Entrypoint, " "))
	}
	if len(s.Command) > 0 {
		kv("Command", strings.Join(s.Command, " "))
	}
	if len(s.Ports) > 0 {
		kv("Ports", portList(s.Ports, false))
		var pub []api.PortSpec
		for _, p := range s.Ports {
			if p.Published != 0 {
				pub = append(pub, p)
			}
		}
		if len(pub) > 0 {
			kv("Published", portList(pub, true))
		}
	}
	if len(s.Expose) > 0 {
		kv("Expose", strings.Join(s.Expose, ","))
	}
	if len(s.Environment) > 0 {
		kv("Environment", strings.Join(s.Environment, ", ")+" (values not shown)")
	}
	if len(s.Volumes) > 0 {
		var ms []string
		for _, v := range s.Volumes {
			m := v.Target + " from " + v.Type
			if v.Source != "" {
				m += " " + v.Source
			}
			if v.ReadOnly {
				m += " (ro)"
			}
			ms = append(ms, m)
		}
		kv("Mounts", strings.Join(ms, ", "))
	}
	files := func(k string, fs []fileView) {
		if len(fs) == 0 {
			return
		}
		var out []string
		for _, f := range fs {
			out = append(out, f.Name+" at "+f.Target)
		}
		kv(k, strings.Join(out, ", "))
	}
	files("Secrets", s.Secrets)
	files("Configs", s.Configs)
	if h := s.Healthcheck; h != nil && !h.Disable && len(h.Test) > 0 {
		hc := strings.Join(h.Test, " ")
		if h.Interval != nil {
			hc += ", every " + time.Duration(*h.Interval).String()
		}
		if h.Retries > 0 {
			hc += fmt.Sprintf(", %d retries", h.Retries)
		}
		kv("Healthcheck", hc)
	}
	if s.Restart != "" {
		kv("Restart", s.Restart)
	}
	if r := s.Resources.Reservations; r != (api.ResourceAmounts{}) {
		kv("Reservations", amounts(r))
	}
	if r := s.Resources.Limits; r != (api.ResourceAmounts{}) {
		kv("Limits", amounts(r))
	}
	if len(s.Placement.Constraints) > 0 {
		kv("Constraints", strings.Join(s.Placement.Constraints, ", "))
	}
	if s.HostNetwork {
		kv("Network", "host")
	}
}

func amounts(r api.ResourceAmounts) string {
	var out []string
	if r.NanoCPUs > 0 {
		out = append(out, fmt.Sprintf("cpu %.2f", float64(r.NanoCPUs)/1e9))
	}
	if r.MemoryBytes > 0 {
		out = append(out, "memory "+mib(r.MemoryBytes))
	}
	if r.Pids > 0 {
		out = append(out, fmt.Sprintf("pids %d", r.Pids))
	}
	return strings.Join(out, ", ")
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// when writes a time and how long ago it was.
func when(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return fmt.Sprintf("%s (%s ago)", t.Local().Format("2006-01-02 15:04:05"), now.Sub(t).Round(time.Second))
}

// printEvents writes the events section as `dev events` writes its table.
func printEvents(w io.Writer, evs []api.Event, now time.Time) {
	if len(evs) == 0 {
		fmt.Fprintln(w, "Events:   <none>")
		return
	}
	fmt.Fprintln(w, "Events:")
	p := &eventPrinter{w: w, now: func() time.Time { return now }}
	_ = p.print(evs, true)
}

// serviceDescription is `dev describe service`: what `dev services` shows
// of it, its controller's replicas, template and update settings, its pods
// and its events.
type serviceDescription struct {
	Service  api.ServiceInfo   `json:"service"`
	Template specView          `json:"template"`
	Update   api.UpdateConfig  `json:"update"`   // with the defaults filled in
	Rollback api.UpdateConfig  `json:"rollback"` // the same
	Progress *api.UpdateStatus `json:"progress,omitempty"`
	// PinnedNode is where a service with data on its node is placed.
	PinnedNode string      `json:"pinned_node,omitempty"`
	Pods       []psRow     `json:"pods"`
	Events     []api.Event `json:"events"`
}

func describeService(ctx context.Context, c describeClient, name, project string) (serviceDescription, error) {
	service := name
	if p, s, ok := strings.Cut(name, "/"); ok {
		project, service = p, s
	}
	projects, err := c.Projects(ctx)
	if err != nil {
		return serviceDescription{}, fmt.Errorf("list projects: %w", err)
	}
	if project == "" {
		var in []string
		for _, p := range projects {
			if _, ok := findRC(projects, p.Name, service); ok {
				in = append(in, p.Name)
			}
		}
		switch len(in) {
		case 0:
			return serviceDescription{}, fmt.Errorf("describe service %s: no such service; `dev services` lists them", name)
		case 1:
			project = in[0]
		default:
			return serviceDescription{}, fmt.Errorf("describe service %s: projects %s have one; name one with -p or as PROJECT/%s", name, strings.Join(in, ", "), service)
		}
	}
	rc, ok := findRC(projects, project, service)
	if !ok {
		return serviceDescription{}, fmt.Errorf("describe service %s: project %s has no such service; `dev services -p %s` lists them (another project's: PROJECT/%s)", service, project, project, service)
	}
	svcs, err := c.Services(ctx, project)
	if err != nil {
		return serviceDescription{}, fmt.Errorf("list services: %w", err)
	}
	d := serviceDescription{
		Service:  api.ServiceInfo{Project: project, Name: service, VIP: rc.VIP, Desired: rc.Replicas},
		Template: viewSpec(rc.Template), Update: rc.Template.UpdateSettings(false),
		Rollback: rc.Template.UpdateSettings(true), Progress: rc.Update, PinnedNode: rc.PinnedNode,
	}
	for _, s := range svcs {
		if s.Project == project && s.Name == service {
			d.Service = s
		}
	}
	if d.Pods, err = podRows(ctx, c, api.PodQuery{Project: project}, func(p api.Pod) bool { return p.Service == service }); err != nil {
		return serviceDescription{}, err
	}
	if d.Events, err = eventsOf(ctx, c, "service", api.RCKey(project, service)); err != nil {
		return serviceDescription{}, err
	}
	return d, nil
}

func (d serviceDescription) print(w io.Writer, now time.Time) {
	s := d.Service
	tw, kv := fieldWriter(w)
	kv("Name", s.Name)
	kv("Project", s.Project)
	kv("Replicas", fmt.Sprintf("%d desired, %d ready", s.Desired, s.Ready))
	kv("VIP", orDash(s.VIP))
	kv("Ports", vipPorts(s.Ports))
	kv("Published", portList(s.Published, true))
	if len(s.Ingress) > 0 {
		var rs []string
		for _, r := range s.Ingress {
			tls := "tls " + orDash(r.TLS)
			if c := certOf(r, s.Certs); c != "-" {
				tls += ": " + c
			}
			rs = append(rs, fmt.Sprintf("%s%s -> port %d (%s)", r.Host, r.Path, r.Port, tls))
		}
		kv("Ingress", strings.Join(rs, ", "))
	}
	if len(s.Endpoints) > 0 {
		kv("Endpoints", strings.Join(s.Endpoints, ", "))
	}
	u := d.Update
	update := fmt.Sprintf("parallelism %d, order %s, on failure %s", u.Parallelism, orDash(u.Order), orDash(u.FailureAction))
	if u.Delay != nil {
		update += ", delay " + time.Duration(*u.Delay).String()
	}
	if u.Monitor != nil {
		update += ", monitor " + time.Duration(*u.Monitor).String()
	}
	kv("Update", update)
	if pr := d.Progress; pr != nil {
		prog := pr.State
		if pr.Message != "" {
			prog += ": " + pr.Message
		}
		if !pr.StartedAt.IsZero() {
			prog += ", started " + when(pr.StartedAt, now)
		}
		kv("Update state", prog)
	}
	if d.PinnedNode != "" {
		kv("Pinned to", d.PinnedNode+" (its data is there)")
	}
	spec := d.Template
	spec.Ports = nil // shown above, as the VIP and the nodes serve them
	printSpec(kv, spec)
	for _, name := range slices.Sorted(maps.Keys(d.Template.Sidecars)) {
		kv("Sidecar "+name, d.Template.Sidecars[name].Image)
	}
	tw.Flush()
	printPodsSection(w, d.Pods)
	printEvents(w, d.Events, now)
}

// printPodsSection writes the pods as `dev ps` does, under "Pods:".
func printPodsSection(w io.Writer, pods []psRow) {
	if len(pods) == 0 {
		fmt.Fprintln(w, "Pods:     <none>")
		return
	}
	fmt.Fprintln(w, "Pods:")
	printPods(w, pods)
}

// nodeDescription is `dev describe node`: the node as `dev nodes` has it,
// its pods and its events.
type nodeDescription struct {
	Node api.Node `json:"node"`
	// Status is what dev nodes shows: ready, engine unreachable, down or
	// left, with draining or cordoned.
	Status string      `json:"status"`
	Pods   []psRow     `json:"pods"`
	Events []api.Event `json:"events"`
}

func describeNode(ctx context.Context, c describeClient, name string) (nodeDescription, error) {
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return nodeDescription{}, fmt.Errorf("list nodes: %w", err)
	}
	i := slices.IndexFunc(nodes, func(n api.Node) bool { return n.Name == name })
	if i < 0 {
		return nodeDescription{}, fmt.Errorf("describe node %s: no such node; `dev nodes` lists them", name)
	}
	d := nodeDescription{Node: nodes[i], Status: nodeStatus(nodes[i])}
	if d.Pods, err = podRows(ctx, c, api.PodQuery{Node: name}, func(p api.Pod) bool { return p.Node == name }); err != nil {
		return nodeDescription{}, err
	}
	if d.Events, err = eventsOf(ctx, c, "node", name); err != nil {
		return nodeDescription{}, err
	}
	return d, nil
}

func (d nodeDescription) print(w io.Writer, now time.Time) {
	n := d.Node
	tw, kv := fieldWriter(w)
	kv("Name", n.Name)
	kv("Status", d.Status)
	if !n.DownSince.IsZero() {
		kv("Down since", when(n.DownSince, now))
	}
	kv("Role", orDash(n.Role))
	kv("Address", orDash(n.Address))
	if n.APIAddr != "" {
		kv("API", n.APIAddr)
	}
	kv("Pod subnet", orDash(n.PodSubnet))
	kv("Labels", labelList(n.Labels))
	kv("Heartbeat", when(n.Heartbeat, now))
	kv("Load", fmt.Sprintf("%.2f", n.Load))
	kv("CPU", fmt.Sprintf("%.1f reserved of %.1f allocatable", float64(n.Reserved.NanoCPUs)/1e9, float64(n.Allocatable.NanoCPUs)/1e9))
	kv("Memory", fmt.Sprintf("%s reserved of %s allocatable", mib(n.Reserved.MemoryBytes), mib(n.Allocatable.MemoryBytes)))
	tw.Flush()
	printPodsSection(w, d.Pods)
	printEvents(w, d.Events, now)
}

// podRows lists the pods q matches that keep accepts, as ps rows in name
// order ([] for none).
func podRows(ctx context.Context, c podLister, q api.PodQuery, keep func(api.Pod) bool) ([]psRow, error) {
	list, err := c.Pods(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	rows := []psRow{}
	for _, p := range list.Pods {
		if keep(p) {
			rows = append(rows, toRow(p))
		}
	}
	slices.SortFunc(rows, func(a, b psRow) int { return strings.Compare(a.Name, b.Name) })
	return rows, nil
}

// fieldWriter returns a tabwriter for describe's "Key:  value" lines and
// the function that writes one; flush the writer when done.
func fieldWriter(w io.Writer) (*tabwriter.Writer, func(k, v string)) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	return tw, func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
}
