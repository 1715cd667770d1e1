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
		if _, err := LoadTLS(certFile, "", log); err == nil {
			t.Fatal("cert without key accepted")
		}
		if _, err := LoadTLS(filepath.Join(dir, "missing.pem"), keyFile, log); err == nil {
			t.Fatal("missing cert accepted")
		}
		cfg, err := LoadTLS(certFile, keyFile, log)
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

// A certificate renewed in place (a Kubernetes secret volume, a certbot
// deploy hook) is served from the next handshake on, without a restart:
// otherwise the daemon serves the old one until it expires and every
// agent's page fails to connect. A renewal half written keeps the previous
// certificate.
func TestLoadTLS_RenewalServedWithoutARestart(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir)
	cfg, err := loadTLS(certFile, keyFile, 0, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen("127.0.0.1:0", cfg, false, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	served := func() *x509.Certificate {
		t.Helper()
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0]
	}
	first := served()
	leaf, err := Leaf(cfg)
	if err != nil || !leaf.Equal(first) {
		t.Fatalf("Leaf %v (%v), want the served certificate", leaf, err)
	}

	// Half a renewal: a new certificate whose key is not written yet.
	renewed := t.TempDir()
	newCert, newKey := writeCert(t, renewed)
	copyFile(t, newCert, certFile)
	if got := served(); !got.Equal(first) {
		t.Fatal("a certificate without its key was served")
	}
	copyFile(t, newKey, keyFile)
	got := served()
	if got.Equal(first) {
		t.Fatal("the renewed certificate is not served: the daemon would need a restart")
	}
	if leaf, err := Leaf(cfg); err != nil || !leaf.Equal(got) {
		t.Fatalf("Leaf after the renewal: %v, want the served certificate", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
