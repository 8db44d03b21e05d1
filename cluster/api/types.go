// Package api holds the wire types shared by the CLI, the API server and every
// cluster component, plus the HTTP client for the agent API. It imports nothing
// internal.
package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Well-known label keys carried by every pod and every container dev creates.
const (
	LabelProject = "dev.project"
	LabelService = "dev.service"
	LabelPod     = "dev.pod"
	LabelNode    = "dev.node"
	// LabelSpec carries the pod template hash on containers, so an agent can
	// tell after a restart whether a running container still matches its pod.
	LabelSpec = "dev.spec"
	// LabelManaged marks every Docker object (container, volume) dev owns.
	LabelManaged = "dev.managed"
	// LabelCluster names the cluster (its CA fingerprint) a container
	// belongs to, so that agents of different clusters sharing an Engine
	// never take each other's containers for orphans.
	LabelCluster = "dev.cluster"
)

// InCluster reports whether labels put a container in cluster: one
// labelled with it, or with no cluster label (made before the label
// existed), or any when cluster is "" (not known yet).
func InCluster(labels map[string]string, cluster string) bool {
	cl, ok := labels[LabelCluster]
	return !ok || cluster == "" || cl == cluster
}

// Pod states as shown by `dev ps`.
const (
	PodPending = "pending"
	PodRunning = "running"
	PodExited  = "exited"
	PodFailed  = "failed"
)

// PodStoppedMessage is the status message the agent reports for a pod
// stopped by `dev stop` (Pod.Stopped says it; the message only shows it)
// (state exited): the agent keeps it stopped, events call it Exited, not
// Failed.
const PodStoppedMessage = "stopped (dev stop)"

// Pod health values as shown by `dev ps`; empty means no healthcheck.
const (
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
	HealthStarting  = "starting"
)

// Restart policies (compose `restart:`). dev's default is RestartAlways: a
// replication controller keeps its replica count.
const (
	RestartAlways        = "always"
	RestartNo            = "no"
	RestartOnFailure     = "on-failure"
	RestartUnlessStopped = "unless-stopped"
)

// depends_on conditions, as compose spells them.
const (
	ConditionStarted               = "service_started"
	ConditionHealthy               = "service_healthy"
	ConditionCompletedSuccessfully = "service_completed_successfully"
)

// Node statuses as shown by `dev nodes`.
const (
	NodeReady = "ready"
	NodeDown  = "down"
	NodeLeft  = "left"
)

// Duration is a time.Duration that encodes as a Go duration string in JSON.
type Duration time.Duration

// MarshalJSON encodes d as "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON accepts "1m30s" or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("parse duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("parse duration %s: %w", b, err)
	}
	*d = Duration(n)
	return nil
}

// Project is a deployable compose project: what `dev up` submits.
type Project struct {
	Name     string        `json:"name"`
	Services []ServiceSpec `json:"services"`
	// Volumes lists the project's named volumes by their compose name; the
	// Docker volume is named "<project>_<name>".
	Volumes []string `json:"volumes,omitempty"`
	// NoStart (`dev up --no-start`, as compose's) creates the services' new
	// pods stopped: their containers created, not started, until `dev
	// start`; pods already running are left running.
	NoStart bool `json:"no_start,omitempty"`
}

// Service returns the named service spec, or nil.
func (p *Project) Service(name string) *ServiceSpec {
	for i := range p.Services {
		if p.Services[i].Name == name {
			return &p.Services[i]
		}
	}
	return nil
}

// ServiceSpec is the pod template of one compose service.
type ServiceSpec struct {
	Project string `json:"project"`
	Name    string `json:"name"`
	// Image is the reference containers are created from. For built services
	// it is the tag the build produced ("<project>-<service>" by default).
	Image string `json:"image"`
	// ImageID is the resolved image ID at submission time, when known. It is
	// part of the spec so that a rebuilt image changes the spec hash.
	ImageID string     `json:"image_id,omitempty"`
	Build   *BuildSpec `json:"build,omitempty"`

	Command     []string          `json:"command,omitempty"`
	Entrypoint  []string          `json:"entrypoint,omitempty"`
	Environment map[string]string `json:"environment,omitempty"`
	Ports       []PortSpec        `json:"ports,omitempty"`
	Expose      []string          `json:"expose,omitempty"`
	Volumes     []VolumeMount     `json:"volumes,omitempty"`
	Secrets     []SecretMount     `json:"secrets,omitempty"`
	// Configs are compose `configs:`, files like Secrets (mode 0444 unless set).
	Configs     []SecretMount     `json:"configs,omitempty"`
	Healthcheck *Healthcheck      `json:"healthcheck,omitempty"`
	Restart     string            `json:"restart,omitempty"`
	Replicas    int               `json:"replicas"`
	Resources   Resources         `json:"resources,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	DependsOn   []Dependency      `json:"depends_on,omitempty"`

	StopSignal      string            `json:"stop_signal,omitempty"`
	StopGracePeriod *Duration         `json:"stop_grace_period,omitempty"`
	User            string            `json:"user,omitempty"`
	WorkingDir      string            `json:"working_dir,omitempty"`
	CapAdd          []string          `json:"cap_add,omitempty"`
	CapDrop         []string          `json:"cap_drop,omitempty"`
	Sysctls         map[string]string `json:"sysctls,omitempty"`
	Hostname        string            `json:"hostname,omitempty"`
	ContainerName   string            `json:"container_name,omitempty"`
	Init            *bool             `json:"init,omitempty"`
	// Update and Rollback are compose `deploy.update_config` and
	// `deploy.rollback_config`: how pods are replaced when the template
	// changes, and when an update is rolled back.
	Update   *UpdateConfig `json:"update,omitempty"`
	Rollback *UpdateConfig `json:"rollback,omitempty"`
	// Ingress are the service's HTTP routes (compose extension x-ingress):
	// the ingress router of every node sends requests for a host and path
	// to the service's ready pods. Not part of the pod template's hash:
	// changing a route replaces no pod.
	Ingress []IngressRoute `json:"ingress,omitempty"`
	// Placement is compose `deploy.placement`.
	Placement Placement `json:"placement,omitzero"`
	// Networks are the compose networks the service joins, sorted by name
	// ("default" when the file names none). They scope service discovery: a
	// pod resolves only services it shares a network with.
	Networks  []NetworkAttachment `json:"networks,omitempty"`
	Tty       bool                `json:"tty,omitempty"`
	StdinOpen bool                `json:"stdin_open,omitempty"`
	// Sidecars are the services declared with `network_mode: service:<this
	// service>`: one container each in every pod of this service, sharing
	// its network and IPC namespaces (localhost) and placed, scaled,
	// updated and removed with it. A sidecar has no pods of its own.
	Sidecars []ServiceSpec `json:"sidecars,omitempty"`
	// HostNetwork is compose `network_mode: host`: the pod runs in its
	// node's network namespace, its IP is the node's address on the pod
	// network (the gateway), and the ports it
	// serves (ServicePorts) are the node's (HostPorts).
	HostNetwork bool `json:"host_network,omitempty"`
	// PID is the PID namespace the container runs in: "" its own, PIDPod
	// the pod's (held by its infra container), PIDHost the node's.
	PID string `json:"pid,omitempty"`
	// Recreate is the token of the last `dev up --force-recreate`: a new
	// one is a new template, so the pods are replaced (rolling) though
	// nothing else changed. An apply without one keeps the service's
	// (KeepRecreate), so a later plain `dev up` replaces nothing.
	Recreate string `json:"recreate,omitempty"`
}

// KeepRecreate gives s the Recreate token of stored (the service's
// current template) when s has none.
func (s *ServiceSpec) KeepRecreate(stored ServiceSpec) {
	if s.Recreate == "" {
		s.Recreate = stored.Recreate
	}
}

// PID namespace modes of ServiceSpec.PID.
const (
	// PIDPod is the pod's shared PID namespace: compose `pid: service:X`
	// in a sidecar of X puts the sidecar and X's container in it, so each
	// sees the other's processes; the infra container's pause is its PID 1
	// and reaps orphans.
	PIDPod = "pod"
	// PIDHost is compose `pid: host`.
	PIDHost = "host"
)

// Hash is the pod template hash: it changes when anything that requires new
// containers changes, a sidecar's spec included. Replicas are not part of
// it.
func (s ServiceSpec) Hash() string {
	b, err := json.Marshal(s.hashed())
	if err != nil {
		panic(fmt.Sprintf("hash service spec: %v", err)) // plain data: cannot fail
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// hashed is s without what does not make new containers. A sealed secret
// or config counts by its digest (sealing is random: the same content
// seals differently); one in the clear (a cluster without a data key)
// by its content, as it always has, so that replaying an old log gives
// the hashes it gave then.
func (s ServiceSpec) hashed() ServiceSpec {
	s = s.MapFiles(func(m SecretMount) SecretMount {
		if m.Sealed != nil {
			m.Sealed = nil
		}
		return m
	})
	s.Replicas = 0
	s.DependsOn = nil               // ordering only; changing it does not recreate pods
	s.Build = nil                   // the build's output is captured by ImageID
	s.Update, s.Rollback = nil, nil // how to roll, not what runs
	s.Ingress = nil                 // how requests reach the pods, not what runs
	if len(s.Sidecars) > 0 {
		sc := make([]ServiceSpec, len(s.Sidecars))
		for i, c := range s.Sidecars {
			sc[i] = c.hashed()
		}
		s.Sidecars = sc
	}
	return s
}

// Redacted is s as the API shows it: every secret's and config's content
// (clear or sealed) replaced by its SHA-256 (Digest), its sidecars' too.
func (s ServiceSpec) Redacted() ServiceSpec {
	return s.MapFiles(func(m SecretMount) SecretMount {
		m.Digest = m.ContentDigest()
		m.Content, m.Sealed = nil, nil
		return m
	})
}

// MapFiles is s with fn applied to every secret and config, its sidecars'
// too (the slices are copies).
func (s ServiceSpec) MapFiles(fn func(SecretMount) SecretMount) ServiceSpec {
	mapped := func(ms []SecretMount) []SecretMount {
		if ms == nil {
			return nil
		}
		out := make([]SecretMount, len(ms))
		for i, m := range ms {
			out[i] = fn(m)
		}
		return out
	}
	s.Secrets, s.Configs = mapped(s.Secrets), mapped(s.Configs)
	if s.Sidecars != nil {
		sc := make([]ServiceSpec, len(s.Sidecars))
		for i, c := range s.Sidecars {
			sc[i] = c.MapFiles(fn)
		}
		s.Sidecars = sc
	}
	return s
}

// Files lists every secret and config of s, its sidecars' too.
func (s ServiceSpec) Files() []SecretMount {
	var out []SecretMount
	s.MapFiles(func(m SecretMount) SecretMount { out = append(out, m); return m })
	return out
}

// SidecarContainer is the name of the container of sidecar in pod.
func SidecarContainer(pod, sidecar string) string { return pod + "." + sidecar }

// PodReservations is what one pod reserves: the service's reservations
// and its sidecars'.
func (s ServiceSpec) PodReservations() ResourceAmounts {
	r := s.Resources.Reservations
	for _, c := range s.Sidecars {
		r.NanoCPUs += c.Resources.Reservations.NanoCPUs
		r.MemoryBytes += c.Resources.Reservations.MemoryBytes
	}
	return r
}

// RestartPolicy returns the effective restart policy (default "always").
func (s ServiceSpec) RestartPolicy() string {
	if s.Restart == "" {
		return RestartAlways
	}
	return s.Restart
}

// RestartsAfter says whether a container that exited with exitCode is
// started again under restart policy.
func RestartsAfter(policy string, exitCode int) bool {
	switch policy {
	case RestartNo:
		return false
	case RestartOnFailure:
		return exitCode != 0
	default:
		return true
	}
}

// Update orders and failure actions.
const (
	OrderStartFirst = "start-first"
	OrderStopFirst  = "stop-first"

	FailurePause    = "pause"
	FailureContinue = "continue"
	FailureRollback = "rollback"
)

// UpdateConfig is compose `deploy.update_config` (and rollback_config).
type UpdateConfig struct {
	// Parallelism is how many pods are replaced at a time; 0 means all.
	Parallelism int `json:"parallelism"`
	// Delay is the pause between batches.
	Delay *Duration `json:"delay,omitempty"`
	// Order is start-first or stop-first; empty picks start-first unless the
	// service keeps data on its node (then stop-first).
	Order string `json:"order,omitempty"`
	// Monitor is how long a new pod is watched for failure before it counts
	// as updated.
	Monitor *Duration `json:"monitor,omitempty"`
	// FailureAction is pause (default), continue or rollback.
	FailureAction   string  `json:"failure_action,omitempty"`
	MaxFailureRatio float64 `json:"max_failure_ratio,omitempty"`
}

// UpdateSettings returns the effective update (or, while rolling back, the
// rollback) settings with defaults filled in: parallelism 1, monitor 0,
// failure action pause, order by HasHostData.
func (s ServiceSpec) UpdateSettings(rollingBack bool) UpdateConfig {
	c := UpdateConfig{Parallelism: 1}
	if rollingBack && s.Rollback != nil {
		c = *s.Rollback
	} else if !rollingBack && s.Update != nil {
		c = *s.Update
	}
	if c.Monitor == nil {
		// Like Kubernetes' minReadySeconds (0), not swarm's 5s: a new pod
		// counts as soon as it is ready (healthy, with a healthcheck).
		var d Duration
		c.Monitor = &d
	}
	if c.FailureAction == "" {
		c.FailureAction = FailurePause
	}
	if c.Order == "" {
		c.Order = OrderStartFirst
		if s.HasHostData() {
			c.Order = OrderStopFirst
		}
	}
	return c
}

// Update states of a replication controller.
const (
	UpdateUpdating    = "updating"
	UpdatePaused      = "paused"
	UpdateCompleted   = "completed"
	UpdateRollingBack = "rolling_back"
	UpdateRolledBack  = "rolled_back"
)

// UpdateStatus is the progress of a controller's rolling update.
type UpdateStatus struct {
	State     string    `json:"state"`
	Message   string    `json:"message,omitempty"`
	StartedAt time.Time `json:"started_at,omitzero"`
	// LastBatchAt is when the last batch of new pods was started (for the
	// delay between batches).
	LastBatchAt time.Time `json:"last_batch_at,omitzero"`
}

// Placement is compose `deploy.placement`: constraints such as
// "node.hostname==h1" or "node.labels.zone!=east", spread preferences over a
// node label ("node.labels.zone"), and a cap of replicas per node.
type Placement struct {
	Constraints []string `json:"constraints,omitempty"`
	Preferences []string `json:"preferences,omitempty"` // spread descriptors
	MaxPerNode  int      `json:"max_per_node,omitempty"`
}

// HasHostData reports whether the service's pods keep data on their node
// (bind mounts or named volumes), which pins them to that node.
func (s ServiceSpec) HasHostData() bool {
	for _, v := range s.Volumes {
		if v.Type == MountBind || (v.Type == MountVolume && v.Source != "") {
			return true
		}
	}
	return false
}

// NetworkAttachment is one entry of a service's compose `networks:`.
type NetworkAttachment struct {
	Name    string   `json:"name"`
	Aliases []string `json:"aliases,omitempty"`
}

// NetworkNames returns the names of the networks the service joins.
func (s ServiceSpec) NetworkNames() []string {
	if len(s.Networks) == 0 {
		return []string{"default"}
	}
	out := make([]string, len(s.Networks))
	for i, n := range s.Networks {
		out[i] = n.Name
	}
	return out
}

// ServicePorts are the ports a service's virtual IP serves: the targets of
// `ports:` and the ports of `expose:` (as "80", "80/udp" or "8000-8002"),
// deduplicated, in order.
func (s ServiceSpec) ServicePorts() []PortSpec {
	var out []PortSpec
	seen := map[string]bool{}
	add := func(p PortSpec) {
		key := fmt.Sprintf("%d/%s", p.Target, p.Protocol)
		if !seen[key] {
			seen[key] = true
			out = append(out, p)
		}
	}
	for _, p := range s.Ports {
		add(PortSpec{Name: p.Name, Target: p.Target, Protocol: p.Proto()})
	}
	for _, e := range s.Expose {
		num, proto, _ := strings.Cut(e, "/")
		if proto == "" {
			proto = "tcp"
		}
		lo, hi, isRange := strings.Cut(num, "-")
		first, err1 := strconv.ParseUint(lo, 10, 16)
		last := first
		var err2 error
		if isRange {
			last, err2 = strconv.ParseUint(hi, 10, 16)
		}
		if err1 != nil || err2 != nil || last < first || last-first > 1000 {
			continue // compose-go validated the syntax; ignore what we cannot read
		}
		for n := first; n <= last; n++ {
			add(PortSpec{Target: uint16(n), Protocol: proto})
		}
	}
	return out
}

// HostPorts are the node ports one pod of the service takes, as
// "80/tcp": every port it serves when it runs in the node's network
// (HostNetwork), none otherwise. The scheduler places no two pods that
// take one port on the same node.
func (s ServiceSpec) HostPorts() []string {
	if !s.HostNetwork {
		return nil
	}
	ports := s.ServicePorts()
	out := make([]string, len(ports))
	for i, p := range ports {
		out[i] = fmt.Sprintf("%d/%s", p.Target, p.Protocol)
	}
	return out
}

// BuildSpec is compose `build:`.
type BuildSpec struct {
	Context    string            `json:"context"`
	Dockerfile string            `json:"dockerfile,omitempty"`
	Target     string            `json:"target,omitempty"`
	Args       map[string]string `json:"args,omitempty"`
}

// PortSpec is one compose `ports:` entry.
type PortSpec struct {
	Name      string `json:"name,omitempty"`
	Target    uint16 `json:"target"`
	Published uint16 `json:"published,omitempty"`
	Protocol  string `json:"protocol"` // tcp or udp
	HostIP    string `json:"host_ip,omitempty"`
	// Mode is compose's port mode: "" (ingress, the routing mesh: published on
	// every node, balanced over every pod) or PortModeHost (published only on
	// the nodes that run the service's pods, to those pods, keeping the
	// client's address).
	Mode string `json:"mode,omitempty"`
}

// Proto is the port's protocol, "tcp" when unset: the one place the
// default lives.
func (p PortSpec) Proto() string {
	if p.Protocol == "" {
		return "tcp"
	}
	return p.Protocol
}

// PortModeHost is compose's `mode: host` of a published port.
const PortModeHost = "host"

// Volume mount types.
const (
	MountVolume = "volume"
	MountBind   = "bind"
	MountTmpfs  = "tmpfs"
)

// VolumeMount is one compose `volumes:` entry of a service.
type VolumeMount struct {
	Type string `json:"type"`
	// Source is the compose volume name for MountVolume (empty: anonymous),
	// the absolute host path for MountBind, empty for MountTmpfs.
	Source   string `json:"source,omitempty"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

// SecretMount is a file-based secret or config, mounted read-only at
// Target (default /run/secrets/<name> for a secret, /<name> for a
// config). Its content comes in the clear from the CLI; a manager seals
// it with the cluster's data key before it is stored (Sealed, Digest),
// and the nodes that run a pod using it get it from a manager.
type SecretMount struct {
	Name    string `json:"name"`
	Target  string `json:"target"`
	Content []byte `json:"content"`
	Mode    uint32 `json:"mode,omitempty"`
	// Sealed is the content sealed with the data key, in the stored spec
	// of a cluster whose secrets are sealed (Content is then empty).
	Sealed []byte `json:"sealed,omitempty"`
	// Digest identifies the content: with Sealed, a digest keyed by the
	// data key ("hmac-sha256:", so that a worker cannot test guesses
	// against it); in what the API shows of content in the clear
	// (ServiceSpec.Redacted), its SHA-256.
	Digest string `json:"digest,omitempty"`
}

// ContentDigest identifies m's content: Digest when the content is
// sealed, else the SHA-256 of Content.
func (m SecretMount) ContentDigest() string {
	if m.Content == nil && m.Digest != "" {
		return m.Digest
	}
	sum := sha256.Sum256(m.Content)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// NeedsOpening reports whether m's content is sealed and not yet opened.
func (m SecretMount) NeedsOpening() bool { return m.Content == nil && m.Sealed != nil }

// Healthcheck is compose `healthcheck:`.
type Healthcheck struct {
	Test        []string  `json:"test"`
	Interval    *Duration `json:"interval,omitempty"`
	Timeout     *Duration `json:"timeout,omitempty"`
	StartPeriod *Duration `json:"start_period,omitempty"`
	Retries     int       `json:"retries,omitempty"`
	Disable     bool      `json:"disable,omitempty"`
}

// Resources is compose `deploy.resources`.
type Resources struct {
	Limits       ResourceAmounts `json:"limits,omitempty"`
	Reservations ResourceAmounts `json:"reservations,omitempty"`
}

// ResourceAmounts are CPU in nano-CPUs (1e9 = one core) and memory in bytes.
type ResourceAmounts struct {
	NanoCPUs    int64 `json:"nano_cpus,omitempty"`
	MemoryBytes int64 `json:"memory_bytes,omitempty"`
	Pids        int64 `json:"pids,omitempty"`
}

// Dependency is one compose `depends_on:` entry.
type Dependency struct {
	Service   string `json:"service"`
	Condition string `json:"condition"`
	Required  bool   `json:"required"`
}

// ReplicationController keeps Replicas pods of one service running.
type ReplicationController struct {
	Project  string      `json:"project"`
	Service  string      `json:"service"`
	Replicas int         `json:"replicas"`
	Template ServiceSpec `json:"template"`
	// SpecHash is Template.Hash(), kept so pods can be compared cheaply.
	SpecHash string `json:"spec_hash"`
	// VIP is the service's virtual IP, allocated from the service CIDR when
	// the controller is created and released with it.
	VIP string `json:"vip,omitempty"`
	// Previous is the template before the last change, for rollbacks.
	Previous *ServiceSpec `json:"previous,omitempty"`
	// Update is the progress of the last template change.
	Update *UpdateStatus `json:"update,omitempty"`
	// PinnedNode is where the pods of a service with host data (bind mounts,
	// named volumes) were first placed; they are only placed there since.
	PinnedNode string `json:"pinned_node,omitempty"`
	// Released is set once the service's depends_on conditions were met; from
	// then on pods are created without waiting again (as compose orders only
	// at start-up).
	Released bool `json:"released,omitempty"`
	// CreateStopped is set by `dev up --no-start`: the controller creates
	// the service's pods stopped (Pod.Stopped), without waiting for its
	// depends_on, and the agent creates their containers without starting
	// them. `dev start` of one of its pods, `dev up`, `dev scale` and a
	// rollback clear it.
	CreateStopped bool   `json:"create_stopped,omitempty"`
	CreateIndex   uint64 `json:"create_index"`
	ModifyIndex   uint64 `json:"modify_index"`
}

// Key is "<project>/<service>".
func (rc *ReplicationController) Key() string { return RCKey(rc.Project, rc.Service) }

// RCKey builds a replication controller key.
func RCKey(project, service string) string { return project + "/" + service }

// Selector returns the label selector of the controller's pods.
func (rc *ReplicationController) Selector() Selector {
	return Selector{LabelProject: rc.Project, LabelService: rc.Service}
}

// Pod is one replica of a service.
type Pod struct {
	Name    string            `json:"name"` // <project>-<service>-<n>
	Project string            `json:"project"`
	Service string            `json:"service"`
	Index   int               `json:"index"`
	Labels  map[string]string `json:"labels"`
	// SpecHash identifies the template the pod was created from.
	SpecHash string `json:"spec_hash"`
	// Node is the node the scheduler assigned; empty while unscheduled.
	Node string `json:"node,omitempty"`
	// Deleting is set when the pod is to be stopped and removed; the node
	// agent removes the container and then deletes the pod record.
	Deleting bool `json:"deleting,omitempty"`
	// Stopped is set by `dev stop`: the node agent keeps the pod's
	// container stopped, whatever its restart policy, until `dev start` or
	// `dev restart`, or until `dev up`, `dev scale` or a rollback of its
	// service clears it (as `docker compose up` starts stopped containers).
	Stopped bool `json:"stopped,omitempty"`
	// Moving is set by the leader's rebalance: the pod is replaced on a
	// node that holds fewer of its service's pods, and retired once the
	// replacement is ready, as a drain moves a pod.
	Moving      bool      `json:"moving,omitempty"`
	Status      PodStatus `json:"status"`
	CreateIndex uint64    `json:"create_index"`
	ModifyIndex uint64    `json:"modify_index"`
}

// ShortName is "<service>-<n>", the log prefix compose users know.
func (p *Pod) ShortName() string { return fmt.Sprintf("%s-%d", p.Service, p.Index) }

// PodName builds a pod name.
func PodName(project, service string, index int) string {
	return fmt.Sprintf("%s-%s-%d", project, service, index)
}

// PodStatus is what the node agent observed.
type PodStatus struct {
	State       string    `json:"state"`
	Health      string    `json:"health,omitempty"`
	IP          string    `json:"ip,omitempty"`
	ContainerID string    `json:"container_id,omitempty"`
	ExitCode    int       `json:"exit_code,omitempty"`
	Restarts    int       `json:"restarts,omitempty"`
	Message     string    `json:"message,omitempty"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	// Paused: the running container is frozen (`dev pause`); State stays
	// running, and the pod stays an endpoint of its service, as a paused
	// compose container keeps its name and address (its clients wait).
	Paused bool `json:"paused,omitempty"`
	// Sidecars are the states of the pod's sidecar containers, in the
	// order of the template's Sidecars; the fields above are the service's
	// own container's.
	Sidecars []ContainerStatus `json:"sidecars,omitempty"`
}

// ContainerStatus is what the agent observed of one sidecar container.
type ContainerStatus struct {
	Name     string `json:"name"`
	State    string `json:"state"` // PodRunning, PodExited, PodPending
	Health   string `json:"health,omitempty"`
	ExitCode int    `json:"exit_code,omitempty"`
	Restarts int    `json:"restarts,omitempty"`
	Paused   bool   `json:"paused,omitempty"`
}

// Ready reports whether the pod should take traffic: every container
// running, and healthy where it has a healthcheck.
func (p *Pod) Ready() bool {
	ready, total := p.ReadyContainers()
	return !p.Deleting && ready == total
}

// ReadyColumn is ReadyContainers as kubectl's READY column writes it: "2/2".
func (p *Pod) ReadyColumn() string {
	ready, total := p.ReadyContainers()
	return fmt.Sprintf("%d/%d", ready, total)
}

// ReadyContainers counts the pod's ready containers (running, and healthy
// where they have a healthcheck) and all those it reported, as kubectl's
// READY column (2/2).
func (p *Pod) ReadyContainers() (ready, total int) {
	up := func(state, health string) bool {
		return state == PodRunning && (health == "" || health == HealthHealthy)
	}
	total = 1 + len(p.Status.Sidecars)
	if up(p.Status.State, p.Status.Health) {
		ready++
	}
	for _, c := range p.Status.Sidecars {
		if up(c.State, c.Health) {
			ready++
		}
	}
	return ready, total
}

// Node is a host running `dev agent`.
type Node struct {
	Name      string            `json:"name"`
	Address   string            `json:"address"`
	APIAddr   string            `json:"api_addr,omitempty"`
	Status    string            `json:"status"`
	PodSubnet string            `json:"pod_subnet,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	// Cordoned nodes take no new pods (dev node cordon); what runs there
	// stays. Only a user's write sets it: the node's own reports keep it.
	Cordoned bool `json:"cordoned,omitempty"`
	// Draining nodes are cordoned and have their pods moved to other nodes
	// the way a rolling update replaces them (dev node drain); the leader
	// clears it once only pods that cannot move (their data is on the
	// node) are left. A user's write, like Cordoned.
	Draining bool `json:"draining,omitempty"`
	// UserLabels are the labels set (a value) or removed ("") with `dev
	// node label`; Labels is the node's own (--label) with them applied.
	UserLabels map[string]string `json:"user_labels,omitempty"`
	// EngineUnreachable: the node's agent reports, but its Docker Engine
	// does not answer its probe. The node takes no new pods; its pods stay
	// where they are (their containers may well go on serving).
	EngineUnreachable bool `json:"engine_unreachable,omitempty"`
	// Allocatable is what the node offers to pods.
	Allocatable ResourceAmounts `json:"allocatable"`
	// Heartbeat is the last time the node's agent reported.
	Heartbeat time.Time `json:"heartbeat,omitzero"`
	// Load is the host's one-minute load average as of the last heartbeat
	// (Allocatable.NanoCPUs says how many CPUs share it).
	Load float64 `json:"load"`
	// DownSince is when the node was last seen failing; zero while ready.
	DownSince time.Time `json:"down_since,omitzero"`
	// Role is the node's raft role as `dev nodes` shows it (leader, voter,
	// nonvoter: a manager in reserve, worker); filled in when read, not stored.
	Role string `json:"role,omitempty"`
	// Pods and Reserved are filled in when read: pods bound to the node and
	// the resources they reserve.
	Pods        int             `json:"pods"`
	Reserved    ResourceAmounts `json:"reserved"`
	CreateIndex uint64          `json:"create_index"`
	ModifyIndex uint64          `json:"modify_index"`
}

// Selector is an equality-based label selector: every key must match.
type Selector map[string]string

// Matches reports whether labels satisfy every requirement of s.
func (s Selector) Matches(labels map[string]string) bool {
	for k, v := range s {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// String renders s as "k=v,k2=v2", sorted.
func (s Selector) String() string {
	parts := make([]string, 0, len(s))
	for k, v := range s {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// ParseSelector parses "k=v,k2=v2" (repeatable via several calls merged by the
// caller).
func ParseSelector(s string) (Selector, error) {
	sel := Selector{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, fmt.Errorf("parse selector %q: want KEY=VALUE", part)
		}
		sel[k] = v
	}
	return sel, nil
}

// Kinds of certificate a revocation names: a node's, or a client bundle's
// (admin or read).
const (
	CertNode   = "node"
	CertClient = "client"
)

// Revocation says that no certificate of Kind issued to Name before At is
// accepted any more, on any port of any node. A certificate issued later
// (a node that joins again, a new bundle) is.
type Revocation struct {
	Kind string    `json:"kind"`
	Name string    `json:"name"`
	At   time.Time `json:"at"`
}
