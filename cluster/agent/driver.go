package agent

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/devhq/dev/cluster/api"
)

// Driver is what the node agent needs from a container engine. The Docker
// implementation lives in cluster/agent/docker; tests of pure logic use a fake.
type Driver interface {
	// EnsureNetwork makes the node's pod network exist: one bridge network
	// owning subnet (CIDR, e.g. "10.213.1.0/24"). Idempotent.
	EnsureNetwork(ctx context.Context, subnet string) error
	// Create creates, without starting, the container of pod from spec, and
	// returns its ID. The container joins the pod's infra container, which
	// holds the pod's network and IPC namespaces and is made and started
	// first when missing; Start starts it again when it is stopped. Any
	// leftover container with the same name is replaced.
	// Errors: ErrImageNotFound when the image is missing locally.
	Create(ctx context.Context, pod *api.Pod, spec *api.ServiceSpec) (string, error)
	// Start starts a created or exited container.
	Start(ctx context.Context, id string) error
	// Stop sends signal (empty: the image's stop signal, else SIGTERM) and
	// kills after grace.
	Stop(ctx context.Context, id string, signal string, grace time.Duration) error
	// Remove force-removes the container and its anonymous volumes, and the
	// pod's secret files. A missing container is not an error.
	Remove(ctx context.Context, id string) error
	// CreateSidecar creates, without starting, the container of a sidecar
	// of pod (api.SidecarContainer), in the pod's namespaces, from the
	// sidecar's spec, and returns its ID.
	CreateSidecar(ctx context.Context, pod *api.Pod, spec *api.ServiceSpec) (string, error)
	// HasFiles reports whether the secret and config files of container
	// (its name: the pod's, or api.SidecarContainer) are on the node. A
	// host reboot empties the tmpfs that holds them, and a container that
	// bind-mounts them cannot start again: it is made again instead.
	HasFiles(container string) bool
	// RemovePod force-removes what is left of a pod once its containers
	// were stopped: its sidecars' containers, then its infra container.
	// Nothing left is not an error.
	RemovePod(ctx context.Context, pod string) error
	// Kill sends signal (a NormalizeSignal form) to the running container
	// id, as `docker kill -s`.
	Kill(ctx context.Context, id, signal string) error
	// Pause freezes the processes of the running container id (docker
	// pause); Unpause thaws them. Pausing a paused container, or unpausing
	// one that is not, is not an error.
	Pause(ctx context.Context, id string) error
	Unpause(ctx context.Context, id string) error
	// Top lists the processes of the running container id, as `docker
	// top` (the Engine's ContainerTop, ps's default columns).
	Top(ctx context.Context, id string) (api.ProcessList, error)
	// Image describes the image container id runs (its Container field
	// left empty), as `docker compose images`; want is the image the
	// container's spec names, to name an image pinned by ID. ErrNotFound
	// if the container does not exist.
	Image(ctx context.Context, id, want string) (api.ContainerImage, error)
	// Inspect returns the container's state; ErrNotFound if it does not exist.
	Inspect(ctx context.Context, id string) (Container, error)
	// List returns every container dev manages on this engine (label
	// dev.managed), running or not.
	List(ctx context.Context) ([]Container, error)
	// Events streams the pod name of every managed container that changes
	// (start, die, destroy, health_status...). Both channels close when ctx
	// ends; an error ends the stream.
	Events(ctx context.Context) (<-chan string, <-chan error)
	// Logs streams the container's stdout and stderr, demultiplexed into one
	// plain stream. tail < 0 means all.
	Logs(ctx context.Context, id string, follow bool, tail int) (io.ReadCloser, error)
	// RemoveVolumes removes the named volumes of project (label dev.project).
	RemoveVolumes(ctx context.Context, project string) error
	// Ping checks that the engine answers (the agent bounds it with a
	// timeout: an engine that hangs is as unreachable as one that refuses).
	Ping(ctx context.Context) error
	// Resources reports what the engine offers: CPUs and memory.
	Resources(ctx context.Context) (api.ResourceAmounts, error)
	// SaveImage streams an image as a tar archive (docker save); LoadImage
	// loads one (docker load) that must hold exactly the image want and
	// nothing else. Together they move images between nodes without a
	// registry.
	SaveImage(ctx context.Context, ref string) (io.ReadCloser, error)
	LoadImage(ctx context.Context, r io.Reader, want string) error

	// Exec runs req.Cmd in the running container id with the process's
	// streams connected to stdio (stdin only when stdio.Stdin is set; a TTY
	// when req.Tty) and returns its exit code once it ends. A command that
	// cannot be started gives Docker's codes (126, 127), not an error.
	Exec(ctx context.Context, id string, req api.ExecRequest, stdio api.IO) (int, error)
	// RunAttached creates the container of a one-off pod from spec (with
	// tty), attaches stdio, starts it and returns its exit code once it
	// ends. It leaves the container for the caller to remove. Errors:
	// ErrImageNotFound as Create.
	RunAttached(ctx context.Context, pod *api.Pod, spec *api.ServiceSpec, tty bool, stdio api.IO) (int, error)

	// CopyTo extracts the tar archive r into directory dir (absolute) of
	// container id, creating dir and its parents when missing, as `docker cp`.
	CopyTo(ctx context.Context, id, dir string, r io.Reader) error
	// CopyFrom returns a tar archive of path p (absolute) of container id,
	// p's last element as its top entry, and what p is, as `docker cp`;
	// StatPath only says what p is. Errors: ErrNotFound for a missing p.
	CopyFrom(ctx context.Context, id, p string) (io.ReadCloser, api.PathStat, error)
	StatPath(ctx context.Context, id, p string) (api.PathStat, error)
	// RemoveFiles removes paths (absolute, recursively) from the running
	// container id; paths that do not exist are not an error.
	RemoveFiles(ctx context.Context, id string, paths []string) error
}

// Container is a managed container as the driver sees it.
type Container struct {
	ID       string
	Name     string
	Pod      string // label dev.pod
	Project  string // label dev.project
	SpecHash string // label dev.spec
	Labels   map[string]string
	// State is Docker's: created, running, paused, restarting, exited, dead.
	State      string
	ExitCode   int
	OOMKilled  bool
	Error      string
	Health     string // healthy, unhealthy, starting, or empty
	IP         string // address on the pod network (its pod's, held by the infra container)
	StartedAt  time.Time
	FinishedAt time.Time
	// InfraState is the state of the pod's infra container, whose
	// namespaces the container joins: Docker's states, or InfraMissing;
	// empty for a container with a network namespace of its own (one-off
	// pods, and pods created before infra containers).
	InfraState string
}

// InfraMissing is the InfraState of a container whose infra container is
// gone.
const InfraMissing = "missing"

// Running reports whether the container's process is up (frozen, too,
// when paused: Docker says running of a paused container).
func (c Container) Running() bool {
	return c.State == "running" || c.State == "restarting" || c.State == StatePaused
}

// StatePaused is Docker's state of a paused container (`dev pause`).
const StatePaused = "paused"

// Paused reports whether the container is frozen (`dev pause`).
func (c Container) Paused() bool { return c.State == StatePaused }

// Errors a Driver returns, to be tested with errors.Is.
var (
	ErrNotFound      = errors.New("container not found")
	ErrImageNotFound = errors.New("image not found")
)
