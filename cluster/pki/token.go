package pki

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"strings"
)

const (
	tokenPrefix  = "DEVTKN"
	tokenVersion = "1"
	secretBytes  = 32
)

// secretEncoding is lowercase base32 without padding (a-z, 2-7): no '-', so
// it never collides with the token's separators.
var secretEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Token is a join token: the CA fingerprint a joining node pins, and the
// secret that authorizes it to get a certificate.
type Token struct {
	Fingerprint string // "sha256:<hex>", as returned by Fingerprint
	Secret      string
}

// NewSecret returns 32 random bytes, base32 lowercase without padding.
func NewSecret() (string, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate join secret: %w", err)
	}
	return secretEncoding.EncodeToString(b), nil
}

// String is the token as printed by `dev token`: "DEVTKN-1-<fingerprint hex>-<secret>".
func (t Token) String() string {
	return tokenPrefix + "-" + tokenVersion + "-" + strings.TrimPrefix(t.Fingerprint, fingerprintPrefix) + "-" + t.Secret
}

const tokenHelp = `want DEVTKN-1-<64 hex digits>-<secret>; copy the whole line printed by "dev token" (or "dev token --manager") on a manager of the cluster`

// ParseToken parses the output of Token.String. Surrounding whitespace is ignored.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Token{}, fmt.Errorf("join token: empty: %s", tokenHelp)
	}
	parts := strings.Split(s, "-")
	if len(parts) != 4 || parts[0] != tokenPrefix {
		return Token{}, fmt.Errorf("join token: malformed: %s", tokenHelp)
	}
	if parts[1] != tokenVersion {
		return Token{}, fmt.Errorf("join token: unsupported version %q (this dev reads version %s): run \"dev token\" with the same dev version, or upgrade dev on this machine",
			parts[1], tokenVersion)
	}
	fp, secret := parts[2], parts[3]
	if raw, err := hex.DecodeString(fp); err != nil || len(raw) != 32 || strings.ToLower(fp) != fp {
		return Token{}, fmt.Errorf("join token: malformed CA fingerprint: %s", tokenHelp)
	}
	if raw, err := secretEncoding.DecodeString(secret); err != nil || len(raw) != secretBytes {
		return Token{}, fmt.Errorf("join token: malformed secret: %s", tokenHelp)
	}
	return Token{Fingerprint: fingerprintPrefix + fp, Secret: secret}, nil
}

// SecretMatches reports, in constant time, whether s is the token's secret.
// An empty token secret never matches.
func (t Token) SecretMatches(s string) bool {
	if t.Secret == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(t.Secret), []byte(s)) == 1
}
