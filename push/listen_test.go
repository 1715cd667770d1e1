package push

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestListen(t *testing.T) {
	log := zerolog.Nop()
	t.Run("LoopbackPlaintext", func(t *testing.T) {
		ln, err := Listen("127.0.0.1:0", nil, false, log)
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
	})
	t.Run("RefusesPlaintextOffLoopback", func(t *testing.T) {
		for _, addr := range []string{"0.0.0.0:8080", ":8080", "10.1.2.3:8080", "[::]:8080"} {
			if _, err := Listen(addr, nil, false, log); !errors.Is(err, ErrPlaintext) {
				t.Errorf("%s: %v, want ErrPlaintext", addr, err)
			}
		}
	})
	t.Run("TLS", func(t *testing.T) {
		dir := t.TempDir()
		certFile, keyFile := writeCert(t, dir)
		if _, err := LoadTLS(certFile, ""); err == nil {
			t.Fatal("cert without key accepted")
		}
		if _, err := LoadTLS(filepath.Join(dir, "missing.pem"), keyFile); err == nil {
			t.Fatal("missing cert accepted")
		}
		cfg, err := LoadTLS(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := Listen("127.0.0.1:0", cfg, false, log)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err == nil {
				_ = c.(*tls.Conn).Handshake()
				c.Close()
			}
		}()
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		if p := c.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
			t.Errorf("negotiated %q, want http/1.1 (websockets need it)", p)
		}
		c.Close()
	})
	if !IsLoopback("localhost:1") || !IsLoopback("[::1]:1") || IsLoopback("example.com:1") {
		t.Error("IsLoopback")
	}
}

func writeCert(t *testing.T, dir string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}
