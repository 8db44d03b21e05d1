package api

// ProcessList is the processes of one container as `docker top` lists
// them: Titles are ps's column names (UID, PID, PPID, C, STIME, TTY, TIME,
// CMD), and each of Processes is a row of those columns.
type ProcessList struct {
	Titles    []string   `json:"titles"`
	Processes [][]string `json:"processes"`
}

// ContainerTop is the processes of one container of a pod: the service's
// (Container is the service's name) or a sidecar's (its name).
type ContainerTop struct {
	Container string `json:"container"`
	ProcessList
}

// PodTop answers GET /v1/pods/{name}/top (`dev top`): the processes of
// each running container of the pod, read on the node that runs it.
type PodTop struct {
	Pod        string         `json:"pod"`
	Service    string         `json:"service"`
	Node       string         `json:"node"`
	Containers []ContainerTop `json:"containers"`
}
