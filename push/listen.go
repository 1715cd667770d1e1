package push

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"github.com/rs/zerolog"
)

// ErrPlaintext is returned by Listen for a non-loopback address without TLS
// when plaintext is not allowed.
var ErrPlaintext = errors.New("agent listener is not on loopback and has no TLS: set SCREENPOP_TLS_CERT and SCREENPOP_TLS_KEY, or SCREENPOP_ALLOW_PLAINTEXT=true when a TLS-terminating proxy sits in front")

// LoadTLS reads the agent listener's certificate and key. Both empty returns
// nil (no TLS); one without the other is an error.
func LoadTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("tls: SCREENPOP_TLS_CERT and SCREENPOP_TLS_KEY must be set together")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load SCREENPOP_TLS_CERT/SCREENPOP_TLS_KEY: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
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
