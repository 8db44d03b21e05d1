package pki

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// DataKeyFile is where a manager keeps the data key, in its pki directory.
// Workers have no such file.
const DataKeyFile = "manager.key"

const (
	dataKeyBytes = 32 // AES-256
	sealVersion  = 1
	// clusterSecretsAAD binds a sealed ClusterSecrets to its purpose: a
	// blob sealed for something else does not open as one.
	clusterSecretsAAD = "dev/cluster-secrets/v1"
)

// DataKey is the managers' key. It seals what only managers may read in
// the replicated state (the CA key and the join secrets), which every
// node, workers included, holds a copy of in its raft data. It is created
// with the cluster, kept by each manager in DataKeyFile (0600), handed to
// a node that joins with the manager token, and never written to raft.
type DataKey struct {
	raw  []byte
	aead cipher.AEAD
}

// NewDataKey makes a random data key.
func NewDataKey() (*DataKey, error) {
	b := make([]byte, dataKeyBytes)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("create data key: %w", err)
	}
	return ParseDataKey(b)
}

// ParseDataKey makes a DataKey of its raw bytes.
func ParseDataKey(b []byte) (*DataKey, error) {
	if len(b) != dataKeyBytes {
		return nil, fmt.Errorf("data key: %d bytes, want %d", len(b), dataKeyBytes)
	}
	block, err := aes.NewCipher(b)
	if err != nil {
		return nil, fmt.Errorf("data key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("data key: %w", err)
	}
	return &DataKey{raw: append([]byte(nil), b...), aead: aead}, nil
}

// Bytes is the raw key, to hand to a joining manager.
func (k *DataKey) Bytes() []byte { return append([]byte(nil), k.raw...) }

// LoadDataKey reads dir's data key. A node without one (a worker) gets an
// error that wraps os.ErrNotExist.
func LoadDataKey(dir string) (*DataKey, error) {
	b, err := os.ReadFile(filepath.Join(dir, DataKeyFile))
	if err != nil {
		return nil, fmt.Errorf("load data key: %w", err)
	}
	k, err := ParseDataKey(b)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", filepath.Join(dir, DataKeyFile), err)
	}
	return k, nil
}

// WriteSecretFile writes a file only its owner may read (0600): written
// beside it, synced, renamed into place, and the directory synced.
func WriteSecretFile(path string, data []byte) error { return writeFileAtomic(path, data, 0o600) }

// RemoveDataKey removes dir's data key, if any (a node that joins again as
// a worker).
func RemoveDataKey(dir string) error {
	if err := os.Remove(filepath.Join(dir, DataKeyFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove data key: %w", err)
	}
	return syncDir(dir)
}

// SaveDataKey writes k to dir (0600, synced).
func SaveDataKey(dir string, k *DataKey) error {
	if err := writeFileAtomic(filepath.Join(dir, DataKeyFile), k.raw, 0o600); err != nil {
		return fmt.Errorf("save data key: %w", err)
	}
	return nil
}

// Seal encrypts and authenticates plain, bound to aad: a version byte, a
// random nonce, then AES-256-GCM's output.
func (k *DataKey) Seal(plain, aad []byte) []byte {
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic(fmt.Sprintf("seal: read random nonce: %v", err)) // crypto/rand never fails on Linux
	}
	out := append([]byte{sealVersion}, nonce...)
	return k.aead.Seal(out, nonce, plain, aad)
}

// Open reverses Seal; a blob sealed by another key or for another aad, or
// altered, is refused.
func (k *DataKey) Open(sealed, aad []byte) ([]byte, error) {
	ns := k.aead.NonceSize()
	if len(sealed) < 1+ns+k.aead.Overhead() || sealed[0] != sealVersion {
		return nil, errors.New("open sealed data: malformed")
	}
	plain, err := k.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], aad)
	if err != nil {
		return nil, errors.New("open sealed data: not sealed by this cluster's data key (or altered)")
	}
	return plain, nil
}

// Digest identifies content under the data key: HMAC-SHA256 with a key
// derived from it. Equal content has equal digests in one cluster, and a
// node without the data key cannot test guesses against one (a plain
// SHA-256 of a short password could be searched).
func (k *DataKey) Digest(content []byte) string {
	sub := sha256.Sum256(append([]byte("dev/digest/v1\x00"), k.raw...))
	m := hmac.New(sha256.New, sub[:])
	m.Write(content)
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
}

// ClusterSecrets are the cluster's secrets only managers may read: the CA
// key, and the secrets of the worker and manager join tokens.
type ClusterSecrets struct {
	CAKeyPEM      []byte `json:"ca_key_pem"`
	WorkerSecret  string `json:"worker_secret"`
	ManagerSecret string `json:"manager_secret"`
}

// SealClusterSecrets seals s with k, for the replicated state.
func (k *DataKey) SealClusterSecrets(s ClusterSecrets) ([]byte, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("seal cluster secrets: %w", err)
	}
	return k.Seal(b, []byte(clusterSecretsAAD)), nil
}

// OpenClusterSecrets opens what SealClusterSecrets sealed.
func (k *DataKey) OpenClusterSecrets(sealed []byte) (ClusterSecrets, error) {
	var s ClusterSecrets
	b, err := k.Open(sealed, []byte(clusterSecretsAAD))
	if err != nil {
		return s, fmt.Errorf("cluster secrets: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("cluster secrets: %w", err)
	}
	return s, nil
}

// What a sealed CA key is for: a blob sealed for one does not open as the
// other.
const (
	localCAAAD = "dev/local-ca/v1"
	nextCAAAD  = "dev/next-ca/v1"
)

// SealLocalCA seals the local HTTPS CA's key (NewLocalCA) for the
// replicated state.
func (k *DataKey) SealLocalCA(ca *CA) ([]byte, error) { return k.sealCA(ca, localCAAAD) }

// OpenLocalCA rebuilds the local HTTPS CA from its certificate and sealed
// key.
func (k *DataKey) OpenLocalCA(certPEM, sealed []byte) (*CA, error) {
	return k.openCA(certPEM, sealed, localCAAAD, "the local CA")
}

// SealNextCA seals the key of the CA a rotation moves the cluster to (dev
// ca rotate), for the replicated state until the rotation is done.
func (k *DataKey) SealNextCA(ca *CA) ([]byte, error) { return k.sealCA(ca, nextCAAAD) }

// OpenNextCA rebuilds the CA a rotation moves to.
func (k *DataKey) OpenNextCA(certPEM, sealed []byte) (*CA, error) {
	return k.openCA(certPEM, sealed, nextCAAAD, "the new cluster CA")
}

func (k *DataKey) sealCA(ca *CA, aad string) ([]byte, error) {
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		return nil, err
	}
	return k.Seal(keyPEM, []byte(aad)), nil
}

func (k *DataKey) openCA(certPEM, sealed []byte, aad, what string) (*CA, error) {
	keyPEM, err := k.Open(sealed, []byte(aad))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", what, err)
	}
	return ParseCA(certPEM, keyPEM)
}

// SealACME seals value, stored at key of the ACME storage (a private
// key), for the replicated state: bound to its key, so that a blob moved
// to another key does not open.
func (k *DataKey) SealACME(key string, value []byte) []byte {
	return k.Seal(value, []byte("dev/acme/v1/"+key))
}

// OpenACME reverses SealACME.
func (k *DataKey) OpenACME(key string, sealed []byte) ([]byte, error) {
	b, err := k.Open(sealed, []byte("dev/acme/v1/"+key))
	if err != nil {
		return nil, fmt.Errorf("open ACME entry %s: %w", key, err)
	}
	return b, nil
}
