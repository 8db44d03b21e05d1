package agent_test

import (
	"fmt"
	"testing"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/state"
)

// TestSidecars: a pod's sidecar containers are made after its service's,
// restarted per their own policy, reported in the pod's status (the pod is
// ready only with all of them running), and stopped before the service's
// container when the pod goes, then removed with the pod.
func TestSidecars(t *testing.T) {
	e := newEnv(t)
	s := spec("web", "")
	shipper := spec("logs", api.RestartAlways)
	shipper.StopSignal = "SIGUSR1" // to tell its stop from the service's
	s.Sidecars = []api.ServiceSpec{shipper}
	name := e.deploy(s, 1, node)
	sc := api.SidecarContainer(name, "logs")
	e.run()
	e.waitRunning(name, 0)
	eventually(t, "pod reports its sidecar running", func() error {
		p, _ := e.pod(name)
		if len(p.Status.Sidecars) != 1 || p.Status.Sidecars[0].State != api.PodRunning || !p.Ready() {
			return fmt.Errorf("status %+v", p.Status)
		}
		return nil
	})
	if c, ok := e.d.container(sc); !ok || c.State != "running" {
		t.Fatalf("sidecar container %+v", c)
	}

	// The sidecar crashes: restarted, counted; the pod is not ready meanwhile.
	e.d.exit(sc, 1)
	eventually(t, "sidecar restarted", func() error {
		p, _ := e.pod(name)
		if len(p.Status.Sidecars) != 1 || p.Status.Sidecars[0].Restarts != 1 || p.Status.Sidecars[0].State != api.PodRunning {
			return fmt.Errorf("status %+v", p.Status.Sidecars)
		}
		return nil
	})

	// The pod goes: the sidecar is stopped before the service's container.
	e.apply(&state.MarkPodsDeleting{Names: []string{name}})
	eventually(t, "pod removed", func() error {
		if _, ok := e.pod(name); ok {
			return fmt.Errorf("still there")
		}
		return nil
	})
	// The fake records a sidecar's calls under its pod's name.
	var stops []string
	for _, c := range e.d.callsFor(name) {
		if c.Op == "stop" {
			stops = append(stops, c.Signal)
		}
	}
	if len(stops) != 2 || stops[0] != "SIGUSR1" || e.d.count("remove-pod", name) != 1 {
		t.Errorf("calls %+v; want the sidecar stopped (SIGUSR1), then the service's container, then the pod removed", e.d.callsFor(name))
	}
}
