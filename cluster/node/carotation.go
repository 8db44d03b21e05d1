package node

import (
	"bytes"
	"context"
	"crypto/x509"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	"github.com/devhq/dev/cluster/pki"
	"github.com/devhq/dev/cluster/state"
)

// caResync is how often followCA looks at the state without a change,
// and the least time between two renewals it asks for.
const caResync = 5 * time.Second

// followCA keeps the CAs this node trusts those of the state
// (ClusterInfo.TrustedCAs), in its TLS configs and in ca.crt. During a CA
// rotation (dev ca rotate) it asks for a certificate of the new CA at once
// (renewNow) until the node holds one, then records the move in the state
// (record: state.MoveToCA, once the certificate is in place, so that a
// renewal answer lost on the way cannot count); on the leader it finishes
// the rotation once every node has moved (finish).
func (n *Node) followCA(ctx context.Context, st *state.Store, id *pki.Identity, renewNow chan<- struct{},
	record func(context.Context, state.Command) error, finish func(context.Context) (bool, error)) error {
	log := n.log.With("component", "ca")
	dir := filepath.Join(n.cfg.DataDir, pkiDir)
	tick := time.NewTicker(caResync)
	defer tick.Stop()
	var (
		asked, recorded time.Time
		next            *x509.Certificate // the rotation's CA, parsed once
	)
	for {
		changed := st.Changed()
		if ci, ok := st.Cluster(); ok {
			n.trustCAs(ci.TrustedCAs(), id, dir, log)
			if r := ci.Rotation; r != nil {
				if next == nil || pki.Fingerprint(next) != r.ID {
					next = nil
					if roots, err := pki.ParseRoots(r.CertPEM); err == nil {
						next = roots[0]
					}
				}
				moved := next != nil && pki.SignedBy(id.Certificate().Leaf, next)
				switch {
				case !moved && time.Since(asked) >= caResync:
					asked = time.Now()
					select {
					case renewNow <- struct{}{}:
					default:
					}
				case moved && !slices.Contains(r.Moved, n.cfg.Name) && time.Since(recorded) >= caResync:
					recorded = time.Now()
					rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					if err := record(rctx, &state.MoveToCA{ID: r.ID, Node: n.cfg.Name}); err != nil && ctx.Err() == nil {
						log.Warn("record this node's move to the new CA (retried)", "err", err)
					}
					cancel()
				}
			}
			if ci.Rotation != nil && finish != nil {
				if _, err := finish(ctx); err != nil && ctx.Err() == nil {
					log.Warn("finish the CA rotation", "err", err)
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-tick.C:
		}
	}
}

// trustCAs makes want (PEM) the CAs id trusts, and saves them in dir's
// ca.crt, when they differ from those it trusts.
func (n *Node) trustCAs(want []byte, id *pki.Identity, dir string, log *slog.Logger) {
	if len(want) == 0 || bytes.Equal(want, id.RootsPEM()) {
		return
	}
	n.pkiMu.Lock()
	defer n.pkiMu.Unlock()
	if err := id.SetRoots(want); err != nil {
		// Its own certificate is of a CA the cluster dropped: the other
		// nodes refuse it too.
		log.Warn("trust the cluster's CAs", "err", err)
		return
	}
	if err := pki.SaveRoots(dir, want); err != nil {
		log.Warn("save the cluster's CAs", "err", err)
		return
	}
	log.Info("trusting the cluster's CAs", "cas", fingerprints(id.Roots()))
}

func fingerprints(certs []*x509.Certificate) []string {
	out := make([]string, len(certs))
	for i, c := range certs {
		out[i] = pki.Fingerprint(c)
	}
	return out
}
