package state

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
)

// CARotation is a move of the cluster to a new CA in progress (dev ca
// rotate). The new CA's certificate and its cross-signature by the old CA
// are public; its key is sealed with the managers' data key.
type CARotation struct {
	// ID names the rotation: the new CA's fingerprint.
	ID       string `json:"id"`
	CertPEM  []byte `json:"cert_pem"`
	CrossPEM []byte `json:"cross_pem"`
	Sealed   []byte `json:"sealed"`
	// Moved are the nodes given a certificate of the new CA, in the
	// order they got it.
	Moved []string `json:"moved,omitempty"`
}

// TrustedCAs are the CAs every node and client of the cluster trusts,
// PEM: the cluster's CA, and the new one during a rotation.
func (ci ClusterInfo) TrustedCAs() []byte {
	out := bytes.Clone(ci.CACertPEM)
	if ci.Rotation != nil {
		out = append(out, ci.Rotation.CertPEM...)
	}
	return out
}

// ErrNoCARotation refuses a rotation step when no rotation, or another
// one, is in progress.
var ErrNoCARotation = errors.New("no such CA rotation in progress")

func (tx *Txn) startCARotation(c *StartCARotation) error {
	ci := tx.s.cluster
	switch {
	case ci == nil:
		return errors.New("rotate the CA: the cluster is not set up yet")
	case ci.Legacy():
		return errors.New("rotate the CA: this cluster was made by a dev that kept the CA key in the clear; it cannot rotate its CA")
	case ci.Rotation != nil:
		return fmt.Errorf("rotate the CA: a rotation (to %s) is in progress; wait for it (dev ca status)", ci.Rotation.ID)
	case c.Rotation.ID == "" || len(c.Rotation.CertPEM) == 0 || len(c.Rotation.CrossPEM) == 0 || len(c.Rotation.Sealed) == 0:
		return errors.New("rotate the CA: incomplete rotation")
	}
	next := *ci
	r := c.Rotation
	r.Moved = nil
	next.Rotation = &r
	if next.Label == "" {
		next.Label = c.Label
	}
	tx.s.cluster = &next
	return nil
}

func (tx *Txn) moveToCA(c *MoveToCA) error {
	ci := tx.s.cluster
	if ci == nil || ci.Rotation == nil || ci.Rotation.ID != c.ID {
		return fmt.Errorf("record %s's certificate of CA %s: %w", c.Node, c.ID, ErrNoCARotation)
	}
	if slices.Contains(ci.Rotation.Moved, c.Node) {
		return nil
	}
	next, r := *ci, *ci.Rotation
	r.Moved = append(slices.Clone(r.Moved), c.Node)
	next.Rotation = &r
	tx.s.cluster = &next
	return nil
}

func (tx *Txn) finishCARotation(c *FinishCARotation) error {
	ci := tx.s.cluster
	switch {
	case ci == nil || ci.Rotation == nil || ci.Rotation.ID != c.ID:
		return fmt.Errorf("finish the CA rotation to %s: %w", c.ID, ErrNoCARotation)
	case len(c.Sealed) == 0:
		return errors.New("finish the CA rotation: nothing sealed")
	case !bytes.Equal(c.Prev, ci.Sealed):
		return errors.New("finish the CA rotation: the cluster secrets changed meanwhile; it is tried again")
	}
	next := *ci
	next.CACertPEM = bytes.Clone(ci.Rotation.CertPEM)
	next.Sealed = bytes.Clone(c.Sealed)
	next.Rotation = nil
	tx.s.cluster = &next
	return nil
}
