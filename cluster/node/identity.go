package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/devhq/dev/cluster/api"
	"github.com/devhq/dev/cluster/manager"
	"github.com/devhq/dev/cluster/peers"
	"github.com/devhq/dev/cluster/pki"
	"github.com/devhq/dev/cluster/state"
)

// credentials is what a node keeps on disk to take part in the cluster.
type credentials struct {
	id        *pki.Identity
	gossipKey []byte
	// dataKey opens the cluster's sealed secrets: managers only, nil on a
	// worker.
	dataKey *pki.DataKey
	// pending is the cluster identity a bootstrapping node still has to
	// record in raft (nil once recorded, and on joined nodes).
	pending *state.ClusterInfo
	// gossipPeers are members to join right away (from the join answer).
	gossipPeers []string
	// fresh is set when the node has just joined: it has no raft state.
	fresh bool
	// label is the cluster label on this node's containers
	// (api.LabelCluster): the first CA's, kept through CA rotations.
	label string
}

const (
	pkiDir         = "pki"
	gossipKeyFile  = "gossip.key"
	bootstrapFile  = "bootstrap.json"
	joinRetryLimit = 30 * time.Second
)

// credentials loads this node's identity, or creates the cluster (first
// node), or joins it with the token (a new node).
func (n *Node) credentials(ctx context.Context) (*credentials, error) {
	dir := filepath.Join(n.cfg.DataDir, pkiDir)
	if id, err := pki.LoadIdentity(dir); err == nil {
		key, err := os.ReadFile(filepath.Join(dir, gossipKeyFile))
		if err != nil {
			return nil, fmt.Errorf("read gossip key: %w", err)
		}
		c := &credentials{id: id, gossipKey: key}
		if c.label, err = loadClusterLabel(dir, id.RootsPEM()); err != nil {
			return nil, err
		}
		if c.dataKey, err = pki.LoadDataKey(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		if b, err := os.ReadFile(filepath.Join(dir, bootstrapFile)); err == nil {
			var ci state.ClusterInfo
			if err := json.Unmarshal(b, &ci); err != nil {
				return nil, fmt.Errorf("read %s: %w", bootstrapFile, err)
			}
			c.pending = &ci
		}
		if n.cfg.Join != "" {
			n.log.Info("already a cluster member: ignoring --join", "data_dir", n.cfg.DataDir)
		}
		return c, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	if n.cfg.Join != "" {
		return n.join(ctx, dir)
	}
	return n.bootstrap(dir)
}

// certIPs are the addresses a node certificate names.
func (n *Node) certIPs() []net.IP {
	ips := []net.IP{net.IPv4(127, 0, 0, 1)}
	if a, err := netip.ParseAddr(n.cfg.AdvertiseAddr); err == nil {
		ips = append(ips, net.IP(a.AsSlice()))
	}
	return ips
}

// bootstrap creates the cluster: its CA, the managers' data key that seals
// the CA key and the join secrets, the gossip key, and this node's
// certificate.
func (n *Node) bootstrap(dir string) (*credentials, error) {
	idb := make([]byte, 8)
	if _, err := rand.Read(idb); err != nil {
		return nil, fmt.Errorf("create cluster id: %w", err)
	}
	clusterID := hex.EncodeToString(idb)
	ca, err := pki.NewCA(clusterID)
	if err != nil {
		return nil, err
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		return nil, err
	}
	workerSecret, err := pki.NewSecret()
	if err != nil {
		return nil, err
	}
	managerSecret, err := pki.NewSecret()
	if err != nil {
		return nil, err
	}
	dataKey, err := pki.NewDataKey()
	if err != nil {
		return nil, err
	}
	sealed, err := dataKey.SealClusterSecrets(pki.ClusterSecrets{CAKeyPEM: caKey, WorkerSecret: workerSecret, ManagerSecret: managerSecret})
	if err != nil {
		return nil, err
	}
	gossipKey := make([]byte, 32)
	if _, err := rand.Read(gossipKey); err != nil {
		return nil, fmt.Errorf("create gossip key: %w", err)
	}
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(n.cfg.Name)
	if err != nil {
		return nil, err
	}
	certPEM, err := ca.SignFor(csrPEM, n.cfg.Name, pki.RoleNode, n.certIPs(), nil, pki.NodeCertLifetime(n.cfg.CertLifetime))
	if err != nil {
		return nil, err
	}
	localCA, err := pki.NewLocalCA(clusterID)
	if err != nil {
		return nil, err
	}
	localSealed, err := dataKey.SealLocalCA(localCA)
	if err != nil {
		return nil, err
	}
	ci := state.ClusterInfo{ID: clusterID, CACertPEM: ca.CertPEM, GossipKey: gossipKey, Sealed: sealed,
		LocalCACertPEM: localCA.CertPEM, LocalCASealed: localSealed}
	b, err := json.Marshal(ci)
	if err != nil {
		return nil, fmt.Errorf("encode cluster identity: %w", err)
	}
	// The data key and the bootstrap file first: a crash between the writes
	// then leaves no identity, and the next start bootstraps again.
	if err := pki.SaveDataKey(dir, dataKey); err != nil {
		return nil, err
	}
	if err := pki.WriteSecretFile(filepath.Join(dir, bootstrapFile), b); err != nil {
		return nil, err
	}
	if err := pki.WriteSecretFile(filepath.Join(dir, gossipKeyFile), gossipKey); err != nil {
		return nil, err
	}
	label, err := pki.ClusterLabel(ca.CertPEM)
	if err != nil {
		return nil, err
	}
	if err := saveClusterLabel(dir, label); err != nil {
		return nil, err
	}
	if err := pki.SaveIdentity(dir, certPEM, keyPEM, ca.CertPEM); err != nil {
		return nil, err
	}
	id, err := pki.LoadIdentity(dir)
	if err != nil {
		return nil, err
	}
	n.log.Info("created cluster", "cluster", clusterID, "ca", ca.Fingerprint())
	return &credentials{id: id, gossipKey: gossipKey, dataKey: dataKey, pending: &ci, label: label}, nil
}

// join asks a cluster node (trusted through the token's CA fingerprint) to
// admit this node, and saves the certificate it signs.
func (n *Node) join(ctx context.Context, dir string) (*credentials, error) {
	tok, err := pki.ParseToken(n.cfg.Token)
	if err != nil {
		return nil, fmt.Errorf("%w (get it with `dev token` or `dev token --manager` on a manager)", err)
	}
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(n.cfg.Name)
	if err != nil {
		return nil, err
	}
	var ips []string
	for _, ip := range n.certIPs() {
		ips = append(ips, ip.String())
	}
	body, err := json.Marshal(api.JoinRequest{Name: n.cfg.Name, Proof: pki.JoinProof(tok.Secret, n.cfg.Name, csrPEM), CSR: csrPEM, IPs: ips})
	if err != nil {
		return nil, fmt.Errorf("encode join request: %w", err)
	}
	addr := n.joinAPIAddr()
	hc := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.PinnedTLS(tok.Fingerprint)}}
	var res api.JoinResponse
	deadline := time.Now().Add(joinRetryLimit)
	for {
		res, err = postJoin(ctx, hc, addr, body)
		var refused *joinRefused
		if err == nil || errors.As(err, &refused) || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		n.log.Info("join: retrying", "addr", addr, "err", err)
		time.Sleep(time.Second)
	}
	if err != nil {
		return nil, fmt.Errorf("join cluster at %s: %w", addr, err)
	}
	var dataKey *pki.DataKey
	if res.DataKey != nil {
		raw, err := pki.OpenWithKey(keyPEM, res.DataKey)
		if err == nil {
			dataKey, err = pki.ParseDataKey(raw)
		}
		if err != nil {
			return nil, fmt.Errorf("join cluster at %s: the data key: %w", addr, err)
		}
	}
	if err := pki.WriteSecretFile(filepath.Join(dir, gossipKeyFile), res.GossipKey); err != nil {
		return nil, err
	}
	// The data key before the identity: the identity is what says the
	// join is done (a crash before it joins again). A worker keeps none,
	// not even one left from an earlier membership.
	if dataKey != nil {
		err = pki.SaveDataKey(dir, dataKey)
	} else {
		err = pki.RemoveDataKey(dir)
	}
	if err != nil {
		return nil, err
	}
	label := res.Label
	if label == "" { // a leader from before CA rotation: the CA's
		if label, err = pki.ClusterLabel(res.CA); err != nil {
			return nil, fmt.Errorf("join cluster at %s: %w", addr, err)
		}
	}
	if err := saveClusterLabel(dir, label); err != nil {
		return nil, err
	}
	if err := pki.SaveIdentity(dir, res.Cert, keyPEM, res.CA); err != nil {
		return nil, err
	}
	id, err := pki.LoadIdentity(dir)
	if err != nil {
		return nil, err
	}
	n.log.Info("joined cluster", "cluster", res.ClusterID, "via", addr, "manager", dataKey != nil)
	peers := res.Gossip
	if host, _, err := net.SplitHostPort(addr); err == nil && len(peers) == 0 {
		peers = []string{host}
	}
	return &credentials{id: id, gossipKey: res.GossipKey, dataKey: dataKey, gossipPeers: peers, fresh: true, label: label}, nil
}

// joinAPIAddr is the API address of --join ("" without): port 7948 when
// it names none.
func (n *Node) joinAPIAddr() string {
	addr := n.cfg.Join
	if addr == "" {
		return ""
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "7948")
	}
	return addr
}

// joinRefused is a definitive "no" from the cluster (wrong token, name
// taken): retrying cannot help.
type joinRefused struct{ msg string }

func (e *joinRefused) Error() string { return e.msg }

func postJoin(ctx context.Context, hc *http.Client, addr string, body []byte) (api.JoinResponse, error) {
	var res api.JoinResponse
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+"/v1/join", bytes.NewReader(body))
	if err != nil {
		return res, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		var untrusted *pki.UntrustedServerError
		if errors.As(err, &untrusted) {
			return res, &joinRefused{msg: fmt.Sprintf("the node at %s is not of the cluster the token belongs to: %v", addr, untrusted)}
		}
		return res, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		var e api.Error
		if json.Unmarshal(b, &e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(b))
		}
		if resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusConflict || resp.StatusCode == http.StatusBadRequest {
			return res, &joinRefused{msg: e.Message}
		}
		return res, errors.New(e.Message)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return res, fmt.Errorf("decode join answer: %w", err)
	}
	return res, nil
}

// renewCertificate renews this node's certificate at 2/3 of its life, and
// at once on a signal on now (a CA rotation: followCA), from the leader
// (whose handshake checks the revocation list: a removed node gets none),
// saves it in the data dir and puts it in place in the running TLS
// configs. A failed renewal is retried every renewRetry until ctx ends.
func (n *Node) renewCertificate(ctx context.Context, id *pki.Identity, mgr *manager.Manager, pr *peers.Peers, now <-chan struct{}) error {
	const renewRetry = 10 * time.Second
	dir := filepath.Join(n.cfg.DataDir, pkiDir)
	wait := time.Until(id.RenewAt())
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(max(wait, 0)):
		case <-now:
		}
		wait = renewRetry
		addr, err := mgr.LeaderAPI()
		if err != nil {
			n.log.Warn("renew certificate: no leader", "err", err)
			continue
		}
		keyPEM, csrPEM, err := pki.NewKeyAndCSR(n.cfg.Name)
		if err != nil {
			n.log.Warn("renew certificate", "err", err)
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		res, err := pr.Renew(rctx, addr, csrPEM)
		cancel()
		if err == nil {
			// The CAs trusted stay what followCA made them: the state's
			// (the signer's answer may predate a rotation's end).
			n.pkiMu.Lock()
			roots := id.RootsPEM()
			if err = pki.SaveIdentity(dir, res.Cert, keyPEM, roots); err == nil {
				err = id.Reload(res.Cert, keyPEM, roots)
			}
			n.pkiMu.Unlock()
		}
		if err != nil {
			n.log.Warn("renew certificate", "err", err, "expires", id.Certificate().Leaf.NotAfter)
			continue
		}
		n.log.Info("renewed certificate", "expires", id.Certificate().Leaf.NotAfter)
		wait = time.Until(id.RenewAt())
	}
}

// labelFile holds the cluster label (credentials.label) in the pki dir.
const labelFile = "cluster.label"

// loadClusterLabel reads the cluster label from dir. A node made before
// CA rotation has no file: its label is its CA's (caPEM), written now,
// before a rotation can change its ca.crt.
func loadClusterLabel(dir string, caPEM []byte) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, labelFile))
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read cluster label: %w", err)
	}
	label, err := pki.ClusterLabel(caPEM)
	if err != nil {
		return "", err
	}
	return label, saveClusterLabel(dir, label)
}

func saveClusterLabel(dir, label string) error {
	if err := pki.WriteSecretFile(filepath.Join(dir, labelFile), []byte(label+"\n")); err != nil {
		return fmt.Errorf("save cluster label: %w", err)
	}
	return nil
}
