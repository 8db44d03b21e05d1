package pki

import "testing"

// FuzzParseToken: any string either fails to parse or is a token that
// prints back to one that parses to the same token; nothing panics.
func FuzzParseToken(f *testing.F) {
	ca, err := NewCA("fuzz")
	if err != nil {
		f.Fatal(err)
	}
	secret, err := NewSecret()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(Token{Fingerprint: ca.Fingerprint(), Secret: secret}.String())
	f.Add("DEVTKN-1--")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			return
		}
		again, err := ParseToken(tok.String())
		if err != nil || again != tok {
			t.Fatalf("%q parsed to %+v, which prints as %q and parses to %+v, %v", s, tok, tok.String(), again, err)
		}
	})
}
