// Package state is the in-memory cluster state that the raft FSM mutates:
// replication controllers, pods, nodes and projects, with read views, update
// transactions and watches by index.
package state

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/devhq/dev/cluster/api"
)

// ProjectRecord is what the store keeps of a project besides its controllers.
type ProjectRecord struct {
	Name        string   `json:"name"`
	Volumes     []string `json:"volumes,omitempty"`
	CreateIndex uint64   `json:"create_index"`
	ModifyIndex uint64   `json:"modify_index"`
}

// ClusterInfo is the cluster's identity, replicated so that any leader can
// admit nodes: the CA certificate, the gossip encryption key, and Sealed,
// the CA key and join secrets sealed with the managers' data key
// (pki.ClusterSecrets): every node holds this record, only managers can
// open Sealed.
type ClusterInfo struct {
	ID        string `json:"id"`
	CACertPEM []byte `json:"ca_cert_pem"`
	GossipKey []byte `json:"gossip_key"`
	// GossipKeyGen counts the rotations of GossipKey (0: the cluster's
	// first key); GossipKeyStale is set when a node is revoked, until the
	// next rotation. Both follow log order, not clocks.
	GossipKeyGen   uint64 `json:"gossip_key_gen,omitempty"`
	GossipKeyStale bool   `json:"gossip_key_stale,omitempty"`
	Sealed         []byte `json:"sealed,omitempty"`
	// LocalCACertPEM and LocalCASealed are the local HTTPS CA (the ingress
	// router's certificates for tls: local routes), its key sealed with
	// the data key: made with the cluster, or by the first manager that
	// needs it in a cluster made before it.
	LocalCACertPEM []byte `json:"local_ca_cert_pem,omitempty"`
	LocalCASealed  []byte `json:"local_ca_sealed,omitempty"`
	// CAKeyPEM and JoinSecret are how clusters made before the data key
	// held the CA key and the one join secret: in the clear, on every
	// node (Legacy).
	CAKeyPEM   []byte `json:"ca_key_pem,omitempty"`
	JoinSecret string `json:"join_secret,omitempty"`
	// Label is the cluster label on dev's containers (api.LabelCluster):
	// the first CA's fingerprint, kept through CA rotations; empty until
	// the first rotation (it is then CACertPEM's).
	Label string `json:"label,omitempty"`
	// Rotation is the CA rotation in progress, if any.
	Rotation *CARotation `json:"rotation,omitempty"`
}

// Legacy reports whether the cluster keeps its CA key in the clear (made
// by a dev from before the data key): every node may then be a voter.
func (ci ClusterInfo) Legacy() bool { return len(ci.Sealed) == 0 }

// Store holds the cluster state. Reads may happen from any goroutine; writes
// happen only through Update, called by the FSM in log order.
type Store struct {
	mu        sync.RWMutex
	index     uint64
	projects  map[string]*ProjectRecord
	rcs       map[string]*api.ReplicationController
	pods      map[string]*api.Pod
	nodes     map[string]*api.Node
	cluster   *ClusterInfo
	revoked   map[string]api.Revocation // by revocationKey
	revGen    uint64                    // bumped at every change of revoked
	admitted  map[string]time.Time      // node -> when its certificate was signed
	managers  map[string]bool           // nodes admitted as managers (and the founder)
	acme      map[string]ACMEEntry      // the ACME storage (tls: auto certificates)
	acmeLocks map[string]ACMELock
	changed   chan struct{} // closed and replaced at every Update
}

// New returns an empty store.
func New() *Store {
	return &Store{
		projects:  map[string]*ProjectRecord{},
		rcs:       map[string]*api.ReplicationController{},
		pods:      map[string]*api.Pod{},
		nodes:     map[string]*api.Node{},
		revoked:   map[string]api.Revocation{},
		admitted:  map[string]time.Time{},
		managers:  map[string]bool{},
		acme:      map[string]ACMEEntry{},
		acmeLocks: map[string]ACMELock{},
		changed:   make(chan struct{}),
	}
}

func revocationKey(kind, name string) string { return kind + "/" + name }

// Revoked reports whether a certificate of kind issued to name at issued
// is revoked. It is called on every TLS handshake: a map lookup.
func (s *Store) Revoked(kind, name string, issued time.Time) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.revokedLocked(kind, name, issued)
}

// RevocationGen changes whenever the revocation list does: a cheap way
// to notice a change among the store's many.
func (s *Store) RevocationGen() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.revGen
}

// revokedLocked is Revoked with s.mu held.
func (s *Store) revokedLocked(kind, name string, issued time.Time) bool {
	r, ok := s.revoked[revocationKey(kind, name)]
	return ok && issued.Before(lifted(r))
}

// RevokedUntil is the first issuance time a revocation of kind and name
// lets through: the second after it, since certificates carry whole
// seconds (one issued in the second of the revocation cannot be told
// from one issued just before it). An issuer waits for it.
func (s *Store) RevokedUntil(kind, name string) (time.Time, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.revoked[revocationKey(kind, name)]
	if !ok {
		return time.Time{}, false
	}
	return lifted(r), true
}

// lifted is the first issuance time r lets through (see RevokedUntil).
func lifted(r api.Revocation) time.Time { return r.At.Truncate(time.Second).Add(time.Second) }

// MayJoinRaft reports whether the node called name may be a raft member:
// it was admitted (its certificate signed by the leader, or its record
// written by its agent through the API), and not revoked since.
func (s *Store) MayJoinRaft(name string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	at, admitted := s.admitted[name]
	if !admitted {
		_, admitted = s.nodes[name]
	}
	return admitted && !s.revokedLocked(api.CertNode, name, at)
}

// MayVote reports whether the node called name may be a raft voter (and so
// leader): a manager that may be a raft member. In a Legacy cluster every
// member may.
func (s *Store) MayVote(name string) bool {
	if !s.MayJoinRaft(name) {
		return false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.managers[name] || (s.cluster != nil && s.cluster.Legacy())
}

// IsWorker reports whether the node called name is a worker: in a cluster
// whose secrets are sealed, a node that may not vote (admitted with the
// worker token). A Legacy cluster has no workers.
func (s *Store) IsWorker(name string) bool {
	ci, ok := s.Cluster()
	return ok && !ci.Legacy() && !s.MayVote(name)
}

// GossipKeySize is the size of the cluster's gossip key (AES-256).
const GossipKeySize = 32

// GossipKeyStale reports whether a node was revoked since the cluster's
// gossip key was made, and the generation the next key takes: the leader
// then rotates it (RotateGossipKey).
func (s *Store) GossipKeyStale() (next uint64, stale bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.cluster == nil {
		return 0, false
	}
	return s.cluster.GossipKeyGen + 1, s.cluster.GossipKeyStale
}

// Revocations lists the revocation list, by kind and name.
func (s *Store) Revocations() []api.Revocation {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]api.Revocation, 0, len(s.revoked))
	for _, r := range s.revoked {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		return revocationKey(out[i].Kind, out[i].Name) < revocationKey(out[j].Kind, out[j].Name)
	})
	return out
}

// Index is the raft index of the last applied update.
func (s *Store) Index() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.index
}

// Changed returns a channel closed at the next update.
func (s *Store) Changed() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.changed
}

// WaitIndex blocks until the store's index is greater than after, or ctx
// ends. It returns the current index either way.
func (s *Store) WaitIndex(ctx context.Context, after uint64) uint64 {
	for {
		s.mu.RLock()
		idx, ch := s.index, s.changed
		s.mu.RUnlock()
		if idx > after {
			return idx
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return idx
		}
	}
}

// Update runs fn as one transaction at raft index idx and wakes watchers.
// fn must only mutate the store through tx.
func (s *Store) Update(idx uint64, fn func(tx *Txn) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := fn(&Txn{s: s, index: idx})
	if idx > s.index {
		s.index = idx
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return err
}

// Cluster returns the cluster identity, if it was set.
func (s *Store) Cluster() (ClusterInfo, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.cluster == nil {
		return ClusterInfo{}, false
	}
	return *s.cluster, true
}

// Txn mutates the store inside Update.
type Txn struct {
	s     *Store
	index uint64
}

// Index is the raft index the transaction applies at.
func (tx *Txn) Index() uint64 { return tx.index }

// PutProject inserts or replaces a project record.
func (tx *Txn) PutProject(p ProjectRecord) {
	if old, ok := tx.s.projects[p.Name]; ok {
		p.CreateIndex = old.CreateIndex
	} else {
		p.CreateIndex = tx.index
	}
	p.ModifyIndex = tx.index
	tx.s.projects[p.Name] = &p
}

// DeleteProject removes a project record.
func (tx *Txn) DeleteProject(name string) { delete(tx.s.projects, name) }

// PutRC inserts or replaces a replication controller.
func (tx *Txn) PutRC(rc api.ReplicationController) {
	if old, ok := tx.s.rcs[rc.Key()]; ok {
		rc.CreateIndex = old.CreateIndex
	} else {
		rc.CreateIndex = tx.index
	}
	rc.ModifyIndex = tx.index
	tx.s.rcs[rc.Key()] = &rc
}

// RC returns a replication controller for modification, or nil.
func (tx *Txn) RC(key string) *api.ReplicationController {
	rc, ok := tx.s.rcs[key]
	if !ok {
		return nil
	}
	c := *rc
	return &c
}

// DeleteRC removes a replication controller.
func (tx *Txn) DeleteRC(key string) { delete(tx.s.rcs, key) }

// Pod returns a copy of a pod for modification, or nil.
func (tx *Txn) Pod(name string) *api.Pod {
	p, ok := tx.s.pods[name]
	if !ok {
		return nil
	}
	c := clonePod(p)
	return &c
}

// PutPod inserts or replaces a pod.
func (tx *Txn) PutPod(p api.Pod) {
	if old, ok := tx.s.pods[p.Name]; ok {
		p.CreateIndex = old.CreateIndex
	} else {
		p.CreateIndex = tx.index
	}
	p.ModifyIndex = tx.index
	tx.s.pods[p.Name] = &p
}

// DeletePod removes a pod.
func (tx *Txn) DeletePod(name string) { delete(tx.s.pods, name) }

// PodNames returns the names of the pods of a project (all if project is "").
func (tx *Txn) PodNames(project string) []string {
	var names []string
	for n, p := range tx.s.pods {
		if project == "" || p.Project == project {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// Node returns a copy of a node for modification, or nil.
func (tx *Txn) Node(name string) *api.Node {
	n, ok := tx.s.nodes[name]
	if !ok {
		return nil
	}
	c := *n
	return &c
}

// PutNode inserts or replaces a node.
func (tx *Txn) PutNode(n api.Node) {
	if old, ok := tx.s.nodes[n.Name]; ok {
		n.CreateIndex = old.CreateIndex
	} else {
		n.CreateIndex = tx.index
	}
	n.ModifyIndex = tx.index
	tx.s.nodes[n.Name] = &n
}

// Reads. Every read returns copies whose maps are copied too, so callers may
// keep them and change their fields and maps; slices inside are shared and
// must be treated as read-only (replace them, never write through them).

// Project returns a project record and whether it exists.
func (s *Store) Project(name string) (ProjectRecord, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, ok := s.projects[name]
	if !ok {
		return ProjectRecord{}, false
	}
	return *p, true
}

// Projects returns every project record, sorted by name.
func (s *Store) Projects() []ProjectRecord {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]ProjectRecord, 0, len(s.projects))
	for _, p := range s.projects {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// RC returns one replication controller.
func (s *Store) RC(key string) (api.ReplicationController, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	rc, ok := s.rcs[key]
	if !ok {
		return api.ReplicationController{}, false
	}
	return cloneRC(rc), true
}

// RCs returns the replication controllers of project ("" for all), sorted by key.
func (s *Store) RCs(project string) []api.ReplicationController {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rcsLocked(project)
}

func (s *Store) rcsLocked(project string) []api.ReplicationController {
	out := make([]api.ReplicationController, 0, len(s.rcs))
	for _, rc := range s.rcs {
		if project == "" || rc.Project == project {
			out = append(out, cloneRC(rc))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// Pod returns one pod.
func (s *Store) Pod(name string) (api.Pod, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, ok := s.pods[name]
	if !ok {
		return api.Pod{}, false
	}
	return clonePod(p), true
}

// PodFilter selects pods; zero fields match everything.
type PodFilter struct {
	Project  string
	Node     string
	Selector api.Selector
}

// Pods returns the pods matching f, sorted by project, service, index.
func (s *Store) Pods(f PodFilter) []api.Pod {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.podsLocked(f)
}

func (s *Store) podsLocked(f PodFilter) []api.Pod {
	out := make([]api.Pod, 0, len(s.pods))
	for _, p := range s.pods {
		if f.Project != "" && p.Project != f.Project {
			continue
		}
		if f.Node != "" && p.Node != f.Node {
			continue
		}
		if !f.Selector.Matches(p.Labels) {
			continue
		}
		out = append(out, clonePod(p))
	}
	SortPods(out)
	return out
}

// SortPods orders pods by project, service and index.
func SortPods(pods []api.Pod) {
	sort.Slice(pods, func(i, j int) bool {
		a, b := pods[i], pods[j]
		if a.Project != b.Project {
			return a.Project < b.Project
		}
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		return a.Index < b.Index
	})
}

// Node returns one node.
func (s *Store) Node(name string) (api.Node, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n, ok := s.nodes[name]
	if !ok {
		return api.Node{}, false
	}
	return cloneNode(n), true
}

// Nodes returns every node, sorted by name.
func (s *Store) Nodes() []api.Node {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.nodesLocked()
}

func (s *Store) nodesLocked() []api.Node {
	out := make([]api.Node, 0, len(s.nodes))
	for _, n := range s.nodes {
		out = append(out, cloneNode(n))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// View is a consistent copy of the nodes, controllers and pods at one
// index, sorted like Nodes, RCs and Pods.
type View struct {
	Index uint64
	Nodes []api.Node
	RCs   []api.ReplicationController
	Pods  []api.Pod
}

// View reads the nodes, controllers and pods under one lock, so that they
// are all as of View.Index.
func (s *Store) View() View {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return View{Index: s.index, Nodes: s.nodesLocked(), RCs: s.rcsLocked(""), Pods: s.podsLocked(PodFilter{})}
}

func clonePod(p *api.Pod) api.Pod {
	c := *p
	c.Labels = maps.Clone(p.Labels)
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	return c
}

func cloneRC(rc *api.ReplicationController) api.ReplicationController {
	c := *rc
	t := &c.Template
	t.Environment = maps.Clone(t.Environment)
	t.Labels = maps.Clone(t.Labels)
	t.Sysctls = maps.Clone(t.Sysctls)
	if t.Build != nil {
		b := *t.Build
		b.Args = maps.Clone(b.Args)
		t.Build = &b
	}
	return c
}

func cloneNode(n *api.Node) api.Node {
	c := *n
	c.Labels, c.UserLabels = maps.Clone(n.Labels), maps.Clone(n.UserLabels)
	return c
}

// snapshot is the serialized form of the whole store.
type snapshot struct {
	Index     uint64                      `json:"index"`
	Projects  []ProjectRecord             `json:"projects"`
	RCs       []api.ReplicationController `json:"rcs"`
	Pods      []api.Pod                   `json:"pods"`
	Nodes     []api.Node                  `json:"nodes"`
	Cluster   *ClusterInfo                `json:"cluster,omitempty"`
	Revoked   []api.Revocation            `json:"revoked,omitempty"`
	Admitted  map[string]time.Time        `json:"admitted,omitempty"`
	Managers  []string                    `json:"managers,omitempty"`
	ACME      map[string]ACMEEntry        `json:"acme,omitempty"`
	ACMELocks map[string]ACMELock         `json:"acme_locks,omitempty"`
}

// MarshalSnapshot serializes the whole store.
func (s *Store) MarshalSnapshot() ([]byte, error) {
	snap := snapshot{
		Index:    s.Index(),
		Projects: s.Projects(),
		RCs:      s.RCs(""),
		Pods:     s.Pods(PodFilter{}),
		Nodes:    s.Nodes(),
		Revoked:  s.Revocations(),
	}
	s.mu.RLock()
	if len(s.admitted) > 0 {
		snap.Admitted = maps.Clone(s.admitted)
	}
	snap.Managers = slices.Sorted(maps.Keys(s.managers))
	if len(s.acme) > 0 {
		snap.ACME = maps.Clone(s.acme)
	}
	if len(s.acmeLocks) > 0 {
		snap.ACMELocks = maps.Clone(s.acmeLocks)
	}
	s.mu.RUnlock()
	if len(snap.Revoked) == 0 {
		snap.Revoked = nil
	}
	if c, ok := s.Cluster(); ok {
		snap.Cluster = &c
	}
	b, err := json.Marshal(snap)
	if err != nil {
		return nil, fmt.Errorf("encode state snapshot: %w", err)
	}
	return b, nil
}

// RestoreSnapshot replaces the whole store with a serialized one.
func (s *Store) RestoreSnapshot(b []byte) error {
	var snap snapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		return fmt.Errorf("decode state snapshot: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index = snap.Index
	s.projects = map[string]*ProjectRecord{}
	s.rcs = map[string]*api.ReplicationController{}
	s.pods = map[string]*api.Pod{}
	s.nodes = map[string]*api.Node{}
	s.admitted = map[string]time.Time{}
	maps.Copy(s.admitted, snap.Admitted)
	s.managers = map[string]bool{}
	for _, m := range snap.Managers {
		s.managers[m] = true
	}
	s.revoked = map[string]api.Revocation{}
	for _, r := range snap.Revoked {
		s.revoked[revocationKey(r.Kind, r.Name)] = r
	}
	s.revGen++
	s.acme = map[string]ACMEEntry{}
	maps.Copy(s.acme, snap.ACME)
	s.acmeLocks = map[string]ACMELock{}
	maps.Copy(s.acmeLocks, snap.ACMELocks)
	s.cluster = snap.Cluster
	for i := range snap.Projects {
		s.projects[snap.Projects[i].Name] = &snap.Projects[i]
	}
	for i := range snap.RCs {
		s.rcs[snap.RCs[i].Key()] = &snap.RCs[i]
	}
	for i := range snap.Pods {
		s.pods[snap.Pods[i].Name] = &snap.Pods[i]
	}
	for i := range snap.Nodes {
		s.nodes[snap.Nodes[i].Name] = &snap.Nodes[i]
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}
