package api

import "fmt"

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
