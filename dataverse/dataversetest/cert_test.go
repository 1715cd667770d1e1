package dataversetest

import (
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// mustCert makes a certificate or fails the test.
func mustCert(t *testing.T, opt CertificateOptions) *Certificate {
	t.Helper()
	c, err := NewCertificate(opt)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// assertionFor is a client assertion as Entra ID documents it (PS256,
// x5t#S256) for the emulator's client, naming c's certificate and signed
// with c's key; edit changes it before it is signed.
func assertionFor(t *testing.T, s *Server, c *Certificate, edit func(tok *jwt.Token, cl jwt.MapClaims)) string {
	t.Helper()
	now := time.Now()
	sum := sha256.Sum256(c.Cert.Raw)
	tok := jwt.NewWithClaims(jwt.SigningMethodPS256, jwt.MapClaims{
		"aud": s.TokenURL(), "iss": s.cfg.ClientID, "sub": s.cfg.ClientID, "jti": "6f1c2a8e-0000-4000-8000-000000000001",
		"nbf": now.Unix(), "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
	})
	tok.Header["x5t#S256"] = base64.RawURLEncoding.EncodeToString(sum[:])
	if edit != nil {
		edit(tok, tok.Claims.(jwt.MapClaims))
	}
	signed, err := tok.SignedString(c.Key)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// postAssertion asks the token endpoint for a token with assertion and
// returns the status and the answer's error, AADSTS code and description.
func postAssertion(t *testing.T, s *Server, assertion string) (int, string, int, string) {
	t.Helper()
	resp, err := http.PostForm(s.TokenURL(), url.Values{
		"client_id": {s.cfg.ClientID}, "grant_type": {"client_credentials"}, "scope": {s.URL() + "/.default"},
		"client_assertion_type": {clientAssertionType}, "client_assertion": {assertion},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
		Codes       []int  `json:"error_codes"`
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	code := 0
	if len(body.Codes) > 0 {
		code = body.Codes[0]
	}
	if resp.StatusCode == http.StatusOK && body.AccessToken == "" {
		t.Fatal("200 without an access token")
	}
	return resp.StatusCode, body.Error, code, body.Description
}

// The token endpoint checks a client assertion as Entra ID does, and
// answers each failure with Entra's error shape and AADSTS code.
func TestServer_CertificateAssertion(t *testing.T) {
	registered := mustCert(t, CertificateOptions{})
	other := mustCert(t, CertificateOptions{})
	expired := mustCert(t, CertificateOptions{NotBefore: time.Now().AddDate(-1, 0, 0), NotAfter: time.Now().Add(-time.Hour)})
	s := New(Config{ClientCertificates: []*x509.Certificate{registered.Cert, expired.Cert}})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	for _, tc := range []struct {
		name     string
		cert     *Certificate
		edit     func(tok *jwt.Token, cl jwt.MapClaims)
		status   int
		aadsts   int
		descHas  string
		signWith *Certificate // sign with this key, the header naming cert
	}{
		{name: "Good", cert: registered, status: 200},
		{name: "RS256WithSHA1Thumbprint", cert: registered, status: 200, edit: func(tok *jwt.Token, _ jwt.MapClaims) {
			// What Entra ID documented before PS256, and still takes.
			sum := sha1.Sum(registered.Cert.Raw)
			tok.Method = jwt.SigningMethodRS256
			tok.Header["alg"] = "RS256"
			delete(tok.Header, "x5t#S256")
			tok.Header["x5t"] = base64.RawURLEncoding.EncodeToString(sum[:])
		}},
		{name: "WrongAudience", cert: registered, status: 401, aadsts: 700023, descHas: "audience claim does not match", edit: func(_ *jwt.Token, cl jwt.MapClaims) {
			cl["aud"] = "https://login.microsoftonline.com/common/oauth2/v2.0/token"
		}},
		{name: "Expired", cert: registered, status: 401, aadsts: 700024, descHas: "not within its valid time range", edit: func(_ *jwt.Token, cl jwt.MapClaims) {
			cl["nbf"], cl["iat"], cl["exp"] = time.Now().Add(-time.Hour).Unix(), time.Now().Add(-time.Hour).Unix(), time.Now().Add(-50*time.Minute).Unix()
		}},
		{name: "NotYetValid", cert: registered, status: 401, aadsts: 700024, edit: func(_ *jwt.Token, cl jwt.MapClaims) {
			cl["nbf"], cl["exp"] = time.Now().Add(time.Hour).Unix(), time.Now().Add(70*time.Minute).Unix()
		}},
		{name: "SkewOfAMinute", cert: registered, status: 200, edit: func(_ *jwt.Token, cl jwt.MapClaims) {
			cl["nbf"], cl["iat"] = time.Now().Add(time.Minute).Unix(), time.Now().Add(time.Minute).Unix()
		}},
		{name: "WrongSignature", cert: registered, signWith: other, status: 401, aadsts: 700027, descHas: "use of the key to verify the signature failed"},
		{name: "UnknownThumbprint", cert: other, status: 401, aadsts: 700027, descHas: "not registered on application"},
		{name: "RegisteredKeyExpired", cert: expired, status: 401, aadsts: 700027, descHas: "The key used is expired"},
		{name: "IssuerNotTheClient", cert: registered, status: 401, aadsts: 700021, edit: func(_ *jwt.Token, cl jwt.MapClaims) {
			cl["iss"] = "00000000-0000-0000-0000-0000000000cc"
		}},
		{name: "SubjectNotTheClient", cert: registered, status: 401, aadsts: 700021, edit: func(_ *jwt.Token, cl jwt.MapClaims) {
			cl["sub"] = "00000000-0000-0000-0000-0000000000cc"
		}},
		{name: "NoThumbprint", cert: registered, status: 401, aadsts: 50027, descHas: "No certificate thumbprint", edit: func(tok *jwt.Token, _ jwt.MapClaims) {
			delete(tok.Header, "x5t#S256")
		}},
		{name: "NoJTI", cert: registered, status: 401, aadsts: 50027, edit: func(_ *jwt.Token, cl jwt.MapClaims) {
			delete(cl, "jti")
		}},
		{name: "NoExpiry", cert: registered, status: 401, aadsts: 700024, edit: func(_ *jwt.Token, cl jwt.MapClaims) {
			delete(cl, "exp")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			signer := tc.cert
			if tc.signWith != nil {
				signer = &Certificate{Cert: tc.cert.Cert, Key: tc.signWith.Key}
			}
			status, errCode, code, desc := postAssertion(t, s, assertionFor(t, s, signer, tc.edit))
			if status != tc.status || code != tc.aadsts {
				t.Fatalf("answer %d AADSTS%d (%s), want %d AADSTS%d", status, code, desc, tc.status, tc.aadsts)
			}
			if status != 200 && (errCode != "invalid_client" || !strings.HasPrefix(desc, "AADSTS")) {
				t.Errorf("error %q, description %q: want invalid_client and an AADSTS description", errCode, desc)
			}
			if !strings.Contains(desc, tc.descHas) {
				t.Errorf("description %q lacks %q", desc, tc.descHas)
			}
		})
	}

	t.Run("WrongAssertionType", func(t *testing.T) {
		resp, err := http.PostForm(s.TokenURL(), url.Values{
			"client_id": {s.cfg.ClientID}, "grant_type": {"client_credentials"}, "scope": {s.URL() + "/.default"},
			"client_assertion_type": {"urn:example:other"}, "client_assertion": {assertionFor(t, s, registered, nil)},
		})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d, want 400", resp.StatusCode)
		}
	})

	// Only the accepted assertions are recorded, by the certificate's
	// SHA-1 thumbprint.
	for _, tp := range s.CertificatesUsed() {
		if tp != registered.Thumbprint() {
			t.Errorf("certificate used %s, want only %s", tp, registered.Thumbprint())
		}
	}
	if n := len(s.CertificatesUsed()); n != 3 {
		t.Errorf("%d tokens issued for assertions, want 3 (Good, RS256, SkewOfAMinute)", n)
	}
}

// A PS256 signature is RSASSA-PSS with SHA-256 and a salt as long as the
// hash (RFC 7518, 3.5), which is what Entra ID (.NET's
// RSASignaturePadding.Pss) verifies. One with another salt length, as
// rsa.SignPSS writes with nil options, is refused there: the emulator must
// not take it, or a client signing so would pass every test and fail on
// the first real tenant.
func TestServer_CertificateAssertionPSSSaltLength(t *testing.T) {
	registered := mustCert(t, CertificateOptions{})
	s := New(Config{ClientCertificates: []*x509.Certificate{registered.Cert}})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	maxSalt := &jwt.SigningMethodRSAPSS{SigningMethodRSA: jwt.SigningMethodPS256.SigningMethodRSA,
		Options: &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}} // signing: the longest salt that fits
	a := assertionFor(t, s, registered, func(tok *jwt.Token, _ jwt.MapClaims) { tok.Method = maxSalt })
	status, _, code, desc := postAssertion(t, s, a)
	if status != http.StatusUnauthorized || code != 700027 {
		t.Fatalf("answer %d AADSTS%d (%s) to PS256 with a %d-byte salt, want 401 AADSTS700027", status, code, desc, registered.Key.Size()-32-2)
	}
	// The documented salt length is still taken.
	if status, _, code, desc := postAssertion(t, s, assertionFor(t, s, registered, nil)); status != http.StatusOK {
		t.Fatalf("answer %d AADSTS%d (%s) to PS256 with a 32-byte salt, want 200", status, code, desc)
	}
}
