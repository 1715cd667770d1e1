package push

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/internal/certtest"
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

func writeCert(t testing.TB, dir string) (string, string) {
	t.Helper()
	certFile, keyFile, err := certtest.Write(dir, certtest.Options{IPs: []net.IP{net.ParseIP("127.0.0.1")}, NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
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
	cfg, ln := handshakes(t, certFile, keyFile)
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

// handshakes serves TLS handshakes, each on its own goroutine, with the
// certificate of certFile and keyFile looked at again on every handshake.
func handshakes(t *testing.T, certFile, keyFile string) (*tls.Config, net.Listener) {
	t.Helper()
	cfg, err := loadTLS(certFile, keyFile, 0, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen("127.0.0.1:0", cfg, false, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	return cfg, ln
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

// A certificate file that does not answer (a hung network file system; here
// a FIFO nobody writes) must not stop every other agent's handshake, nor
// the expiry gauge's scrape: only the look at the files waits for it.
func TestLoadTLS_HungFileDoesNotBlockHandshakes(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir)
	cfg, ln := handshakes(t, certFile, keyFile)
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(keyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	// The first handshake after the change reads the files and hangs there.
	stuck := make(chan struct{})
	go func() {
		defer close(stuck)
		if c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true}); err == nil {
			c.Close()
		}
	}()
	var w *os.File
	var err error
	// Opening the FIFO for writing without blocking succeeds once a reader
	// has it open.
	waitFor(t, 10*time.Second, "the handshake reading the key file", func() bool {
		w, err = os.OpenFile(keyFile, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		return err == nil
	})
	defer func() { w.Close(); <-stuck }()

	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("another agent's handshake while the key file hangs: %v", err)
	}
	c.Close()
	done := make(chan error, 1)
	go func() { _, err := Leaf(cfg); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Leaf (the expiry gauge on /metrics) blocks while the key file hangs")
	}
}

// With GODEBUG=x509keypairleaf=0 tls.LoadX509KeyPair leaves Leaf nil: a
// renewal must still be served, without a panic in the handshake.
func TestLoadTLS_RenewalWithoutLeaf(t *testing.T) {
	t.Setenv("GODEBUG", "x509keypairleaf=0")
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir)
	cfg, err := loadTLS(certFile, keyFile, 0, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	first, err := Leaf(cfg)
	if err != nil {
		t.Fatal(err)
	}
	newCert, newKey := writeCert(t, t.TempDir())
	copyFile(t, newCert, certFile)
	copyFile(t, newKey, keyFile)
	var got *tls.Certificate
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("GetCertificate after a renewal panicked: %v", p)
			}
		}()
		got, err = cfg.GetCertificate(&tls.ClientHelloInfo{})
	}()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(got.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Equal(first) {
		t.Fatal("the renewed certificate is not served")
	}
}
