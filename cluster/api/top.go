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

// ContainerImage is the image one container of a pod runs, as its node's
// Engine knows it (`dev images`, as `docker compose images`): Repository
// and Tag of the reference the container was made from ("<none>" when the
// image has no tag any more), the image's ID ("sha256:...") and size.
type ContainerImage struct {
	Container  string `json:"container"`
	Repository string `json:"repository"`
	Tag        string `json:"tag"`
	ImageID    string `json:"image_id"`
	Size       int64  `json:"size"`
}

// PodImages answers GET /v1/pods/{name}/images (`dev images`): the images
// of each container of the pod (the service's, then its sidecars'),
// running or not, read on the node that runs it.
type PodImages struct {
	Pod        string           `json:"pod"`
	Service    string           `json:"service"`
	Node       string           `json:"node"`
	Containers []ContainerImage `json:"containers"`
}
