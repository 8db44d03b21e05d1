package api

import "time"

// Requests and responses of the agent HTTP API (version prefix /v1), with
// the role each route needs. cluster/apiserver serves them and checks the
// role from the caller's certificate (auth.go); the local unix socket is
// admin; its TestRouteTable holds the code to this table. read: read, admin
// and node certificates; admin: admin, and managers' node certificates
// (they relay users' requests; a worker's may not); user: admin
// certificates only (credentials are handed to users, never to a node);
// node: node certificates only; public: anyone (join).
// State-changing requests with a body must send application/json (but the
// files archive) and are refused cross-site.
//
//	read   GET    /v1/status                              -> Status
//	read   GET    /v1/projects                            -> []ProjectSummary
//	admin  PUT    /v1/projects/{name}                     Project -> ApplyResult
//	admin  DELETE /v1/projects/{name}                     -> WriteResult
//	admin  DELETE /v1/projects/{name}/volumes             -> WriteResult
//	admin  POST   /v1/projects/{name}/scale               ScaleRequest -> WriteResult
//	admin  POST   /v1/projects/{name}/rollback            {"service": S} -> WriteResult
//	admin  POST   /v1/projects/{name}/rm                  RemoveRequest -> RemoveResult (dev rm: the stopped pods, the services' replicas lowered)
//	admin  POST   /v1/projects/{name}/services/{service}/run  RunRequest -> stream (Upgrade)
//	read   GET    /v1/pods?project=P&selector=k=v&index=N&wait=30s -> PodList
//	read   GET    /v1/pods/{name}/logs?follow=1&tail=N&container=C -> raw log stream
//	read   GET    /v1/stats?project=P&service=S&local=1   -> StatsList (running pods' CPU, memory, network; of every node, or this node's with local=1)
//	read   GET    /v1/ingress/log?project=P&service=S&tail=N&after=NODE:SEQ&wait=30s&local=1 -> IngressLog (the ingress routers' access logs: of every node, or this node's with local=1)
//	read   GET    /v1/pods/{name}/top                     -> PodTop (the processes of the pod's running containers)
//	read   GET    /v1/pods/{name}/images                  -> PodImages (the images of the pod's containers)
//	admin  POST   /v1/pods/{name}/exec                    ExecRequest -> stream (Upgrade)
//	admin  POST   /v1/pods/{name}/stop|start|restart|kill|pause|unpause PodActionRequest -> PodActionResult
//	admin  GET    /v1/pods/{name}/files?path=P&stat=1     -> tar archive of P, at most MaxCopyOut (dev cp; admin: files may hold secrets); PathStat with stat=1
//	admin  PUT    /v1/pods/{name}/files                   tar archive -> FilesResult
//	admin  DELETE /v1/pods/{name}/files                   RemoveFilesRequest -> FilesResult
//	read   GET    /v1/nodes                               -> []Node
//	read   GET    /v1/services?project=P                  -> []ServiceInfo
//	read   GET    /v1/events?index=N&wait=30s             -> EventList
//	read   GET    /v1/dashboard                           -> DashboardInfo (a read-only dashboard)
//	user   GET    /v1/token?manager=1                     -> TokenResponse (the worker token, or the manager one; on a manager)
//	user   GET    /v1/token?client=NAME&role=admin|read&valid_for=D -> TokenResponse
//	read   POST   /v1/clients/renew                       RenewRequest -> RenewResponse (a new certificate for the calling client bundle)
//	admin  POST   /v1/leave                               -> WriteResult
//	admin  DELETE /v1/nodes/{name}?force=1                -> WriteResult (dev node rm: revoked, forgotten)
//	admin  POST   /v1/nodes/{name}/cordon|uncordon        -> WriteResult (no new pods there / again)
//	admin  POST   /v1/nodes/{name}/drain                  -> WriteResult (cordoned, its pods moved to other nodes)
//	admin  POST   /v1/nodes/{name}/labels                 map[string]string (k: v sets, k: "" removes) -> WriteResult
//	admin  DELETE /v1/clients/{name}                      -> WriteResult (dev token --revoke)
//	user   POST   /v1/token/rotate                        RotateTokenRequest -> TokenResponse (a new join secret; the old one stops working)
//	read   GET    /v1/revocations                         -> []Revocation
//	read   GET    /v1/ca                                  -> CAStatus (the cluster CA, and its rotation in progress)
//	user   POST   /v1/ca/rotate                           -> CAStatus (dev ca rotate: start moving the cluster to a new CA; on a manager)
//	read   GET    /v1/ca/local                            -> LocalCAResponse (the local HTTPS CA's certificate, dev ca export)
//	read   GET    /metrics                                -> the node's metrics, Prometheus' text format
//	public POST   /v1/join                                JoinRequest -> JoinResponse
//	node   POST   /v1/internal/apply                      a raft command the caller may write, forwarded to the leader
//	node   POST   /v1/internal/register                   Node (the caller's own record) -> Node
//	node   DELETE /v1/internal/volumes/{project}          -> WriteResult
//	node   GET    /v1/internal/image?ref=R                -> image tarball
//	node   POST   /v1/internal/renew                      RenewRequest -> RenewResponse (a new certificate for the caller)
//	node   GET    /v1/internal/files?pod=NAME             -> FilesResponse (the opened secrets and configs of a pod the caller runs; on a manager)
//	node   GET    /v1/internal/gossip-key                 -> GossipKeyResponse (the cluster's gossip key, for a node that missed a rotation)
//	node   POST   /v1/internal/acme-key                   ACMEKeyRequest -> ACMEKeyResponse (the opened key of a tls: auto certificate; on a manager)
//	node   POST   /v1/internal/ingress-cert               IngressCertRequest -> IngressCertResponse (a local HTTPS certificate for a tls: local route's host; on a manager)

// Status answers GET /v1/status.
type Status struct {
	Node    string `json:"node"`
	Leader  string `json:"leader"`
	Index   uint64 `json:"index"`
	Version string `json:"version"`
}

// ApplyResult answers a project apply.
type ApplyResult struct {
	Index uint64 `json:"index"`
	// Hashes are the template hashes of the services as stored (with
	// their secrets sealed, which the CLI cannot compute): the pods to
	// wait for.
	Hashes map[string]string `json:"hashes,omitempty"`
	// Created, Updated and Unchanged list service names.
	Created   []string `json:"created,omitempty"`
	Updated   []string `json:"updated,omitempty"`
	Unchanged []string `json:"unchanged,omitempty"`
	Removed   []string `json:"removed,omitempty"`
}

// WriteResult answers a write: the raft index at which it was committed.
type WriteResult struct {
	Index uint64 `json:"index"`
}

// ScaleRequest maps service names to desired replicas.
type ScaleRequest struct {
	Replicas map[string]int `json:"replicas"`
}

// RemoveRequest is `dev rm`: remove the stopped pods of the project's
// Services (all when empty), or only those of Pods when set (the ones a
// dry run listed, confirmed by the user).
type RemoveRequest struct {
	Services []string `json:"services,omitempty"`
	Pods     []string `json:"pods,omitempty"`
	// DryRun lists what would be removed and changes nothing.
	DryRun bool `json:"dry_run,omitempty"`
}

// RemoveResult lists the pods removed (or, for a dry run, to be removed).
type RemoveResult struct {
	Index   uint64   `json:"index"`
	Removed []string `json:"removed"`
}

// PodList answers a pod query; Index is the store index it reflects, to be
// passed back as ?index= for a blocking query.
type PodList struct {
	Index uint64 `json:"index"`
	Pods  []Pod  `json:"pods"`
}

// ProjectSummary lists a deployed project.
type ProjectSummary struct {
	Name     string                  `json:"name"`
	Services []ReplicationController `json:"services"`
}

// Error is the JSON body of every non-2xx answer.
type Error struct {
	Message string `json:"error"`
	// Code is a stable machine-readable kind: "not_found", "invalid",
	// "conflict", "unavailable", "internal".
	Code string `json:"code"`
}

// ServiceInfo is one service as `dev services` shows it.
type ServiceInfo struct {
	Project   string     `json:"project"`
	Name      string     `json:"name"`
	VIP       string     `json:"vip"`
	Ports     []PortSpec `json:"ports"`     // served on the VIP
	Published []PortSpec `json:"published"` // served on every node
	Desired   int        `json:"desired"`
	Ready     int        `json:"ready"`     // ready pods of the current template
	Endpoints []string   `json:"endpoints"` // ready pod IPs, any template: what the VIP serves
	// Ingress are the service's HTTP routes (x-ingress), which every
	// node's ingress router sends to Endpoints.
	Ingress []IngressRoute `json:"ingress,omitempty"`
	// Certs are the states of the certificates of the service's tls: auto
	// hosts, by host: "pending", or "valid until ...".
	Certs map[string]string `json:"certs,omitempty"`
}

// JoinRequest is what a joining node sends to POST /v1/join (over TLS pinned
// to the cluster CA's fingerprint, before it has a certificate).
type JoinRequest struct {
	Name string `json:"name"`
	// Proof is pki.JoinProof of the token's secret for Name and CSR: the
	// secret itself never leaves the joining host (a node that relays the
	// join learns nothing it can use for a key of its own).
	Proof []byte   `json:"proof"`
	CSR   []byte   `json:"csr"` // PEM
	IPs   []string `json:"ips"`
}

// JoinResponse carries the joining node's certificate and what it needs to
// take part: the CA certificate, the gossip key and gossip peers to join.
type JoinResponse struct {
	ClusterID string   `json:"cluster_id"`
	Cert      []byte   `json:"cert"` // PEM, with any intermediate
	CA        []byte   `json:"ca"`   // PEM: the CAs to trust
	GossipKey []byte   `json:"gossip_key"`
	Gossip    []string `json:"gossip"` // addresses of live members
	// Label is the cluster label on dev's containers (LabelCluster);
	// empty from a dev before CA rotation: the CA's fingerprint's.
	Label string `json:"label,omitempty"`
	// DataKey is the managers' data key sealed to the CSR's key
	// (pki.SealToCSR), for a node that joined with the manager token only.
	DataKey []byte `json:"data_key,omitempty"`
}

// FilesResponse answers GET /v1/internal/files: contents by digest
// (SecretMount.Digest).
type FilesResponse struct {
	Files map[string][]byte `json:"files"`
}

// GossipKeyResponse answers GET /v1/internal/gossip-key: the cluster's
// gossip key and its generation (0: the cluster's first).
type GossipKeyResponse struct {
	Key []byte `json:"key"`
	Gen uint64 `json:"gen"`
}

// ACMEKeyRequest asks a manager for the private key of a certificate of
// the ACME storage (a tls: auto route's), opened.
type ACMEKeyRequest struct {
	Key string `json:"key"`
}

// ACMEKeyResponse carries the key (PEM).
type ACMEKeyResponse struct {
	KeyPEM []byte `json:"key_pem"`
}

// IngressCertRequest asks a manager for a certificate of the local HTTPS
// CA for a tls: local route's host, for the key of CSR (PEM).
type IngressCertRequest struct {
	Host string `json:"host"`
	CSR  []byte `json:"csr"`
}

// IngressCertResponse carries the certificate and the local CA's (PEM).
type IngressCertResponse struct {
	Cert []byte `json:"cert"`
	CA   []byte `json:"ca"`
}

// LocalCAResponse answers GET /v1/ca/local: the local HTTPS CA's
// certificate (PEM), for users to trust.
type LocalCAResponse struct {
	CertPEM []byte `json:"cert_pem"`
}

// RenewRequest asks for a new certificate for the calling node, for the
// key of CSR (PEM).
type RenewRequest struct {
	CSR []byte `json:"csr"`
}

// RenewResponse carries the new certificate, and the intermediate its CA
// sends along during a CA rotation (PEM), and the CAs to trust with it.
type RenewResponse struct {
	Cert []byte `json:"cert"`
	CA   []byte `json:"ca,omitempty"`
}

// CAStatus answers GET /v1/ca: the cluster CA, and the rotation to a new
// one in progress (dev ca rotate), if any.
type CAStatus struct {
	Fingerprint string            `json:"fingerprint"`
	Rotation    *CARotationStatus `json:"rotation,omitempty"`
}

// CARotationStatus is a CA rotation's progress: the nodes that hold a
// certificate of the new CA, and those the rotation waits for (a node
// that is down holds it up until it is back, or removed: dev node rm).
type CARotationStatus struct {
	Fingerprint string   `json:"fingerprint"`
	Moved       []string `json:"moved"`
	Waiting     []string `json:"waiting"`
}

// TokenRequest is what `dev token` asks for: the join token (the worker's,
// or with Manager the manager's), or with Client a client bundle of Role.
type TokenRequest struct {
	Client  string
	Role    string
	Manager bool
	// ValidFor is the client bundle's life (0: the default, a year).
	ValidFor time.Duration
}

// RotateTokenRequest is POST /v1/token/rotate: which join token to replace.
type RotateTokenRequest struct {
	Manager bool `json:"manager,omitempty"`
}

// TokenResponse answers GET /v1/token.
type TokenResponse struct {
	// Manager: Token is the manager token (a node that joins with it may
	// become a voter and holds the cluster's secrets).
	Manager bool   `json:"manager,omitempty"`
	Token   string `json:"token"`
	// Bundle is a client certificate bundle (PEM: cert, key, CA) when asked
	// for with ?client=NAME.
	Bundle []byte `json:"bundle,omitempty"`
}

// Interactive commands and pod lifecycle (see stream.go for the framed
// protocol of the upgraded connections):
//
//	POST   /v1/pods/{name}/exec                      ExecRequest -> 101, frames
//	POST   /v1/projects/{p}/services/{s}/run         RunRequest -> 101, frames
//	POST   /v1/pods/{name}/stop                      PodActionRequest -> PodActionResult
//	POST   /v1/pods/{name}/start                     PodActionRequest -> PodActionResult
//	POST   /v1/pods/{name}/restart                   PodActionRequest -> PodActionResult
//	POST   /v1/pods/{name}/kill                      PodActionRequest -> PodActionResult
//	POST   /v1/pods/{name}/pause|unpause             PodActionRequest -> PodActionResult
//
// Each is served by the node that runs the pod: any other node relays it
// there over mutual TLS.

// ExecRequest runs a command in a pod's running container (`dev exec`).
type ExecRequest struct {
	Cmd []string `json:"cmd"`
	// Container picks a sidecar's container (its service name); empty, or
	// the pod's service, is the service's own.
	Container  string   `json:"container,omitempty"`
	Tty        bool     `json:"tty,omitempty"`
	Stdin      bool     `json:"stdin,omitempty"` // the client sends input
	Env        []string `json:"env,omitempty"`   // KEY=VALUE
	User       string   `json:"user,omitempty"`
	WorkingDir string   `json:"working_dir,omitempty"`
	// Size is the client's terminal size, applied when the TTY starts.
	Size TermSize `json:"size,omitzero"`
}

// RunRequest runs a one-off pod of a service (`dev run`): a container from
// the service's template, not counted by its replication controller.
type RunRequest struct {
	// Cmd replaces the service's command; nil keeps it.
	Cmd        []string `json:"cmd,omitempty"`
	Entrypoint []string `json:"entrypoint,omitempty"`
	Tty        bool     `json:"tty,omitempty"`
	Stdin      bool     `json:"stdin,omitempty"`
	Env        []string `json:"env,omitempty"` // KEY=VALUE, added to the service's
	User       string   `json:"user,omitempty"`
	WorkingDir string   `json:"working_dir,omitempty"`
	// Rm removes the container when it exits.
	Rm bool `json:"rm,omitempty"`
	// Name is the one-off pod's name; empty: <project>-<service>-run-<random>.
	Name string `json:"name,omitempty"`
	// Node runs the pod on that node; empty: the node that receives the
	// request, unless the service's placement (or its host data) requires
	// another.
	Node string   `json:"node,omitempty"`
	Size TermSize `json:"size,omitzero"`
	// Files are the opened secrets and configs of the service's template,
	// by digest: set by the manager that places the one-off, for the node
	// that runs it. A client may not send them.
	Files map[string][]byte `json:"files,omitempty"`
}

// Pod actions: the last segment of POST /v1/pods/{name}/ACTION.
const (
	ActionStop    = "stop"
	ActionStart   = "start"
	ActionRestart = "restart"
	// ActionKill sends a signal to the pod's containers (`dev kill`).
	ActionKill = "kill"
	// ActionPause and ActionUnpause freeze and thaw the pod's containers
	// (`dev pause`, `dev unpause`).
	ActionPause   = "pause"
	ActionUnpause = "unpause"
)

// PodActions lists every pod action.
var PodActions = []string{ActionStop, ActionStart, ActionRestart, ActionKill, ActionPause, ActionUnpause}

// PodActionRequest stops, starts, restarts, kills, pauses or unpauses a
// pod's containers.
type PodActionRequest struct {
	// Timeout is the stop grace period in seconds; nil: the service's
	// stop_grace_period (default 10s).
	Timeout *int `json:"timeout,omitempty"`
	// Signal is what kill sends (NormalizeSignal; empty: SIGKILL).
	Signal string `json:"signal,omitempty"`
}

// PodActionResult answers a pod action with the pod's state once the node
// agent has reported it (or the last one known after a few seconds).
type PodActionResult struct {
	Pod Pod `json:"pod"`
}

// Event reasons: what happened to a pod, a node or a service, as `dev
// events` and the dashboard show it (Kubernetes event reasons, compose
// words).
const (
	EventScheduled         = "Scheduled"   // a pod was placed on a node
	EventPending           = "Pending"     // a pod cannot be placed (Message says why)
	EventStarted           = "Started"     // a pod's container runs
	EventFailed            = "Failed"      // a pod's container exited with an error or failed to start
	EventExited            = "Exited"      // a pod's container exited with code 0
	EventUnhealthy         = "Unhealthy"   // a pod's healthcheck fails
	EventRescheduled       = "Rescheduled" // a pod lost with its node was placed on another node
	EventRemoved           = "Removed"     // a pod was stopped and removed
	EventScaled            = "Scaled"      // a service's replica count changed
	EventCreated           = "Created"     // a service was created
	EventDeleted           = "Deleted"     // a service was removed
	EventNodeJoined        = "NodeJoined"
	EventNodeReady         = "NodeReady"
	EventNodeDown          = "NodeDown"
	EventNodeLeft          = "NodeLeft"
	EventNodeDraining      = "NodeDraining"      // dev node drain: the node's pods move to other nodes
	EventNodeDrained       = "NodeDrained"       // a drain ended: the node is cordoned (or was uncordoned)
	EventEngineUnreachable = "EngineUnreachable" // a node's Docker Engine stopped answering its agent
	EventEngineReachable   = "EngineReachable"   // it answers again
)

// Event is one change of the cluster, derived by every node from the
// replicated state as it applies it (events are not stored in raft: a node
// knows the events since its agent started).
type Event struct {
	// Index is the store index at which the change was seen.
	Index  uint64    `json:"index"`
	Time   time.Time `json:"time"`
	Reason string    `json:"reason"`
	// Warning marks the events a user should look at (failed, unhealthy,
	// pending, node down).
	Warning bool `json:"warning,omitempty"`
	// Kind and Name identify the object: "pod" + pod name, "node" + node
	// name, "service" + "<project>/<service>".
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Node    string `json:"node,omitempty"`
	Message string `json:"message"`
}

// EventList answers GET /v1/events: the events after ?index=N, oldest first.
type EventList struct {
	Index  uint64  `json:"index"`
	Events []Event `json:"events"`
}

// DashboardInfo answers GET /v1/dashboard: where this node serves the
// dashboard and the link that logs a browser in.
type DashboardInfo struct {
	Addr string `json:"addr"`
	URL  string `json:"url"`
}
