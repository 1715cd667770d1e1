// Package filevalue tells a setting that names a file from one that holds
// the file's content: a key, a certificate or a credentials file pasted
// where its path belongs (a Kubernetes secretKeyRef, "$(cat key.pem)", a
// Key Vault secret). Every error about a path quotes it, which would put
// the secret in the log; such a value is refused without being echoed.
package filevalue

import (
	"encoding/base64"
	"strings"
)

// Content names what v holds when it is a file's content rather than a
// path: "PEM text" (or any text of several lines), "base64"; "" when it
// may be a path.
func Content(v string) string {
	switch {
	case strings.Contains(v, "-----BEGIN") || strings.ContainsAny(v, "\r\n"):
		return "PEM text"
	case looksBase64(v):
		return "base64"
	}
	return ""
}

// looksBase64 reports whether v is a long run of base64 (a DER
// certificate or key, a PFX), which no path is.
func looksBase64(v string) bool {
	if len(v) < 256 {
		return false
	}
	_, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		_, err = base64.RawStdEncoding.DecodeString(v)
	}
	return err == nil
}
