package bridge

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
)

// Hasher makes the keyed hash that stands in for customer data in logs.
// Log lines never carry a phone number, email or name, not even in part;
// where a line must let an engineer correlate calls from one caller, it
// carries Hasher.Hash of the value: an HMAC-SHA256 under a per-deployment
// key, truncated to 16 hex digits. Without the key the hash cannot be
// reversed by trying every phone number.
//
// The zero Hasher hashes nothing: Hash returns "".
type Hasher struct{ key []byte }

// NewHasher returns a Hasher with key, which must be secret and at least 16
// bytes.
func NewHasher(key []byte) Hasher { return Hasher{key: append([]byte(nil), key...)} }

// Hash returns the keyed hash of v, or "" for an empty v or a zero Hasher.
func (h Hasher) Hash(v string) string {
	if v == "" || len(h.key) == 0 {
		return ""
	}
	m := hmac.New(sha256.New, h.key)
	m.Write([]byte(v))
	return hex.EncodeToString(m.Sum(nil)[:8])
}
