// Package certtest writes self-signed server certificates for tests and
// the load tool: an agent listener or a NATS server on loopback that
// terminates TLS as in production, with a certificate its clients can
// trust by the file alone.
package certtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Options describe the certificate. The zero value is a certificate for
// 127.0.0.1, ::1 and localhost, valid from an hour ago for a day.
type Options struct {
	// CommonName is the subject's; "": the first DNS name, else the first
	// IP address.
	CommonName string
	DNSNames   []string // subject alternative names; with IPs both nil: localhost
	IPs        []net.IP // with DNSNames both nil: 127.0.0.1 and ::1
	// NotBefore and NotAfter bound its validity; zero: an hour ago, a day
	// from now.
	NotBefore, NotAfter time.Time
}

// Write writes a self-signed ECDSA P-256 server certificate and its key
// as cert.pem and key.pem (PEM, mode 0600) in dir and returns their paths.
// The certificate is its own root: a client trusts it by adding cert.pem
// to its RootCAs.
func Write(dir string, o Options) (certFile, keyFile string, err error) {
	if o.DNSNames == nil && o.IPs == nil {
		o.DNSNames, o.IPs = []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	if o.NotBefore.IsZero() {
		o.NotBefore = time.Now().Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = time.Now().Add(24 * time.Hour)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("certtest: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return "", "", fmt.Errorf("certtest: serial: %w", err)
	}
	cn := o.CommonName
	switch {
	case cn != "":
	case len(o.DNSNames) > 0:
		cn = o.DNSNames[0]
	case len(o.IPs) > 0:
		cn = o.IPs[0].String()
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     o.DNSNames,
		IPAddresses:  o.IPs,
		NotBefore:    o.NotBefore, NotAfter: o.NotAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", fmt.Errorf("certtest: create certificate: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", fmt.Errorf("certtest: marshal key: %w", err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", fmt.Errorf("certtest: %w", err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return "", "", fmt.Errorf("certtest: %w", err)
	}
	return certFile, keyFile, nil
}

// Pool returns a pool holding the certificate of certFile, for a client's
// RootCAs.
func Pool(certFile string) (*x509.CertPool, error) {
	b, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("certtest: %w", err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("certtest: no certificate in %s", certFile)
	}
	return p, nil
}
