package pki

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestDataKeySeal: a sealed blob opens with its key and purpose only, and
// not once altered; the key file is 0600 and a worker (no file) is told
// so by os.ErrNotExist.
func TestDataKeySeal(t *testing.T) {
	k, err := NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	want := ClusterSecrets{CAKeyPEM: []byte("-----BEGIN EC PRIVATE KEY-----"), WorkerSecret: "w", ManagerSecret: "m"}
	sealed, err := k.SealClusterSecrets(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.OpenClusterSecrets(sealed)
	if err != nil || string(got.CAKeyPEM) != string(want.CAKeyPEM) || got.WorkerSecret != "w" || got.ManagerSecret != "m" {
		t.Fatalf("open: %+v, %v", got, err)
	}
	altered := append([]byte(nil), sealed...)
	altered[len(altered)-1] ^= 1
	tests := []struct {
		name string
		open func() error
	}{
		{"another key", func() error { _, err := other.OpenClusterSecrets(sealed); return err }},
		{"another purpose", func() error { _, err := k.Open(sealed, []byte("something else")); return err }},
		{"altered", func() error { _, err := k.OpenClusterSecrets(altered); return err }},
		{"truncated", func() error { _, err := k.OpenClusterSecrets(sealed[:10]); return err }},
	}
	for _, tt := range tests {
		if tt.open() == nil {
			t.Errorf("%s: opened", tt.name)
		}
	}

	dir := t.TempDir()
	if _, err := LoadDataKey(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadDataKey of a dir without one: %v, want os.ErrNotExist", err)
	}
	if err := SaveDataKey(dir, k); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, DataKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("data key file: %v, %v; want mode 0600", fi, err)
	}
	loaded, err := LoadDataKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loaded.OpenClusterSecrets(sealed); err != nil {
		t.Errorf("the loaded key does not open what the saved one sealed: %v", err)
	}
}

// TestSealToCSR: what is sealed to a CSR's key opens with that key only.
func TestSealToCSR(t *testing.T) {
	key, csr, err := NewKeyAndCSR("m2")
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := NewKeyAndCSR("relay")
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := SealToCSR(csr, []byte("the data key"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := OpenWithKey(key, sealed); err != nil || string(got) != "the data key" {
		t.Fatalf("open with the CSR's key: %q, %v", got, err)
	}
	if _, err := OpenWithKey(other, sealed); err == nil {
		t.Error("another key opened it")
	}
	if _, err := OpenWithKey(key, sealed[:70]); err == nil {
		t.Error("a truncated blob opened")
	}
	if !ProofMatches(JoinProof("s", "m2", csr), "s", "m2", csr) || ProofMatches(JoinProof("s", "m2", csr), "s", "m3", csr) || ProofMatches(nil, "", "m2", csr) {
		t.Error("a join proof matches another name, or an empty secret matches")
	}
}
