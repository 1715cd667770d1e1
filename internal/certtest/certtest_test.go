package certtest

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"
)

// The default certificate is trusted, through Pool, by a client dialling
// any loopback name; an expired one is refused.
func TestWrite_TrustedOnEveryLoopbackName(t *testing.T) {
	certFile, keyFile, err := Write(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := Pool(certFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
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
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	for _, name := range []string{"127.0.0.1", "localhost"} {
		c, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", port), &tls.Config{RootCAs: pool, ServerName: name})
		if err != nil {
			t.Errorf("dial as %s: %v", name, err)
			continue
		}
		c.Close()
	}
	if _, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "screenpop.example.com"}); err == nil {
		t.Error("a name not in the certificate was trusted")
	}

	expired, _, err := Write(t.TempDir(), Options{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := tls.LoadX509KeyPair(expired, strings.TrimSuffix(expired, "cert.pem")+"key.pem")
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Leaf == nil || !leaf.Leaf.NotAfter.Before(time.Now()) || leaf.Leaf.Subject.CommonName != "localhost" {
		t.Errorf("expired certificate: %+v", leaf.Leaf)
	}
}
