package dataversetest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Certificate is a self-signed certificate and its RSA key, the credential
// an app registration holds under Certificates & secrets > Certificates.
// Register Cert in Config.ClientCertificates; give the client the file
// WriteFile writes.
type Certificate struct {
	Cert  *x509.Certificate
	Key   *rsa.PrivateKey
	PKCS1 bool // WriteFile and PEM write the key as PKCS#1 (BEGIN RSA PRIVATE KEY)
}

// CertificateOptions shape a Certificate made by NewCertificate.
type CertificateOptions struct {
	NotBefore, NotAfter time.Time // zero: an hour ago, a year from now
	// PKCS1 writes the key as PKCS#1 (BEGIN RSA PRIVATE KEY), as older
	// openssl does; the default is PKCS#8 (BEGIN PRIVATE KEY), as
	// `openssl req -x509 -newkey rsa:2048 -nodes` and `az ad sp
	// create-for-rbac --create-cert` write it.
	PKCS1 bool
}

// NewCertificate makes a self-signed certificate with a new 2048-bit RSA
// key.
func NewCertificate(opt CertificateOptions) (*Certificate, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("dataversetest certificate: %w", err)
	}
	now := time.Now()
	if opt.NotBefore.IsZero() {
		opt.NotBefore = now.Add(-time.Hour)
	}
	if opt.NotAfter.IsZero() {
		opt.NotAfter = now.AddDate(1, 0, 0)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, fmt.Errorf("dataversetest certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "screenpop emulator app"},
		NotBefore:    opt.NotBefore,
		NotAfter:     opt.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("dataversetest certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("dataversetest certificate: %w", err)
	}
	return &Certificate{Cert: cert, Key: key, PKCS1: opt.PKCS1}, nil
}

// PEM is the certificate followed by its unencrypted key.
func (c *Certificate) PEM() []byte {
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Cert.Raw})
	if c.PKCS1 {
		return append(out, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(c.Key)})...)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(c.Key) // never fails for an RSA key
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})...)
}

// WriteFile writes PEM to path, mode 0600, replacing a file there at once
// (a temporary file renamed over it), as an admin rotating the file does.
func (c *Certificate) WriteFile(path string) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".cert-*")
	if err != nil {
		return err
	}
	_, err = f.Write(c.PEM())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// Thumbprint is the certificate's SHA-1 thumbprint in upper-case hex, as
// the Azure portal shows it.
func (c *Certificate) Thumbprint() string { return thumbprint(c.Cert) }

func thumbprint(c *x509.Certificate) string {
	sum := sha1.Sum(c.Raw)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// assertionSkew is the clock skew allowed on an assertion's nbf and exp.
const assertionSkew = 5 * time.Minute

const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// aadError is a token endpoint error answer.
type aadError struct {
	status int
	code   string
	aadsts int
	desc   string
}

const certDocs = " Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials ."

// verifyAssertion checks a client assertion as Entra ID does: a JWT
// signed PS256 or RS256 by a certificate registered for the client (named
// by its x5t#S256 or x5t header), not expired, whose iss and sub are the
// client id, whose aud is this token endpoint, inside its nbf/exp window
// (with a few minutes' skew), with a jti. It returns the thumbprint of
// the certificate that signed a good assertion, or the error answer.
func (s *Server) verifyAssertion(typ, assertion, clientID string, now time.Time) (string, *aadError) {
	invalid := func(code int, desc string) (string, *aadError) {
		return "", &aadError{http.StatusUnauthorized, "invalid_client", code, desc}
	}
	if typ != clientAssertionType {
		return "", &aadError{http.StatusBadRequest, "invalid_request", 90014, "The request body must contain the parameter 'client_assertion_type' with the value '" + clientAssertionType + "'."}
	}
	p := jwt.NewParser(jwt.WithoutClaimsValidation())
	claims := jwt.MapClaims{}
	tok, parts, err := p.ParseUnverified(assertion, claims)
	if err != nil {
		return invalid(50027, "Invalid JWT token. The token is malformed.")
	}
	if alg := tok.Method.Alg(); alg != "PS256" && alg != "RS256" {
		return invalid(50027, "Invalid JWT token. Unsupported signing algorithm '"+alg+"'.")
	}
	// The thumbprint names the key: x5t#S256 (SHA-256) or x5t (SHA-1).
	var used string
	var cert *x509.Certificate
	if h, ok := tok.Header["x5t#S256"].(string); ok {
		used = h
		for _, c := range s.cfg.ClientCertificates {
			if sum := sha256.Sum256(c.Raw); base64.RawURLEncoding.EncodeToString(sum[:]) == h {
				cert = c
			}
		}
	} else if h, ok := tok.Header["x5t"].(string); ok {
		used = h
		for _, c := range s.cfg.ClientCertificates {
			if sum := sha1.Sum(c.Raw); base64.RawURLEncoding.EncodeToString(sum[:]) == strings.TrimRight(h, "=") {
				cert = c
			}
		}
	} else {
		return invalid(50027, "Invalid JWT token. No certificate thumbprint specified in token header.")
	}
	if cert == nil {
		shown := used
		if b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(used, "=")); err == nil {
			shown = strings.ToUpper(hex.EncodeToString(b))
		}
		return invalid(700027, fmt.Sprintf("The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '%s', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '%s'.]", shown, clientID))
	}
	found := fmt.Sprintf("Thumbprint of key used by client: '%s', Found key 'Start=%s, End=%s'", thumbprint(cert),
		cert.NotBefore.UTC().Format("01/02/2006 15:04:05"), cert.NotAfter.UTC().Format("01/02/2006 15:04:05"))
	method := tok.Method
	if method.Alg() == "PS256" {
		// A PS256 salt is as long as the hash (RFC 7518, 3.5), and that is
		// all Entra ID verifies; golang-jwt's PS256 takes any length.
		method = &jwt.SigningMethodRSAPSS{SigningMethodRSA: jwt.SigningMethodPS256.SigningMethodRSA,
			VerifyOptions: &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}}
	}
	if err := method.Verify(parts[0]+"."+parts[1], tok.Signature, cert.PublicKey); err != nil {
		return invalid(700027, "Client assertion contains an invalid signature. [Reason - The key was found, but use of the key to verify the signature failed., "+found+"]")
	}
	if now.After(cert.NotAfter) {
		return invalid(700027, "Client assertion contains an invalid signature. [Reason - The key used is expired., "+found+"]")
	}
	iss, _ := claims.GetIssuer()
	sub, _ := claims.GetSubject()
	if iss != clientID || sub != clientID {
		return invalid(700021, "Client assertion application identifier doesn't match 'client_id' parameter."+certDocs)
	}
	aud, _ := claims.GetAudience()
	audOK := false
	for _, a := range aud {
		audOK = audOK || a == s.TokenURL()
	}
	if !audOK {
		return invalid(700023, "Client assertion audience claim does not match Realm issuer."+certDocs)
	}
	exp, err1 := claims.GetExpirationTime()
	nbf, err2 := claims.GetNotBefore()
	if err1 != nil || err2 != nil {
		return invalid(50027, "Invalid JWT token. The token's time claims are malformed.")
	}
	from, until := time.Unix(0, 0), time.Unix(0, 0) // Entra shows an absent one as 1970
	if nbf != nil {
		from = nbf.Time
	}
	if exp != nil {
		until = exp.Time
	}
	if exp == nil || !now.Before(until.Add(assertionSkew)) || from.After(now.Add(assertionSkew)) {
		return invalid(700024, fmt.Sprintf("Client assertion is not within its valid time range. Current time: %s, assertion valid from %s, expiry time of assertion %s."+certDocs,
			now.UTC().Format("2006-01-02T15:04:05.0000000Z"), from.UTC().Format("2006-01-02T15:04:05.0000000Z"), until.UTC().Format("2006-01-02T15:04:05.0000000Z")))
	}
	if jti, _ := claims["jti"].(string); jti == "" {
		return invalid(50027, "Invalid JWT token. The token has no 'jti' claim.")
	}
	return thumbprint(cert), nil
}

// CertificatesUsed lists the SHA-1 thumbprints (upper-case hex) of the
// certificates whose client assertions the token endpoint accepted, in
// order, one per token issued.
func (s *Server) CertificatesUsed() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.certsUsed...)
}
