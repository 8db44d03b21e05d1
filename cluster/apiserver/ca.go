package apiserver

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/pki"
	"github.com/devhq/dev/cluster/state"
)

func (srv *Server) registerCA(mux *http.ServeMux) {
	handle(mux, "GET /v1/ca", roleRead, srv.handleCA)
	handle(mux, "POST /v1/ca/rotate", roleUser, srv.handleRotateCA)
}

// handleCA answers GET /v1/ca: the cluster CA and the rotation in
// progress, with the nodes it waits for.
func (srv *Server) handleCA(w http.ResponseWriter, _ *http.Request) {
	ci, ok := srv.r.State().Cluster()
	if !ok {
		writeError(w, &httpError{http.StatusServiceUnavailable, "unavailable", errors.New("the cluster is still starting; retry in a moment")})
		return
	}
	st, err := srv.caStatus(ci)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, st)
}

func (srv *Server) caStatus(ci state.ClusterInfo) (api.CAStatus, error) {
	roots, err := pki.ParseRoots(ci.CACertPEM)
	if err != nil {
		return api.CAStatus{}, err
	}
	st := api.CAStatus{Fingerprint: pki.Fingerprint(roots[0])}
	if r := ci.Rotation; r != nil {
		st.Rotation = &api.CARotationStatus{Fingerprint: r.ID, Moved: slices.Clone(r.Moved), Waiting: CAWaiting(srv.r.State(), r)}
	}
	return st, nil
}

// CAWaiting are the nodes of the cluster that hold no certificate of
// rotation r's CA yet: the rotation is done when there is none.
func CAWaiting(st *state.Store, r *state.CARotation) []string {
	waiting := []string{}
	for _, n := range st.Nodes() {
		if !slices.Contains(r.Moved, n.Name) {
			waiting = append(waiting, n.Name)
		}
	}
	slices.Sort(waiting)
	return waiting
}

// handleRotateCA is `dev ca rotate`: a new CA, cross-signed by the
// current one, that every node trusts from now on and signs with; each
// node renews its certificate at once, and the leader makes the new CA
// the only one once every node has moved (cluster/node: caRotation).
func (srv *Server) handleRotateCA(w http.ResponseWriter, r *http.Request) {
	u, err := srv.clusterSecrets("rotate the CA")
	if err != nil {
		writeError(w, err)
		return
	}
	switch {
	case u.info.Legacy():
		writeError(w, conflict("rotate the CA: this cluster was made by a dev that kept the CA key in the clear, which cannot rotate it; make a new cluster to move to a new CA"))
		return
	case u.info.Rotation != nil:
		writeError(w, conflict("rotate the CA: a rotation (to %s) is in progress, waiting for %v; see dev ca status", u.info.Rotation.ID, CAWaiting(srv.r.State(), u.info.Rotation)))
		return
	}
	next, err := pki.NewCA(u.info.ID + " " + time.Now().UTC().Format("20060102T150405Z"))
	if err != nil {
		writeError(w, err)
		return
	}
	cross, err := u.ca.CrossSign(next)
	if err != nil {
		writeError(w, err)
		return
	}
	sealed, err := srv.opts.DataKey.SealNextCA(next)
	if err != nil {
		writeError(w, err)
		return
	}
	label := u.info.Label
	if label == "" {
		if label, err = pki.ClusterLabel(u.info.CACertPEM); err != nil {
			writeError(w, err)
			return
		}
	}
	cmd := &state.StartCARotation{Label: label, Rotation: state.CARotation{
		ID: next.Fingerprint(), CertPEM: next.CertPEM, CrossPEM: cross, Sealed: sealed}}
	if _, err := srv.mgr.Apply(r.Context(), cmd); err != nil {
		writeError(w, err)
		return
	}
	srv.log.Info("started a CA rotation", "from", u.fingerprint, "to", next.Fingerprint())
	// From the command: on a follower the entry may not have reached this
	// node's state yet.
	writeJSON(w, api.CAStatus{Fingerprint: u.fingerprint, Rotation: &api.CARotationStatus{
		Fingerprint: next.Fingerprint(), Moved: []string{}, Waiting: CAWaiting(srv.r.State(), &cmd.Rotation)}})
}

// nextCA is the CA rotation ci.Rotation moves to, ready to sign: what it
// signs carries the cross-signed certificate, and its holder trusts both
// CAs.
func (srv *Server) nextCA(ci state.ClusterInfo) (*pki.CA, error) {
	if srv.opts.DataKey == nil {
		return nil, srv.errNoDataKey("sign")
	}
	next, err := srv.opts.DataKey.OpenNextCA(ci.Rotation.CertPEM, ci.Rotation.Sealed)
	if err != nil {
		return nil, err
	}
	if next.Trust, err = pki.ParseRoots(ci.TrustedCAs()); err != nil {
		return nil, err
	}
	next.Chain = ci.Rotation.CrossPEM
	return next, nil
}

// FinishCARotation makes the CA of the rotation in progress the cluster's
// only one once every node holds a certificate of it: its key goes into
// the sealed cluster secrets in place of the old CA's. It runs on the
// leader (elsewhere it does nothing) and reports whether it finished one.
func (srv *Server) FinishCARotation(ctx context.Context) (bool, error) {
	if !srv.r.IsLeader() {
		return false, nil
	}
	ci, ok := srv.r.State().Cluster()
	if !ok || ci.Rotation == nil || len(CAWaiting(srv.r.State(), ci.Rotation)) > 0 {
		return false, nil
	}
	u, err := srv.clusterSecrets("finish the CA rotation")
	if err != nil {
		return false, err
	}
	if u.info.Rotation == nil || u.info.Rotation.ID != ci.Rotation.ID {
		return false, nil // finished meanwhile
	}
	keyPEM, err := u.ca.KeyPEM()
	if err != nil {
		return false, err
	}
	// New join secrets with the new CA: the tokens pin the CA, and the new
	// fingerprint is public (every node sends it), so an old token's
	// secret must not admit anyone either.
	secrets := u.secrets
	secrets.CAKeyPEM = keyPEM
	for _, s := range []*string{&secrets.WorkerSecret, &secrets.ManagerSecret} {
		if *s, err = pki.NewSecret(); err != nil {
			return false, err
		}
	}
	sealed, err := srv.opts.DataKey.SealClusterSecrets(secrets)
	if err != nil {
		return false, err
	}
	if _, err := srv.mgr.Apply(ctx, &state.FinishCARotation{ID: u.info.Rotation.ID, Sealed: sealed, Prev: u.info.Sealed}); err != nil {
		return false, err
	}
	srv.log.Info("finished the CA rotation: the old CA is no longer trusted", "ca", u.info.Rotation.ID)
	return true, nil
}
