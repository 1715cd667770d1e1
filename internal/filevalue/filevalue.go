// Package filevalue tells a setting that names a file from one that holds
// the file's content: a key, a certificate or a credentials file pasted
// where its path belongs (a Kubernetes secretKeyRef, "$(cat key.pem)", a
// Key Vault secret). Every error about a path quotes it, which would put
// the secret in the log; such a value is refused without being echoed.
package filevalue

import (
	"encoding/base64"
	"regexp"
	"strings"

	"github.com/nats-io/nkeys"
)

// Content names what v holds when it is a file's content rather than a
// path: "PEM text" (or any text of several lines), "base64" (a DER key or
// certificate, a PFX), "an NKEY seed", "a JWT" (a NATS user's, a creds
// file's parts on their own); "" when it may be a path.
func Content(v string) string {
	switch {
	case strings.Contains(v, "-----BEGIN") || strings.ContainsAny(v, "\r\n"):
		return "PEM text"
	case isSeed(v):
		return "an NKEY seed"
	case jwtText.MatchString(v):
		return "a JWT"
	case looksBase64(v):
		return "base64"
	}
	return ""
}

// isSeed reports whether v is an NKEY seed (a NATS user's, account's,
// operator's…), its checksum included.
func isSeed(v string) bool {
	if len(v) != 58 || v[0] != 'S' {
		return false
	}
	_, err := nkeys.FromSeed([]byte(v))
	return err == nil
}

var (
	// jwtText is a JWT: three base64url parts, the header's JSON first.
	jwtText = regexp.MustCompile(`^eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$`)
)

// looksBase64 reports whether v is base64 that no path is: a long run of
// it, or any that decodes to DER (an EC key in base64 is 164 characters,
// an Ed25519 one 64).
func looksBase64(v string) bool {
	var b []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err = enc.DecodeString(v); err == nil {
			break
		}
	}
	if err != nil {
		return false
	}
	return len(v) >= 256 || derSequence(b)
}

// derSequence reports whether b is one DER SEQUENCE, its length as its
// header says (a key or a certificate), of at least 32 bytes.
func derSequence(b []byte) bool {
	if len(b) < 32 || b[0] != 0x30 {
		return false
	}
	n, hdr := int(b[1]), 2
	switch b[1] {
	case 0x81:
		n, hdr = int(b[2]), 3
	case 0x82:
		n, hdr = int(b[2])<<8|int(b[3]), 4
	default:
		if b[1] >= 0x80 {
			return false
		}
	}
	return hdr+n == len(b)
}
