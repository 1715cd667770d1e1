package push

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// ErrPlaintext is returned by Listen for a non-loopback address without TLS
// when plaintext is not allowed.
var ErrPlaintext = errors.New("agent listener is not on loopback and has no TLS: set SCREENPOP_TLS_CERT and SCREENPOP_TLS_KEY, or SCREENPOP_ALLOW_PLAINTEXT=true when a TLS-terminating proxy sits in front")

// LoadTLS reads the agent listener's certificate and key. Both empty returns
// nil (no TLS); one without the other is an error. The files are looked at
// again every certCheckEvery while the listener serves, and a renewal
// written in place (a Kubernetes secret volume, a certbot deploy hook) is
// served from the next handshake on, without a restart; files that do not
// load then keep the previous certificate, with a warning.
func LoadTLS(certFile, keyFile string, log zerolog.Logger) (*tls.Config, error) {
	return loadTLS(certFile, keyFile, certCheckEvery, log)
}

// certCheckEvery is how often a handshake may look at the certificate's
// files for a renewal.
const certCheckEvery = 10 * time.Second

func loadTLS(certFile, keyFile string, every time.Duration, log zerolog.Logger) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("tls: SCREENPOP_TLS_CERT and SCREENPOP_TLS_KEY must be set together")
	}
	r := &certFiles{cert: certFile, key: keyFile, every: every, log: log.With().Str("component", "push").Logger()}
	if err := r.load(); err != nil {
		return nil, err
	}
	r.checked = time.Now()
	// Only GetCertificate: with Certificates set too, a handshake without
	// SNI (a client dialling an IP address) would get the first one for ever.
	return &tls.Config{GetCertificate: r.get, MinVersion: tls.VersionTLS12}, nil
}

// certFiles serves the certificate of its files, read again when their
// size or modification time changes.
type certFiles struct {
	cert, key string
	every     time.Duration
	log       zerolog.Logger

	current atomic.Pointer[tls.Certificate]

	// mu is held while the files are looked at; a handshake that finds it
	// held serves the current certificate rather than wait for a slow or
	// hung file system.
	mu      sync.Mutex
	stamp   string
	checked time.Time
}

func (r *certFiles) stampNow() string {
	var b strings.Builder
	for _, f := range []string{r.cert, r.key} {
		if st, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "%d/%d;", st.Size(), st.ModTime().UnixNano())
		}
	}
	return b.String()
}

func (r *certFiles) load() error {
	stamp := r.stampNow()
	// tls.LoadX509KeyPair, with the bytes kept to say why they do not
	// pair (each file is read once: it may be a FIFO or hang).
	certPEM, err := os.ReadFile(r.cert)
	if err != nil {
		return fmt.Errorf("tls: load SCREENPOP_TLS_CERT/SCREENPOP_TLS_KEY: %w", err)
	}
	keyPEM, err := os.ReadFile(r.key)
	if err != nil {
		return fmt.Errorf("tls: load SCREENPOP_TLS_CERT/SCREENPOP_TLS_KEY: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if n := keyCertIndex(certPEM, keyPEM); n > 1 {
			return fmt.Errorf("tls: load SCREENPOP_TLS_CERT/SCREENPOP_TLS_KEY: the key's certificate is number %d in %s, not the first: put the server (leaf) certificate first, then the chain (%w)", n, r.cert, err)
		}
		return fmt.Errorf("tls: load SCREENPOP_TLS_CERT/SCREENPOP_TLS_KEY: %w", err)
	}
	r.current.Store(&cert)
	r.stamp = stamp
	return nil
}

// keyCertIndex returns the position (from 1) of the certificate in
// certPEM that keyPEM's key belongs to, or 0 when none does: a chain
// written CA first (cat ca.crt server.crt) fails tls.X509KeyPair as a key
// of another certificate.
func keyCertIndex(certPEM, keyPEM []byte) int {
	for i, rest := 1, certPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return 0
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := tls.X509KeyPair(pem.EncodeToMemory(b), keyPEM); err == nil {
			return i
		}
		i++
	}
}

func (r *certFiles) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if !r.mu.TryLock() {
		return r.current.Load(), nil
	}
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.checked) >= r.every {
		r.checked = now
		if st := r.stampNow(); st != r.stamp {
			if err := r.load(); err != nil {
				// A renewal half written (the key not yet replaced) is
				// tried again at the next look.
				r.log.Warn().Err(err).Msg("agent listener certificate files changed but do not load; serving the previous certificate")
			} else if leaf, err := leafOf(r.current.Load()); err == nil {
				r.log.Info().Time("not_after", leaf.NotAfter).Msg("agent listener certificate reloaded")
			}
		}
	}
	return r.current.Load(), nil
}

// Leaf returns the certificate cfg (from LoadTLS) serves now.
func Leaf(cfg *tls.Config) (*x509.Certificate, error) {
	c, err := cfg.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		return nil, err
	}
	return leafOf(c)
}

// leafOf is c's leaf, parsed when tls.LoadX509KeyPair left Leaf nil
// (GODEBUG=x509keypairleaf=0).
func leafOf(c *tls.Certificate) (*x509.Certificate, error) {
	if c.Leaf != nil {
		return c.Leaf, nil
	}
	return x509.ParseCertificate(c.Certificate[0])
}

// Listen opens the agent listener on addr (SCREENPOP_LISTEN). With tlsConfig
// it serves TLS (HTTP/1.1 only: websockets are upgraded from HTTP/1.1).
// Without it, a non-loopback addr is refused with ErrPlaintext unless
// allowPlaintext, which logs a warning.
func Listen(addr string, tlsConfig *tls.Config, allowPlaintext bool, log zerolog.Logger) (net.Listener, error) {
	if tlsConfig == nil && !IsLoopback(addr) {
		if !allowPlaintext {
			return nil, fmt.Errorf("listen %s: %w", addr, ErrPlaintext)
		}
		log.Warn().Str("component", "push").Str("addr", addr).Msg("agent listener serves plaintext on a non-loopback address; tokens and pops cross the network unencrypted unless a TLS proxy terminates in front")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s (SCREENPOP_LISTEN): %w", addr, err)
	}
	if tlsConfig == nil {
		return ln, nil
	}
	cfg := tlsConfig.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	return tls.NewListener(ln, cfg), nil
}

// IsLoopback reports whether addr (host:port) names a loopback host. An empty
// host (all interfaces) is not loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
