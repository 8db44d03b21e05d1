package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/peers"
	"github.com/devhq/dev/cluster/pki"
	"github.com/devhq/dev/cluster/state"
)

// localCertLifetime is how long a tls: local certificate lasts; the node
// asks for a new one at 2/3 of it.
const localCertLifetime = 30 * 24 * time.Hour

// registerIngress mounts the routes of the local HTTPS CA: its certificate
// for users to trust, and node-only, a certificate for a tls: local route.
func (srv *Server) registerIngress(mux *http.ServeMux) {
	handle(mux, "GET /v1/ca/local", roleRead, srv.handleLocalCA)
}

func (srv *Server) registerIngressInternal(mux *http.ServeMux) {
	handle(mux, "POST "+peers.PathIngressCert, roleNode, srv.handleIngressCert)
	handle(mux, "POST "+peers.PathACMEKey, roleNode, srv.handleACMEKey)
}

// handleACMEKey opens the private key of a certificate of the ACME
// storage (a tls: auto route's) for a worker's ingress router, which
// serves it but holds no data key. An ACME account key is never given.
func (srv *Server) handleACMEKey(w http.ResponseWriter, r *http.Request) {
	var req api.ACMEKeyRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, invalid("decode key request: %v", err))
		return
	}
	if !state.IsACMECertificateKey(req.Key) {
		writeError(w, &httpError{http.StatusForbidden, "forbidden", fmt.Errorf("open %s: only a certificate's key is given to a node", req.Key)})
		return
	}
	if srv.opts.DataKey == nil {
		writeError(w, srv.errNoDataKey("open a certificate's key"))
		return
	}
	e, ok := srv.r.State().ACME(req.Key)
	if !ok || !e.Sealed {
		writeError(w, notFound("no sealed key %s", req.Key))
		return
	}
	key, err := srv.opts.DataKey.OpenACME(req.Key, e.Value)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, api.ACMEKeyResponse{KeyPEM: key})
}

// handleLocalCA answers the local HTTPS CA's certificate (dev ca export).
// A cluster made before the local CA gets one here when this node is a
// manager: a user trusts it before any route asks for a certificate.
func (srv *Server) handleLocalCA(w http.ResponseWriter, r *http.Request) {
	ci, ok := srv.r.State().Cluster()
	if ok && len(ci.LocalCACertPEM) > 0 {
		writeJSON(w, api.LocalCAResponse{CertPEM: ci.LocalCACertPEM})
		return
	}
	if srv.opts.DataKey == nil {
		writeError(w, notFound("this cluster has no local HTTPS CA yet: run dev ca export on a manager, which makes it"))
		return
	}
	ca, err := srv.localCA(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, api.LocalCAResponse{CertPEM: ca.CertPEM})
}

// handleIngressCert signs a certificate for a node's ingress router, for a
// host that a tls: local route names, with the local HTTPS CA (made on the
// spot in a cluster from before it). Only a manager can: the CA key is
// sealed. The host must be routed: a node cannot get a certificate for
// any name it likes.
func (srv *Server) handleIngressCert(w http.ResponseWriter, r *http.Request) {
	var req api.IngressCertRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, invalid("decode certificate request: %v", err))
		return
	}
	if !api.LocalHost(req.Host) || !routedLocal(srv.r.State(), req.Host) {
		writeError(w, &httpError{http.StatusForbidden, "forbidden", fmt.Errorf("certificate for %s: no tls: local route names that host", req.Host)})
		return
	}
	ca, err := srv.localCA(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	cert, err := ca.SignServer(req.CSR, []string{req.Host}, localCertLifetime)
	if err != nil {
		writeError(w, invalid("certificate for %s: %v", req.Host, err))
		return
	}
	c, _ := callerFrom(r.Context())
	srv.log.Info("signed a local HTTPS certificate", "host", req.Host, "node", c.Name)
	writeJSON(w, api.IngressCertResponse{Cert: cert, CA: ca.CertPEM})
}

// routedLocal reports whether a route with tls: local names host.
func routedLocal(st *state.Store, host string) bool {
	for _, rc := range st.RCs("") {
		for _, rt := range rc.Template.Ingress {
			if rt.Host == host && rt.TLS == api.IngressTLSLocal {
				return true
			}
		}
	}
	return false
}

// localCA opens the local HTTPS CA, making and recording it first in a
// cluster that has none (one made by an earlier dev).
func (srv *Server) localCA(ctx context.Context) (*pki.CA, error) {
	const what = "local HTTPS CA"
	key := srv.opts.DataKey
	ci, ok := srv.r.State().Cluster()
	switch {
	case !ok:
		return nil, &httpError{http.StatusServiceUnavailable, "unavailable", fmt.Errorf("%s: the cluster is still starting; retry in a moment", what)}
	case ci.Legacy():
		return nil, &httpError{http.StatusConflict, "conflict", fmt.Errorf("%s: this cluster was made by a dev from before the data key, which seals it; re-create the cluster to serve tls: local routes", what)}
	case key == nil:
		return nil, srv.errNoDataKey(what)
	}
	if len(ci.LocalCACertPEM) == 0 {
		ca, err := pki.NewLocalCA(ci.ID)
		if err != nil {
			return nil, err
		}
		sealed, err := key.SealLocalCA(ca)
		if err != nil {
			return nil, err
		}
		// Another manager may record one first: then it is that one.
		if _, err := srv.mgr.Apply(ctx, &state.SetLocalCA{CertPEM: ca.CertPEM, Sealed: sealed}); err != nil {
			srv.log.Info("record the local HTTPS CA", "err", err)
		}
		if ci, ok = srv.r.State().Cluster(); !ok || len(ci.LocalCACertPEM) == 0 {
			return nil, &httpError{http.StatusServiceUnavailable, "unavailable", fmt.Errorf("%s: not recorded yet; retry in a moment", what)}
		}
	}
	return key.OpenLocalCA(ci.LocalCACertPEM, ci.LocalCASealed)
}
