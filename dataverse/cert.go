package dataverse

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/internal/filevalue"
	"github.com/screenpop/screenpop/internal/loglimit"
)

// Certificate credentials (learn.microsoft.com/entra/identity-platform/
// certificate-credentials): instead of a client secret, the token request
// carries a client assertion, a short-lived JWT signed with the private key
// of a certificate uploaded to the app registration. Entra ID finds the
// certificate by the thumbprint in the JWT's header.

// ClientAssertionType is the client_assertion_type of a token request
// that authenticates with a certificate (RFC 7523).
const ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// CertificateExpiryWarning is how long before its expiry the client
// certificate is warned of, at start and in `screenpopd check`.
const CertificateExpiryWarning = 14 * 24 * time.Hour

// assertionLifetime is how long a client assertion is valid: Microsoft
// asks for 5 to 10 minutes.
const assertionLifetime = 10 * time.Minute

// maxCertificateFile bounds the PEM file read: a certificate, its chain and
// a key take a few KB; a wrong path (a log, /dev/zero) fails at once.
const maxCertificateFile = 1 << 20

// ClientCertificate is an app registration's certificate credential: the
// X.509 certificate and its RSA private key, read from one PEM file.
type ClientCertificate struct {
	Cert    *x509.Certificate
	key     *rsa.PrivateKey
	x5tS256 string // base64url SHA-256 of the certificate's DER: the JWT header's x5t#S256
}

// Thumbprint is the certificate's SHA-1 thumbprint in upper-case hex, as
// the Azure portal lists it under Certificates & secrets (and openssl
// x509 -noout -fingerprint -sha1 prints it, with colons).
func (c *ClientCertificate) Thumbprint() string {
	sum := sha1.Sum(c.Cert.Raw)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// ReadClientCertificate reads DATAVERSE_CLIENT_CERTIFICATE: a PEM file
// with the certificate and its unencrypted RSA private key (PKCS#8 or
// PKCS#1), in either order, as `openssl req -x509 -newkey rsa:2048 -nodes`
// (the two files joined) and `az ad sp create-for-rbac --create-cert`
// write it. Other certificates in the file (a chain) are ignored: the one
// used is the one the key belongs to. Each error reads "what is wrong;
// what to do".
func ReadClientCertificate(path string) (*ClientCertificate, error) {
	switch filevalue.Content(path) {
	case "PEM text":
		// The PEM itself where its path belongs (a Kubernetes
		// secretKeyRef, "$(cat dataverse.pem)"): every error below
		// quotes the path, which would put the private key in the log.
		return nil, errors.New("the value is PEM text, not the path of a file; write it to a file only the service user can read (e.g. /etc/screenpop/dataverse.pem, mode 0600) and give that file's path")
	case "base64":
		// The same in base64 on one line, as Azure Key Vault hands out a
		// certificate's secret (the PFX): key material, never quoted.
		return nil, errors.New("the value is base64 (a certificate or key itself, e.g. a Key Vault secret), not the path of a file; decode it into a PEM file only the service user can read (for a PFX: base64 -d > dataverse.pfx; openssl pkcs12 -in dataverse.pfx -nodes -out /etc/screenpop/dataverse.pem, mode 0600) and give that file's path")
	case "":
	default:
		return nil, fmt.Errorf("the value is %s, not the path of a file; give the path of a PEM file with the certificate and its private key", filevalue.Content(path))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w; give the path of a PEM file the service user can read", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCertificateFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w; give the path of a PEM file the service user can read", path, err)
	}
	if len(b) > maxCertificateFile {
		return nil, fmt.Errorf("%s is larger than 1 MiB, far more than a certificate and its key; give the PEM file of the app registration's certificate and its private key", path)
	}
	c, err := ParseClientCertificate(b)
	if err != nil {
		return nil, fmt.Errorf("%s %w", path, err)
	}
	return c, nil
}

// joinHint is how the two files openssl writes become the one file.
const joinHint = "cat cert.pem key.pem > dataverse.pem"

// ParseClientCertificate is ReadClientCertificate for the file's content.
func ParseClientCertificate(pemBytes []byte) (*ClientCertificate, error) {
	// A file saved by a Windows editor may start with a byte-order mark,
	// which would hide the first block from pem.Decode.
	rest := bytes.TrimPrefix(pemBytes, []byte("\ufeff"))
	var (
		certs   []*x509.Certificate
		key     any
		badCert error
	)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch block.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				badCert = err
				continue
			}
			certs = append(certs, c)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("holds an encrypted private key (BEGIN ENCRYPTED PRIVATE KEY), which screenpopd cannot decrypt; write the key unencrypted into the file: openssl pkey -in key.pem -out key-plain.pem (it asks for the passphrase), then " + joinHint + ", and keep the file readable by the service user only")
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
			if key != nil {
				continue // the first key counts
			}
			if strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") {
				return nil, errors.New("holds an encrypted private key (Proc-Type: 4,ENCRYPTED), which screenpopd cannot decrypt; write the key unencrypted into the file: openssl pkey -in key.pem -out key-plain.pem (it asks for the passphrase), then " + joinHint + ", and keep the file readable by the service user only")
			}
			k, err := parseKey(block)
			if err != nil {
				return nil, fmt.Errorf("has a private key that does not parse (%v); give the unencrypted RSA key in PEM (BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY), as openssl req -x509 -newkey rsa:2048 -nodes writes it", err)
			}
			key = k
		}
	}
	if len(certs) == 0 {
		if badCert != nil {
			return nil, fmt.Errorf("has a certificate that does not parse (%v); give the app registration's certificate in PEM (BEGIN CERTIFICATE), e.g. openssl x509 -in cert.cer -inform der -out cert.pem for a .cer file, then %s", badCert, joinHint)
		}
		return nil, errors.New("holds no certificate (no BEGIN CERTIFICATE block); put the certificate uploaded to the app registration and its private key in one PEM file: " + joinHint)
	}
	if key == nil {
		return nil, errors.New("holds no private key (no BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY block); add the certificate's unencrypted private key to the file: " + joinHint)
	}
	rk, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("holds an %s key, not an RSA key; Entra ID's certificate credentials are signed with RSA (PS256): make an RSA certificate, e.g. openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj /CN=screenpop -keyout key.pem -out cert.pem, and upload cert.pem to the app registration", keyType(key))
	}
	for _, c := range certs {
		if pub, ok := c.PublicKey.(*rsa.PublicKey); ok && pub.Equal(&rk.PublicKey) {
			sum := sha256.Sum256(c.Raw)
			return &ClientCertificate{Cert: c, key: rk, x5tS256: base64.RawURLEncoding.EncodeToString(sum[:])}, nil
		}
	}
	return nil, errors.New("has a private key that does not belong to its certificate (the key's public key is in none of the file's certificates); put the certificate and the key made with it in the file: " + joinHint)
}

// parseKey reads an unencrypted private key block: PKCS#8, PKCS#1 (RSA)
// or SEC 1 (EC), whatever its label says (some tools label PKCS#1 keys
// "PRIVATE KEY").
func parseKey(b *pem.Block) (any, error) {
	if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParseECPrivateKey(b.Bytes)
	if err != nil {
		return nil, errors.New("neither PKCS#8 nor PKCS#1")
	}
	return k, nil
}

func keyType(k any) string {
	switch k.(type) {
	case *ecdsa.PrivateKey:
		return "ECDSA"
	case ed25519.PrivateKey:
		return "Ed25519"
	case *ecdh.PrivateKey:
		return "X25519"
	}
	return fmt.Sprintf("%T", k)
}

// assertion signs a client assertion for clientID at the token endpoint
// aud, valid from now for assertionLifetime: header alg PS256, typ JWT,
// x5t#S256; claims aud, iss and sub (the client id), a random jti, nbf and
// iat (now), exp. It is a credential: never log it.
func (c *ClientCertificate) assertion(clientID, aud string, now time.Time) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodPS256, jwt.MapClaims{
		"aud": aud, // a string, as MSAL sends it
		"iss": clientID,
		"sub": clientID,
		"jti": newGUID(),
		"nbf": now.Unix(),
		"iat": now.Unix(),
		"exp": now.Add(assertionLifetime).Unix(),
	})
	t.Header["x5t#S256"] = c.x5tS256
	return t.SignedString(c.key)
}

// newGUID is a random (version 4) GUID.
func newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// certSource holds the client certificate in use. It reads the file again
// at each token request, so that a certificate replaced on disk (renewed,
// rotated) is used from the next token on without a restart; a file that
// does not load then keeps the previous certificate in use, with a warning
// once per distinct error (again after a day while it lasts).
type certSource struct {
	path string
	log  zerolog.Logger
	now  func() time.Time

	mu       sync.Mutex
	cur      *ClientCertificate
	reading  chan certRead // the read in flight, nil when none is
	failing  bool
	broken   *loglimit.Limiter // the file's errors, once a day each
	expiring *loglimit.Limiter // the expiry warnings, once a day per certificate
}

func newCertSource(path string, first *ClientCertificate, log zerolog.Logger, now func() time.Time) *certSource {
	s := &certSource{path: path, log: log, now: now, cur: first,
		broken: loglimit.New(24*time.Hour, 16), expiring: loglimit.New(24*time.Hour, 16)}
	s.warnExpiry(now())
	return s
}

// get reads the file again and returns the certificate to sign with: the
// file's, or the last good one when the file does not load.
func (s *certSource) get() *ClientCertificate {
	next, err := s.read()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if err != nil {
		s.failing = true
		if ok, held := s.broken.Allow(err.Error(), now); ok {
			s.log.Warn().Err(err).Str("path", s.path).Str("thumbprint", s.cur.Thumbprint()).Time("not_after", s.cur.Cert.NotAfter).Int("held_back", held).
				Msg("dataverse client certificate file does not load; signing with the previous certificate")
		}
		return s.cur
	}
	if s.failing {
		// Fixed: the same breakage later is news again.
		s.failing, s.broken = false, loglimit.New(24*time.Hour, 16)
	}
	if next.x5tS256 != s.cur.x5tS256 {
		s.log.Info().Str("path", s.path).Str("thumbprint", next.Thumbprint()).Str("previous_thumbprint", s.cur.Thumbprint()).Time("not_after", next.Cert.NotAfter).
			Msg("dataverse client certificate reloaded")
	}
	s.cur = next
	s.warnExpiry(now)
	return next
}

// certReadWait bounds a read of the certificate file for a token: a file
// system that hangs (an NFS server gone, a stuck FUSE mount) must not
// hold the token, and with it every lookup, while the certificate in use
// still signs.
const certReadWait = time.Second

type certRead struct {
	cert *ClientCertificate
	err  error
}

// read reads the file in a goroutine of its own, one read at a time, and
// waits for it up to certReadWait; a read that hangs is an error, and
// later calls do not wait on it again until it returns.
func (s *certSource) read() (*ClientCertificate, error) {
	s.mu.Lock()
	ch := s.reading
	if ch != nil {
		select {
		case <-ch:
			// The read that hung has returned, maybe long ago: read
			// the file as it is now. (Waiting on it with a timer of 0
			// let select take the timer, at random, as often as not.)
			ch = nil
		default:
			s.mu.Unlock()
			return nil, fmt.Errorf("read %s: no answer within %v (a hung file system?)", s.path, certReadWait)
		}
	}
	if ch == nil {
		ch = make(chan certRead, 1)
		s.reading = ch
		go func() {
			c, err := ReadClientCertificate(s.path)
			ch <- certRead{c, err}
		}()
	}
	s.mu.Unlock()
	t := time.NewTimer(certReadWait)
	defer t.Stop()
	select {
	case r := <-ch:
		s.mu.Lock()
		if s.reading == ch {
			s.reading = nil
		}
		s.mu.Unlock()
		return r.cert, r.err
	case <-t.C:
		return nil, fmt.Errorf("read %s: no answer within %v (a hung file system?)", s.path, certReadWait)
	}
}

// current is the certificate in use, without reading the file.
func (s *certSource) current() *ClientCertificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// warnExpiry warns, once a day, of a certificate in use that has expired
// or expires within CertificateExpiryWarning. Called with s.mu held, or
// before s is shared.
func (s *certSource) warnExpiry(now time.Time) {
	left := s.cur.Cert.NotAfter.Sub(now)
	if left > CertificateExpiryWarning {
		return
	}
	if ok, _ := s.expiring.Allow(s.cur.x5tS256, now); !ok {
		return
	}
	ev := s.log.Warn().Str("path", s.path).Str("thumbprint", s.cur.Thumbprint()).Time("not_after", s.cur.Cert.NotAfter)
	if left <= 0 {
		ev.Msg("dataverse client certificate has expired: Entra ID refuses it; make a new certificate, upload it to the app registration (Certificates & secrets) and replace the file")
		return
	}
	ev.Int("days_left", int(left.Hours()/24)).
		Msg("dataverse client certificate expires soon: make a new certificate, upload it to the app registration (Certificates & secrets) next to this one, then replace the file")
}
