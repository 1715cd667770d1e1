package filevalue

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"testing"

	"github.com/nats-io/nkeys"
)

// A file's content, whatever its form and however short, is told from a
// path; no path an admin would write is taken for content.
func TestContent(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edDER, err := x509.MarshalPKCS8PrivateKey(ed)
	if err != nil {
		t.Fatal(err)
	}
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := user.Seed()
	if err != nil {
		t.Fatal(err)
	}
	const jwt = "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJqdGkiOiJBQkMiLCJzdWIiOiJVQUJDIn0.c2lnbmF0dXJl"
	for _, c := range []struct{ name, v, want string }{
		{"PEM", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})), "PEM text"},
		{"EC key in base64 (164 characters)", base64.StdEncoding.EncodeToString(ecDER), "base64"},
		{"Ed25519 key in base64 (64 characters)", base64.StdEncoding.EncodeToString(edDER), "base64"},
		{"EC key in base64url without padding", base64.RawURLEncoding.EncodeToString(ecDER), "base64"},
		{"NKEY seed", string(seed), "an NKEY seed"},
		{"user JWT", jwt, "a JWT"},
		{"absolute path", "/etc/screenpop/tls.key", ""},
		{"relative path", "tls.key", ""},
		{"path of base64 characters only", "/etc/screenpop/natscreds", ""},
		{"path starting like DER", "MAINSTORAGE/secrets/screenpop/tlskeyfile/v2/keyfile", ""},
		{"Kubernetes secret mount", "/var/run/secrets/screenpop/tls/tls.key", ""},
		{"a name of 58 capitals", "SUMMARYOFTHEKEYSFORTHESCREENPOPDAEMONINTHEPRODUCTIONREGION", ""},
		{"empty", "", ""},
	} {
		if got := Content(c.v); got != c.want {
			t.Errorf("%s: Content = %q, want %q", c.name, got, c.want)
		}
	}
}
