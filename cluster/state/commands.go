package state

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/devhq/dev/cluster/api"
)

// CommandType is the first byte of every raft log entry.
type CommandType byte

// Command types. Values are persisted in the raft log: append only, never
// renumber.
const (
	CmdApplyProject CommandType = iota + 1
	CmdDeleteProject
	CmdScale
	CmdCreatePods
	CmdAssignPods
	CmdMarkPodsDeleting
	CmdDeletePods
	CmdPodStatus
	CmdPutNode
	CmdReleaseRC
	CmdSetCluster
	CmdDeleteNode
	CmdRollbackRC
	CmdSetUpdate
	CmdSetPodStopped
	CmdRevoke
	CmdAdmit
	CmdRotateJoinSecret
	CmdCordonNode
	CmdLabelNode
	CmdSealClusterSecrets
	CmdRotateGossipKey
	CmdSetLocalCA
	CmdStartCARotation
	CmdMoveToCA
	CmdFinishCARotation
	CmdRemoveStoppedPods
	CmdFinishDrain
	CmdPutACME
	CmdDeleteACME
	CmdLockACME
	CmdUnlockACME
	CmdMovePod
)

// Command is one state change, replicated through the raft log.
type Command interface {
	Type() CommandType
}

// ApplyProject creates or updates a project's controllers. Services of the
// project that are not in Project are removed (their pods marked deleting).
type ApplyProject struct {
	Project api.Project `json:"project"`
	// ServiceCIDR is where new services get their virtual IP from.
	ServiceCIDR string `json:"service_cidr,omitempty"`
}

// DeleteProject removes a project, its controllers, and marks its pods deleting.
type DeleteProject struct {
	Name string `json:"name"`
}

// Scale sets the replicas of some controllers of a project.
type Scale struct {
	Project  string         `json:"project"`
	Replicas map[string]int `json:"replicas"`
}

// CreatePods adds new pods.
type CreatePods struct {
	Pods []api.Pod `json:"pods"`
}

// AssignPods binds pods to nodes, or records why they cannot be placed.
type AssignPods struct {
	Nodes         map[string]string `json:"nodes,omitempty"`         // pod -> node
	Unschedulable map[string]string `json:"unschedulable,omitempty"` // pod -> reason
	Pins          map[string]string `json:"pins,omitempty"`          // controller key -> node
}

// MarkPodsDeleting asks the pods' node agents to remove them.
type MarkPodsDeleting struct {
	Names []string `json:"names"`
}

// DeletePods forgets pods whose containers are gone.
type DeletePods struct {
	Names []string `json:"names"`
}

// PodStatus records what a node agent observed of a pod. It is ignored when
// the pod no longer exists or was re-bound to another node.
type PodStatus struct {
	Name   string        `json:"name"`
	Node   string        `json:"node"`
	Status api.PodStatus `json:"status"`
}

// PutNode registers or updates a node. A node without a pod subnet keeps
// the one it holds, or gets the lowest free /24 of ClusterCIDR.
type PutNode struct {
	Node api.Node `json:"node"`
	// ClusterCIDR is where a new node's pod subnet comes from.
	ClusterCIDR string `json:"cluster_cidr,omitempty"`
}

// ReleaseRC records that a controller's depends_on conditions were met.
type ReleaseRC struct {
	Key string `json:"key"`
}

// SetCluster records the cluster identity; it is ignored once set.
// Founder, the node that created the cluster, is its first manager.
type SetCluster struct {
	Cluster ClusterInfo `json:"cluster"`
	Founder string      `json:"founder,omitempty"`
}

// DeleteNode forgets a node that left the cluster.
type DeleteNode struct {
	Name string `json:"name"`
}

// RollbackRC returns a controller to its previous template (`dev rollback`,
// or an update's failure action).
type RollbackRC struct {
	Key    string `json:"key"`
	Reason string `json:"reason"`
}

// SetUpdate records the progress of a controller's rolling update.
type SetUpdate struct {
	Key    string           `json:"key"`
	Status api.UpdateStatus `json:"status"`
	// Hash guards against a stale write: it applies only while the
	// controller's template hash is still this one.
	Hash string `json:"hash"`
}

// SetPodStopped records that the user stopped a pod (`dev stop`) or
// started it again (`dev start`, `dev restart`).
type SetPodStopped struct {
	Name    string `json:"name"`
	Stopped bool   `json:"stopped"`
}

// RemoveStoppedPods is `dev rm`: of the named pods, those that are stopped
// (Removable) are marked deleting and their controllers' replicas lowered
// by as many, in one step, so that no controller replaces them: as `docker
// compose rm` leaves a service defined with no containers until the next
// `up`, which sets the replicas from the file again. A pod started
// meanwhile is left alone.
type RemoveStoppedPods struct {
	Names []string `json:"names"`
}

// Removable reports whether `dev rm` removes pod: stopped by the user
// (`dev stop`, `dev kill`) and no longer running (a `dev stop` in its
// grace period is not done yet), or exited and not to be restarted by its
// restart policy (a finished job), as `docker compose rm` removes the
// containers that are not running, never a running one. rc is the pod's
// controller.
func Removable(p api.Pod, rc api.ReplicationController) bool {
	if p.Deleting || p.Status.State == api.PodRunning {
		return false
	}
	if p.Stopped {
		return true
	}
	return p.Node != "" && p.Status.State == api.PodExited && !api.RestartsAfter(rc.Template.RestartPolicy(), p.Status.ExitCode)
}

// Revoke puts certificates on the revocation list every TLS listener
// checks (`dev node rm`, `dev leave`, `dev token --revoke`).
type Revoke struct {
	Revocation api.Revocation `json:"revocation"`
}

// RevokeNow revokes the certificates of kind issued to name until now.
func RevokeNow(kind, name string) *Revoke {
	return &Revoke{Revocation: api.Revocation{Kind: kind, Name: name, At: time.Now().UTC()}}
}

// Admit records that the leader signed a node certificate for Name at At
// (dev join): only admitted nodes become raft members, and only those
// admitted as managers (with the manager token) become voters.
type Admit struct {
	Name    string    `json:"name"`
	At      time.Time `json:"at"`
	Manager bool      `json:"manager,omitempty"`
}

// RotateJoinSecret replaces the join token's secret (dev token --rotate):
// tokens with the old one stop working.
type RotateJoinSecret struct {
	Secret string `json:"secret"`
}

// SealClusterSecrets replaces the sealed cluster secrets (dev token
// --rotate): ClusterInfo.Sealed, which only managers can open. Prev is
// what the writer read and changed: if another write replaced it since,
// this one is refused rather than undo it.
type SealClusterSecrets struct {
	Sealed []byte `json:"sealed"`
	Prev   []byte `json:"prev"`
}

// RotateGossipKey replaces the cluster's gossip key (ClusterInfo.GossipKey)
// after a node's certificate was revoked: every member sets it as its only
// key when the entry reaches it, so the removed node, which never gets the
// entry, hears nothing more. Gen must be the next generation: a second
// rotation proposed for the same one (a stale leader's) is refused.
type RotateGossipKey struct {
	Key []byte `json:"key"`
	Gen uint64 `json:"gen"`
}

// SetLocalCA records the local HTTPS CA of a cluster that has none (made
// before it): the first one recorded stays, a second is refused.
type SetLocalCA struct {
	CertPEM []byte `json:"cert_pem"`
	Sealed  []byte `json:"sealed"`
}

// StartCARotation begins moving the cluster to a new CA (dev ca rotate):
// every node trusts both CAs from this entry on, and is given a
// certificate of the new one (MoveToCA records it); once every node has
// one, FinishCARotation drops the old CA. Label keeps the containers'
// cluster label (api.LabelCluster) what it was: it names the old CA.
type StartCARotation struct {
	Rotation CARotation `json:"rotation"`
	Label    string     `json:"label"`
}

// MoveToCA records that node holds a certificate of rotation ID's CA.
type MoveToCA struct {
	ID   string `json:"id"`
	Node string `json:"node"`
}

// FinishCARotation ends rotation ID: the new CA becomes the cluster's,
// its key sealed in Sealed (the cluster secrets, as SealClusterSecrets
// replaces them from Prev).
type FinishCARotation struct {
	ID     string `json:"id"`
	Sealed []byte `json:"sealed"`
	Prev   []byte `json:"prev"`
}

// CordonNode stops or resumes placing new pods on a node (dev node
// cordon, uncordon). Drain (dev node drain) cordons it and moves its pods
// away too; a cordon keeps a drain in progress going, an uncordon stops
// it.
type CordonNode struct {
	Name     string `json:"name"`
	Cordoned bool   `json:"cordoned"`
	Drain    bool   `json:"drain,omitempty"`
}

// FinishDrain ends the drain of a node whose pods have moved (all but
// those whose data is on the node): it stays cordoned. The leader writes
// it; it does nothing to a node that is no longer draining (uncordoned
// meanwhile).
type FinishDrain struct {
	Name string `json:"name"`
}

// MovePod marks (Moving) or unmarks a pod that the leader's rebalance
// moves to another node: a replacement is started elsewhere and the pod
// retired once it is ready (as a drain does). The leader writes it; it
// does nothing to a pod that is deleting or no longer on Node.
type MovePod struct {
	Name   string `json:"name"`
	Node   string `json:"node"`
	Moving bool   `json:"moving"`
}

// LabelNode sets (k: v) or removes (k: "") a node's labels over what the
// node itself reports (dev node label).
type LabelNode struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
}

func (LabelNode) Type() CommandType          { return CmdLabelNode }
func (SealClusterSecrets) Type() CommandType { return CmdSealClusterSecrets }
func (RotateGossipKey) Type() CommandType    { return CmdRotateGossipKey }
func (SetLocalCA) Type() CommandType         { return CmdSetLocalCA }
func (StartCARotation) Type() CommandType    { return CmdStartCARotation }
func (MoveToCA) Type() CommandType           { return CmdMoveToCA }
func (FinishCARotation) Type() CommandType   { return CmdFinishCARotation }
func (PutACME) Type() CommandType            { return CmdPutACME }
func (DeleteACME) Type() CommandType         { return CmdDeleteACME }
func (LockACME) Type() CommandType           { return CmdLockACME }
func (UnlockACME) Type() CommandType         { return CmdUnlockACME }
func (CordonNode) Type() CommandType         { return CmdCordonNode }
func (FinishDrain) Type() CommandType        { return CmdFinishDrain }
func (MovePod) Type() CommandType            { return CmdMovePod }
func (RotateJoinSecret) Type() CommandType   { return CmdRotateJoinSecret }
func (Admit) Type() CommandType              { return CmdAdmit }
func (Revoke) Type() CommandType             { return CmdRevoke }
func (SetPodStopped) Type() CommandType      { return CmdSetPodStopped }
func (RemoveStoppedPods) Type() CommandType  { return CmdRemoveStoppedPods }
func (RollbackRC) Type() CommandType         { return CmdRollbackRC }
func (SetUpdate) Type() CommandType          { return CmdSetUpdate }
func (SetCluster) Type() CommandType         { return CmdSetCluster }
func (DeleteNode) Type() CommandType         { return CmdDeleteNode }
func (ApplyProject) Type() CommandType       { return CmdApplyProject }
func (DeleteProject) Type() CommandType      { return CmdDeleteProject }
func (Scale) Type() CommandType              { return CmdScale }
func (CreatePods) Type() CommandType         { return CmdCreatePods }
func (AssignPods) Type() CommandType         { return CmdAssignPods }
func (MarkPodsDeleting) Type() CommandType   { return CmdMarkPodsDeleting }
func (DeletePods) Type() CommandType         { return CmdDeletePods }
func (PodStatus) Type() CommandType          { return CmdPodStatus }
func (PutNode) Type() CommandType            { return CmdPutNode }
func (ReleaseRC) Type() CommandType          { return CmdReleaseRC }

// Encode renders a command as a raft log entry: type byte + JSON.
func Encode(c Command) ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode command %d: %w", c.Type(), err)
	}
	return append([]byte{byte(c.Type())}, b...), nil
}

// Decode parses a raft log entry written by Encode.
func Decode(b []byte) (Command, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("decode command: empty entry")
	}
	var c Command
	switch CommandType(b[0]) {
	case CmdApplyProject:
		c = &ApplyProject{}
	case CmdDeleteProject:
		c = &DeleteProject{}
	case CmdScale:
		c = &Scale{}
	case CmdCreatePods:
		c = &CreatePods{}
	case CmdAssignPods:
		c = &AssignPods{}
	case CmdMarkPodsDeleting:
		c = &MarkPodsDeleting{}
	case CmdDeletePods:
		c = &DeletePods{}
	case CmdPodStatus:
		c = &PodStatus{}
	case CmdPutNode:
		c = &PutNode{}
	case CmdSetPodStopped:
		c = &SetPodStopped{}
	case CmdRemoveStoppedPods:
		c = &RemoveStoppedPods{}
	case CmdRevoke:
		c = &Revoke{}
	case CmdAdmit:
		c = &Admit{}
	case CmdRotateJoinSecret:
		c = &RotateJoinSecret{}
	case CmdCordonNode:
		c = &CordonNode{}
	case CmdFinishDrain:
		c = &FinishDrain{}
	case CmdMovePod:
		c = &MovePod{}
	case CmdLabelNode:
		c = &LabelNode{}
	case CmdSealClusterSecrets:
		c = &SealClusterSecrets{}
	case CmdRotateGossipKey:
		c = &RotateGossipKey{}
	case CmdSetLocalCA:
		c = &SetLocalCA{}
	case CmdStartCARotation:
		c = &StartCARotation{}
	case CmdMoveToCA:
		c = &MoveToCA{}
	case CmdFinishCARotation:
		c = &FinishCARotation{}
	case CmdPutACME:
		c = &PutACME{}
	case CmdDeleteACME:
		c = &DeleteACME{}
	case CmdLockACME:
		c = &LockACME{}
	case CmdUnlockACME:
		c = &UnlockACME{}
	case CmdReleaseRC:
		c = &ReleaseRC{}
	case CmdSetCluster:
		c = &SetCluster{}
	case CmdDeleteNode:
		c = &DeleteNode{}
	case CmdRollbackRC:
		c = &RollbackRC{}
	case CmdSetUpdate:
		c = &SetUpdate{}
	default:
		return nil, fmt.Errorf("decode command: unknown type %d", b[0])
	}
	if err := json.Unmarshal(b[1:], c); err != nil {
		return nil, fmt.Errorf("decode command %d: %w", b[0], err)
	}
	return c, nil
}

// Apply mutates the store as cmd says. It is deterministic: every replica
// applying the same log reaches the same state.
func (tx *Txn) Apply(cmd Command) error {
	switch c := cmd.(type) {
	case *ApplyProject:
		return tx.applyProject(c)
	case *DeleteProject:
		return tx.deleteProject(c)
	case *Scale:
		return tx.scale(c)
	case *CreatePods:
		for _, p := range c.Pods {
			if tx.Pod(p.Name) != nil {
				continue // a retried create: keep the existing pod
			}
			tx.PutPod(p)
		}
	case *AssignPods:
		for name, node := range c.Nodes {
			if p := tx.Pod(name); p != nil && !p.Deleting && p.Node == "" {
				p.Node = node
				p.Labels[api.LabelNode] = node
				p.Status.Message = ""
				tx.PutPod(*p)
			}
		}
		for key, node := range c.Pins {
			if rc := tx.RC(key); rc != nil && rc.PinnedNode == "" {
				rc.PinnedNode = node
				tx.PutRC(*rc)
			}
		}
		for name, reason := range c.Unschedulable {
			if p := tx.Pod(name); p != nil && p.Node == "" && p.Status.Message != reason {
				p.Status.Message = reason
				tx.PutPod(*p)
			}
		}
	case *MarkPodsDeleting:
		for _, name := range c.Names {
			if p := tx.Pod(name); p != nil && !p.Deleting {
				p.Deleting = true
				tx.PutPod(*p)
			}
		}
	case *DeletePods:
		for _, name := range c.Names {
			tx.DeletePod(name)
		}
	case *PodStatus:
		if p := tx.Pod(c.Name); p != nil && p.Node == c.Node {
			p.Status = c.Status
			tx.PutPod(*p)
		}
	case *PutNode:
		return tx.putNode(c)
	case *SetPodStopped:
		if p := tx.Pod(c.Name); p != nil && !p.Deleting && p.Stopped != c.Stopped {
			p.Stopped = c.Stopped
			tx.PutPod(*p)
			if !c.Stopped { // `dev start`: the service is started, as up --no-start left it
				tx.clearCreateStopped(p.Project, p.Service)
			}
		}
	case *RemoveStoppedPods:
		tx.removeStopped(c)
	case *SetCluster:
		if tx.s.cluster == nil {
			ci := c.Cluster
			tx.s.cluster = &ci
			if c.Founder != "" {
				tx.s.managers[c.Founder] = true
			}
		}
	case *DeleteNode:
		delete(tx.s.nodes, c.Name)
	case *RotateJoinSecret:
		if tx.s.cluster == nil {
			return fmt.Errorf("rotate the join secret: the cluster is not set up yet")
		}
		if c.Secret == "" {
			return fmt.Errorf("rotate the join secret: empty secret")
		}
		ci := *tx.s.cluster
		ci.JoinSecret = c.Secret
		tx.s.cluster = &ci
	case *SealClusterSecrets:
		if tx.s.cluster == nil {
			return fmt.Errorf("seal the cluster secrets: the cluster is not set up yet")
		}
		if len(c.Sealed) == 0 {
			return fmt.Errorf("seal the cluster secrets: nothing sealed")
		}
		if !bytes.Equal(c.Prev, tx.s.cluster.Sealed) {
			return fmt.Errorf("seal the cluster secrets: they changed meanwhile (another rotation); run it again")
		}
		ci := *tx.s.cluster
		ci.Sealed = c.Sealed
		tx.s.cluster = &ci
	case *RotateGossipKey:
		if tx.s.cluster == nil {
			return fmt.Errorf("rotate the gossip key: the cluster is not set up yet")
		}
		if len(c.Key) != GossipKeySize {
			return fmt.Errorf("rotate the gossip key: key is %d bytes, want %d", len(c.Key), GossipKeySize)
		}
		if c.Gen != tx.s.cluster.GossipKeyGen+1 {
			return fmt.Errorf("rotate the gossip key: generation %d, want %d (another rotation came first)", c.Gen, tx.s.cluster.GossipKeyGen+1)
		}
		ci := *tx.s.cluster
		ci.GossipKey, ci.GossipKeyGen, ci.GossipKeyStale = bytes.Clone(c.Key), c.Gen, false
		tx.s.cluster = &ci
	case *SetLocalCA:
		switch {
		case tx.s.cluster == nil:
			return fmt.Errorf("set the local CA: the cluster is not set up yet")
		case len(tx.s.cluster.LocalCACertPEM) > 0:
			return fmt.Errorf("set the local CA: the cluster has one")
		case len(c.CertPEM) == 0 || len(c.Sealed) == 0:
			return fmt.Errorf("set the local CA: no certificate or key")
		}
		ci := *tx.s.cluster
		ci.LocalCACertPEM, ci.LocalCASealed = bytes.Clone(c.CertPEM), bytes.Clone(c.Sealed)
		tx.s.cluster = &ci
	case *StartCARotation:
		return tx.startCARotation(c)
	case *MoveToCA:
		return tx.moveToCA(c)
	case *FinishCARotation:
		return tx.finishCARotation(c)
	case *PutACME, *DeleteACME, *LockACME, *UnlockACME:
		return tx.applyACME(c)
	case *CordonNode:
		old := tx.s.nodes[c.Name]
		if old == nil {
			return fmt.Errorf("cordon node %s: no such node", c.Name)
		}
		n := cloneNode(old)
		n.Cordoned = c.Cordoned
		n.Draining = c.Cordoned && (c.Drain || n.Draining)
		tx.PutNode(n)
	case *FinishDrain:
		if old := tx.s.nodes[c.Name]; old != nil && old.Draining {
			n := cloneNode(old)
			n.Draining = false
			tx.PutNode(n)
		}
	case *MovePod:
		if p := tx.Pod(c.Name); p != nil && !p.Deleting && p.Node == c.Node && p.Moving != c.Moving {
			p.Moving = c.Moving
			tx.PutPod(*p)
		}
	case *LabelNode:
		old := tx.s.nodes[c.Name]
		if old == nil {
			return fmt.Errorf("label node %s: no such node", c.Name)
		}
		n := cloneNode(old) // its own copies of the maps
		if n.UserLabels == nil {
			n.UserLabels = map[string]string{}
		}
		maps.Copy(n.UserLabels, c.Labels)
		n.Labels = NodeLabels(n.Labels, c.Labels) // on the labels as they are
		tx.PutNode(n)
	case *Admit:
		if c.At.After(tx.s.admitted[c.Name]) {
			tx.s.admitted[c.Name] = c.At
			// The latest admission says what the node is: a manager that
			// joins again with the worker token is a worker.
			if c.Manager {
				tx.s.managers[c.Name] = true
			} else {
				delete(tx.s.managers, c.Name)
			}
		}
	case *Revoke:
		r := c.Revocation
		key := revocationKey(r.Kind, r.Name)
		if prev, ok := tx.s.revoked[key]; !ok || r.At.After(prev.At) {
			tx.s.revoked[key] = r
			tx.s.revGen++
			if r.Kind == api.CertNode && tx.s.cluster != nil && !tx.s.cluster.GossipKeyStale {
				ci := *tx.s.cluster
				ci.GossipKeyStale = true // the node holds the gossip key: rotate it
				tx.s.cluster = &ci
			}
		}
	case *RollbackRC:
		rc := tx.RC(c.Key)
		if rc == nil {
			return fmt.Errorf("rollback %s: no such service", c.Key)
		}
		if rc.Previous == nil {
			return fmt.Errorf("rollback %s: the service has no previous version", c.Key)
		}
		cur := rc.Template
		rc.Template, rc.Previous = *rc.Previous, &cur
		rc.Template.Replicas = rc.Replicas
		// The routes stay as they are: a rollback replaces what runs, and
		// an old route may have gone to another project since.
		rc.Template.Ingress = cur.Ingress
		rc.SpecHash = rc.Template.Hash()
		rc.Update = &api.UpdateStatus{State: api.UpdateRollingBack, Message: c.Reason}
		tx.PutRC(*rc)
		tx.startStopped(rc.Project, rc.Service)
	case *SetUpdate:
		if rc := tx.RC(c.Key); rc != nil && rc.SpecHash == c.Hash {
			st := c.Status
			rc.Update = &st
			tx.PutRC(*rc)
		}
	case *ReleaseRC:
		if rc := tx.RC(c.Key); rc != nil && !rc.Released {
			rc.Released = true
			tx.PutRC(*rc)
		}
	default:
		return fmt.Errorf("apply command: unknown command %T", cmd)
	}
	return nil
}

// templateChanged is the rule of a rolling update: a deployed service
// whose template differs from the one it runs.
func templateChanged(rc *api.ReplicationController, svc api.ServiceSpec) bool {
	return rc.SpecHash != "" && rc.SpecHash != svc.Hash()
}

// DiffProject says what applying p would do to each of its services: create
// it, update it (a new template, rolled out, or another replica count),
// leave it, or remove it (deployed, no longer in p). The API answers a
// project apply with it; the state machine applies the same rule.
func (s *Store) DiffProject(p api.Project) api.ApplyResult {
	var res api.ApplyResult
	want := map[string]bool{}
	for _, svc := range p.Services {
		want[svc.Name] = true
		rc, ok := s.RC(api.RCKey(p.Name, svc.Name))
		svc.KeepRecreate(rc.Template)
		switch {
		case !ok:
			res.Created = append(res.Created, svc.Name)
		case templateChanged(&rc, svc) || rc.Replicas != svc.Replicas:
			res.Updated = append(res.Updated, svc.Name)
		default:
			res.Unchanged = append(res.Unchanged, svc.Name)
		}
	}
	for _, rc := range s.RCs(p.Name) {
		if !want[rc.Service] {
			res.Removed = append(res.Removed, rc.Service)
		}
	}
	return res
}

func (tx *Txn) applyProject(c *ApplyProject) error {
	p := c.Project
	if err := api.ValidateProject(&p); err != nil {
		return fmt.Errorf("apply project: %w", err)
	}
	if err := api.IngressConflict(p, tx.otherRCs(p.Name)); err != nil {
		return fmt.Errorf("apply project: %w", err)
	}
	if c.ServiceCIDR != "" {
		// Fail before changing anything when the service CIDR is full.
		if free, err := tx.freeVIPs(c.ServiceCIDR, len(p.Services)); err != nil {
			return err
		} else if !free {
			return fmt.Errorf("apply project %s: service cidr %s has no free virtual IPs left", p.Name, c.ServiceCIDR)
		}
	}
	want := map[string]bool{}
	for _, svc := range p.Services {
		want[svc.Name] = true
		key := api.RCKey(p.Name, svc.Name)
		rc := tx.RC(key)
		if rc == nil {
			rc = &api.ReplicationController{Project: p.Name, Service: svc.Name}
		}
		rc.Replicas = svc.Replicas
		svc.KeepRecreate(rc.Template)
		if templateChanged(rc, svc) {
			prev := rc.Template
			rc.Previous = &prev
			rc.Update = &api.UpdateStatus{State: api.UpdateUpdating}
		}
		rc.Template = svc
		rc.SpecHash = svc.Hash()
		if rc.VIP == "" && c.ServiceCIDR != "" {
			vip, err := tx.allocateVIP(c.ServiceCIDR)
			if err != nil {
				return err
			}
			rc.VIP = vip
		}
		rc.CreateStopped = p.NoStart
		tx.PutRC(*rc)
		if !p.NoStart {
			tx.startStopped(p.Name, svc.Name)
		}
	}
	for key, rc := range tx.s.rcs {
		if rc.Project == p.Name && !want[rc.Service] {
			tx.DeleteRC(key)
		}
	}
	for _, name := range tx.PodNames(p.Name) {
		if pod := tx.Pod(name); !want[pod.Service] && !pod.Deleting {
			pod.Deleting = true
			tx.PutPod(*pod)
		}
	}
	vols := append([]string(nil), p.Volumes...)
	sort.Strings(vols)
	tx.PutProject(ProjectRecord{Name: p.Name, Volumes: vols})
	return nil
}

// otherRCs lists the controllers of every project but project, by key.
func (tx *Txn) otherRCs(project string) []api.ReplicationController {
	var out []api.ReplicationController
	for _, key := range slices.Sorted(maps.Keys(tx.s.rcs)) {
		if rc := tx.s.rcs[key]; rc.Project != project {
			out = append(out, *rc)
		}
	}
	return out
}

func (tx *Txn) deleteProject(c *DeleteProject) error {
	for key, rc := range tx.s.rcs {
		if rc.Project == c.Name {
			tx.DeleteRC(key)
		}
	}
	for _, name := range tx.PodNames(c.Name) {
		if pod := tx.Pod(name); !pod.Deleting {
			pod.Deleting = true
			tx.PutPod(*pod)
		}
	}
	tx.DeleteProject(c.Name)
	return nil
}

func (tx *Txn) scale(c *Scale) error {
	// Validate everything first: a bad entry changes nothing.
	for svc, n := range c.Replicas {
		rc := tx.RC(api.RCKey(c.Project, svc))
		if rc == nil {
			return fmt.Errorf("scale %s: no such service in project %s", svc, c.Project)
		}
		if err := api.CheckReplicas(svc, n, rc.Template.ContainerName); err != nil {
			return fmt.Errorf("scale: %w", err)
		}
	}
	for svc, n := range c.Replicas {
		rc := tx.RC(api.RCKey(c.Project, svc))
		rc.Replicas = n
		rc.Template.Replicas = n
		tx.PutRC(*rc)
		tx.startStopped(c.Project, svc)
	}
	return nil
}

func (tx *Txn) removeStopped(c *RemoveStoppedPods) {
	for _, name := range c.Names {
		p := tx.Pod(name)
		if p == nil {
			continue
		}
		rc := tx.RC(api.RCKey(p.Project, p.Service))
		if rc == nil || !Removable(*p, *rc) {
			continue
		}
		p.Deleting = true
		tx.PutPod(*p)
		rc.Replicas = max(rc.Replicas-1, 0)
		rc.Template.Replicas = rc.Replicas
		tx.PutRC(*rc)
	}
}

// startStopped clears the `dev stop` of a service's pods: `dev up`, `dev
// scale` and a rollback of the service start them again, as `docker compose
// up` starts stopped containers.
func (tx *Txn) startStopped(project, service string) {
	tx.clearCreateStopped(project, service)
	for _, name := range tx.PodNames(project) {
		if p := tx.Pod(name); p.Service == service && p.Stopped {
			p.Stopped = false
			tx.PutPod(*p)
		}
	}
}

// clearCreateStopped ends the `dev up --no-start` of a service: its new
// pods are started again.
func (tx *Txn) clearCreateStopped(project, service string) {
	if rc := tx.RC(api.RCKey(project, service)); rc != nil && rc.CreateStopped {
		rc.CreateStopped = false
		tx.PutRC(*rc)
	}
}

// allocateVIP returns the lowest address of cidr that no controller holds
// (the network address itself is skipped). Deterministic: every replica of
// the log picks the same one.
func (tx *Txn) allocateVIP(cidr string) (string, error) {
	pfx, err := netip.ParsePrefix(cidr)
	if err != nil {
		return "", fmt.Errorf("parse service cidr %q: %w", cidr, err)
	}
	taken := tx.takenVIPs()
	pfx = pfx.Masked()
	for a := pfx.Addr().Next(); a.IsValid() && pfx.Contains(a); a = a.Next() {
		if !taken[a.String()] && !isBroadcast(pfx, a) {
			return a.String(), nil
		}
	}
	return "", fmt.Errorf("allocate virtual ip: service cidr %s is exhausted", cidr)
}

// freeVIPs reports whether n more addresses can be allocated from cidr.
func (tx *Txn) freeVIPs(cidr string, n int) (bool, error) {
	pfx, err := netip.ParsePrefix(cidr)
	if err != nil {
		return false, fmt.Errorf("parse service cidr %q: %w", cidr, err)
	}
	size := 1 << (pfx.Addr().BitLen() - pfx.Bits())
	if pfx.Addr().BitLen()-pfx.Bits() > 30 {
		return true, nil
	}
	return size-2-len(tx.takenVIPs()) >= n, nil
}

func (tx *Txn) takenVIPs() map[string]bool {
	taken := map[string]bool{}
	for _, rc := range tx.s.rcs {
		if rc.VIP != "" {
			taken[rc.VIP] = true
		}
	}
	return taken
}

// putNode registers or updates a node, allocating its pod subnet beside
// the services' virtual IPs: in the state machine, so that every replica
// makes the same choice and two nodes never get one subnet.
func (tx *Txn) putNode(c *PutNode) error {
	n := c.Node
	if old := tx.s.nodes[n.Name]; old != nil {
		if n.PodSubnet == "" {
			n.PodSubnet = old.PodSubnet
		}
		// A user's choices (CordonNode, LabelNode), not the reporter's.
		n.Cordoned, n.Draining, n.UserLabels = old.Cordoned, old.Draining, old.UserLabels // stored maps are never changed in place
		n.Labels = NodeLabels(n.Labels, n.UserLabels)
	} else {
		n.Cordoned, n.Draining, n.UserLabels = false, false, nil
	}
	if n.PodSubnet == "" && c.ClusterCIDR != "" {
		sub, err := allocateSubnet(c.ClusterCIDR, tx.s.nodes)
		if err != nil {
			return fmt.Errorf("register node %s: %w", n.Name, err)
		}
		n.PodSubnet = sub
	}
	tx.PutNode(n)
	return nil
}

// NodeLabels is labels with user's applied: k: v set, k: "" removed (a
// node's own labels with those of dev node label).
func NodeLabels(labels, user map[string]string) map[string]string {
	out := maps.Clone(labels)
	for k, v := range user {
		if v == "" {
			delete(out, k)
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out
}

// allocateSubnet returns the lowest /24 of cidr that no node holds. The
// first /24 (x.y.0.0) is skipped: it reads too much like the network itself.
func allocateSubnet(cidr string, nodes map[string]*api.Node) (string, error) {
	pfx, err := netip.ParsePrefix(cidr)
	if err != nil {
		return "", fmt.Errorf("parse cluster cidr %q: %w", cidr, err)
	}
	if !pfx.Addr().Is4() || pfx.Bits() > 23 {
		return "", fmt.Errorf("cluster cidr %s: want an IPv4 prefix of /23 or larger", cidr)
	}
	taken := map[string]bool{}
	for _, n := range nodes {
		taken[n.PodSubnet] = true
	}
	base := pfx.Masked().Addr().As4()
	count := 1 << (24 - pfx.Bits())
	for i := 1; i < count; i++ {
		a := base
		a[2] += byte(i & 0xff)
		a[1] += byte(i >> 8)
		sub := netip.PrefixFrom(netip.AddrFrom4(a), 24).String()
		if !taken[sub] {
			return sub, nil
		}
	}
	return "", fmt.Errorf("allocate pod subnet: cluster cidr %s is exhausted", cidr)
}

func isBroadcast(pfx netip.Prefix, a netip.Addr) bool {
	n := a.Next()
	return !n.IsValid() || !pfx.Contains(n)
}
