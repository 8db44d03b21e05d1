package api

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
)

// CheckReplicas is the one rule on a service's replica count, applied by
// the compose loader, the CLI, the API and the state machine alike: never
// negative, and at most one where a fixed container_name is set (two
// containers cannot share a name).
func CheckReplicas(service string, replicas int, containerName string) error {
	if replicas < 0 {
		return fmt.Errorf("service %q: replicas must be >= 0, got %d", service, replicas)
	}
	if containerName != "" && replicas > 1 {
		return fmt.Errorf("service %q: container_name %q cannot be used with replicas %d; remove container_name or set replicas to 1",
			service, containerName, replicas)
	}
	return nil
}

var projectNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// nodeLabelKeyRE is what a node label's key may be: what placement
// constraints (node.labels.KEY) and selectors can spell.
var nodeLabelKeyRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$`)

// CheckNodeLabel is the one rule on a label set with dev node label: a key
// constraints can name, a value without spaces, '=' or ',' ("" removes).
func CheckNodeLabel(key, value string) error {
	if !nodeLabelKeyRE.MatchString(key) {
		return fmt.Errorf("node label key %q: use letters, digits, '.', '_', '/' and '-', at most 63, starting with a letter or digit", key)
	}
	if strings.ContainsAny(value, " \t\n=,") || len(value) > 253 {
		return fmt.Errorf("node label %s=%q: a value has no spaces, '=' or ',' and at most 253 characters", key, value)
	}
	return nil
}

// ValidateProject is the one check of a project to deploy, applied by the
// CLI before it sends one, the API as it takes one, the leader on a write
// a node forwards, and the state machine: a name compose accepts, services
// with names, images and their project's name, replica counts
// (CheckReplicas), placements the scheduler can read, and depends_on
// naming services of the project.
func ValidateProject(p *Project) error {
	if !projectNameRE.MatchString(p.Name) {
		return fmt.Errorf("project name %q: use lowercase letters, digits, '-' and '_'", p.Name)
	}
	if len(p.Services) == 0 {
		return fmt.Errorf("project %s has no services", p.Name)
	}
	seen := map[string]bool{}
	for _, s := range p.Services {
		switch {
		case s.Name == "":
			return fmt.Errorf("project %s: a service has no name", p.Name)
		case seen[s.Name]:
			return fmt.Errorf("project %s: service %s appears twice", p.Name, s.Name)
		case s.Project != p.Name:
			return fmt.Errorf("service %s: project %q, want %q", s.Name, s.Project, p.Name)
		case s.Image == "":
			return fmt.Errorf("service %s: no image", s.Name)
		}
		if err := CheckReplicas(s.Name, s.Replicas, s.ContainerName); err != nil {
			return err
		}
		if _, err := ParsePlacement(s.Placement); err != nil {
			return fmt.Errorf("service %s: %w", s.Name, err)
		}
		if err := checkPID(s.Name, s.PID); err != nil {
			return err
		}
		seen[s.Name] = true
	}
	for _, s := range p.Services {
		for _, c := range s.Sidecars {
			switch {
			case c.Name == "" || c.Name == "infra":
				return fmt.Errorf("service %s: a sidecar is named %q; give it a service name other than infra", s.Name, c.Name)
			case seen[c.Name]:
				return fmt.Errorf("service %s: sidecar %s is also a service or another sidecar", s.Name, c.Name)
			case c.Image == "":
				return fmt.Errorf("sidecar %s of service %s: no image", c.Name, s.Name)
			case len(c.Sidecars) > 0:
				return fmt.Errorf("sidecar %s of service %s has sidecars of its own", c.Name, s.Name)
			case c.HostNetwork:
				return fmt.Errorf("sidecar %s of service %s: a sidecar has its pod's network; set network_mode: host on %s instead", c.Name, s.Name, s.Name)
			}
			if err := checkPID(c.Name, c.PID); err != nil {
				return err
			}
			seen[c.Name] = true
		}
	}
	if err := CheckIngress(p); err != nil {
		return err
	}
	for _, s := range p.Services {
		for _, d := range s.DependsOn {
			if d.Required && !seen[d.Service] {
				return fmt.Errorf("service %s depends on undefined service %s", s.Name, d.Service)
			}
		}
	}
	return nil
}

// checkPID checks a ServiceSpec.PID.
func checkPID(service, pid string) error {
	switch pid {
	case "", PIDPod, PIDHost:
		return nil
	}
	return fmt.Errorf("service %s: pid %q: want %q, %q or none", service, pid, PIDPod, PIDHost)
}

var oneOffNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// OneOffName returns a new one-off pod name (`dev run`):
// <project>-<service>-run-<8 hex digits>.
func OneOffName(project, service string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%s-run-%s", project, service, hex.EncodeToString(b))
}

// CheckOneOffName says whether name may be a one-off pod of the service:
// <project>-<service>-run-<suffix>. Creating its container replaces any
// container of that name, so it must not be a replica's.
func CheckOneOffName(project, service, name string) error {
	if prefix := project + "-" + service + "-run-"; !strings.HasPrefix(name, prefix) || len(name) == len(prefix) || !oneOffNameRE.MatchString(name) {
		return fmt.Errorf("invalid one-off pod name %q, want %s<suffix>", name, prefix)
	}
	return nil
}
