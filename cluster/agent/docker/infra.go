package docker

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"

	"github.com/devhq/dev/cluster/api"
)

// A pod's infra container holds the pod's network namespace (its IP on the
// pod network, its hostname, resolv.conf and hosts file) and IPC namespace;
// the pod's app containers join them. Restarting or recreating an app
// container therefore keeps the pod's IP, and the endpoints and DNS records
// that name it do not change. It runs a program that does nothing (pause,
// from an image built on the spot) and carries only the labels that tie it
// to its pod and node: tools that read a service's labels (compose's, a
// proxy's, a test's count) see the app containers alone.

// LabelInfra marks a pod's infra container.
const LabelInfra = "dev.infra"

// PauseImageRepo is the repository of the infra containers' image.
const PauseImageRepo = "dev-pause"

// InfraName is the name of a pod's infra container.
func InfraName(pod string) string { return pod + ".infra" }

// pauseImage builds the infra containers' image unless the engine has it:
// the pause program of pauseELF on amd64, the dev binary's own `pause`
// elsewhere (Options.Binary).
type pauseImage struct {
	mu  sync.Mutex
	ref string
}

func (p *pauseImage) get(ctx context.Context, cli client.APIClient, binary string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ref != "" {
		return p.ref, nil
	}
	bin, entry := pauseELF(), []string{"/pause"}
	if runtime.GOARCH != "amd64" {
		if binary == "" {
			return "", fmt.Errorf("build the pause image: no dev binary to run on %s", runtime.GOARCH)
		}
		b, err := os.ReadFile(binary)
		if err != nil {
			return "", fmt.Errorf("build the pause image: %w", err)
		}
		bin, entry = b, []string{"/pause", "pause"}
	}
	ref := PauseImageRepo + ":" + digest(bin)
	if err := scratchImage(ctx, cli, ref, []imageFile{{"/pause", bin, 0o755}}, entry, map[string]string{LabelInfra: "true"}); err != nil {
		return "", fmt.Errorf("build the pause image: %w", err)
	}
	p.ref = ref
	return ref, nil
}

// ensureInfra returns the ID of the pod's infra container, created from
// spec (hostname, exposed ports, DNS, network sysctls) when missing, and a
// wait for it to run: a new or stopped one is started meanwhile, so that
// the app container is created while it starts.
func (d *Driver) ensureInfra(ctx context.Context, pod *api.Pod, spec *api.ServiceSpec, project string) (string, func() error, error) {
	name := InfraName(pod.Name)
	start := func(id string) func() error {
		done := make(chan error, 1)
		go func() { done <- d.cli.ContainerStart(ctx, id, container.StartOptions{}) }()
		return func() error {
			if err := <-done; err != nil {
				return fmt.Errorf("start infra container %s: %w", name, err)
			}
			return nil
		}
	}
	c, err := d.cli.ContainerInspect(ctx, name)
	switch {
	case err == nil && !d.mineInfra(c):
		return "", nil, inTheWay(name)
	case err == nil && c.State != nil && c.State.Running:
		return c.ID, func() error { return nil }, nil
	case err == nil:
		return c.ID, start(c.ID), nil
	case !cerrdefs.IsNotFound(err):
		return "", nil, fmt.Errorf("inspect infra container %s: %w", name, err)
	}
	image, err := d.pause.get(ctx, d.cli, d.opts.Binary)
	if err != nil {
		return "", nil, err
	}
	exposed, err := exposedPorts(spec)
	if err != nil {
		return "", nil, err
	}
	noGrace := 0 // the pod's containers are stopped first: nothing is left to wait for
	cfg := &container.Config{
		Image:        image,
		Hostname:     spec.Hostname,
		ExposedPorts: exposed,
		StopTimeout:  &noGrace,
		// dev's own labels, not the project's or the service's: what counts
		// or selects a service's containers by label sees its app containers.
		Labels: d.withCluster(map[string]string{
			api.LabelManaged: "true", api.LabelPod: pod.Name, api.LabelNode: d.opts.Node, LabelInfra: "true",
		}),
	}
	if cfg.Hostname == "" {
		cfg.Hostname = pod.Name
	}
	hc := &container.HostConfig{
		NetworkMode: container.NetworkMode(d.opts.Network),
		IpcMode:     container.IPCModeShareable,
		Sysctls:     netSysctls(spec.Sysctls, true),
	}
	nc := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{d.opts.Network: {}}}
	if spec.HostNetwork {
		// The node's network: its name, ports, resolver and sysctls.
		cfg.Hostname, cfg.ExposedPorts = "", nil
		hc.NetworkMode, hc.Sysctls, nc = network.NetworkHost, nil, nil
	} else {
		d.dns(hc, project)
	}
	resp, err := d.cli.ContainerCreate(ctx, cfg, hc, nc, nil, name)
	if err != nil {
		return "", nil, fmt.Errorf("create infra container %s: %w", name, err)
	}
	return resp.ID, start(resp.ID), nil
}

// RemovePod implements agent.Driver: it force-removes the pod's sidecar
// containers, then its infra container. Nothing left is not an error.
func (d *Driver) RemovePod(ctx context.Context, pod string) error {
	cs, err := d.cli.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", api.LabelPod+"="+pod), filters.Arg("label", LabelSidecar))})
	if err != nil {
		return fmt.Errorf("remove pod %s: list its sidecars: %w", pod, err)
	}
	for _, c := range cs {
		if !d.mine(c.Labels) {
			continue // another cluster's, on a shared engine
		}
		name := c.ID
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		if err := d.removeContainer(ctx, c.ID, name); err != nil {
			return fmt.Errorf("remove pod %s: %w", pod, err)
		}
	}
	infra, err := d.cli.ContainerInspect(ctx, InfraName(pod))
	switch {
	case cerrdefs.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("remove infra container of %s: %w", pod, err)
	case !d.mineInfra(infra):
		return nil // not ours: never removed
	}
	err = d.cli.ContainerRemove(ctx, infra.ID, container.RemoveOptions{Force: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove infra container of %s: %w", pod, err)
	}
	return nil
}

// mineInfra reports whether c is an infra container this cluster's dev made.
func (d *Driver) mineInfra(c container.InspectResponse) bool {
	return c.Config != nil && c.Config.Labels[LabelInfra] == "true" && d.mine(c.Config.Labels)
}

// LabelSidecar names, on a sidecar's container, the sidecar it runs.
const LabelSidecar = "dev.sidecar"

// netSysctls returns the sysctls of the network namespace (net.*) when net
// is true, the others otherwise: the former are set on the infra
// container, which owns that namespace.
func netSysctls(all map[string]string, net bool) map[string]string {
	var out map[string]string
	for k, v := range all {
		if strings.HasPrefix(k, "net.") == net {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}
