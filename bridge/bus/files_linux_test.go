package bus_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/bridge/bus/bustest"
	"github.com/screenpop/screenpop/internal/syncbuf"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 (server or
// client) and its key under dir, and returns their paths and the pair.
func selfSigned(t *testing.T, dir, name string, usage x509.ExtKeyUsage) (certFile, keyFile string, pair tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{usage},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if pair, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pair
}

// NATS_TLS_CA, NATS_TLS_CERT and NATS_TLS_KEY are read again at each TLS
// handshake, so at every reconnect, by nats.go holding its connection's
// lock, as NATS_CREDS is. On a hung file system (a FIFO nobody writes
// here) that read never returned: after the connection dropped, every
// publish (each event and pop, for every agent) and the close at the stop
// waited on it for good, though the server and the files' last contents
// were fine. The reconnect must go on with the files as read last.
func TestStart_HungTLSFileAtReconnect(t *testing.T) {
	for _, file := range []string{"NATS_TLS_CA", "NATS_TLS_CERT", "NATS_TLS_KEY"} {
		t.Run(file, func(t *testing.T) {
			dir := t.TempDir()
			srvCrt, _, srvPair := selfSigned(t, dir, "server", x509.ExtKeyUsageServerAuth)
			cliCrt, cliKey, cliPair := selfSigned(t, dir, "client", x509.ExtKeyUsageClientAuth)
			clientCAs := x509.NewCertPool()
			clientCAs.AddCert(cliPair.Leaf)
			ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
				NoLog: true, NoSigs: true, TLS: true, TLSVerify: true, TLSTimeout: 2,
				TLSConfig: &tls.Config{Certificates: []tls.Certificate{srvPair}, ClientCAs: clientCAs,
					ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}})
			if err != nil {
				t.Fatal(err)
			}
			ns.Start()
			t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
			if !ns.ReadyForConnections(10 * time.Second) {
				t.Fatal("nats-server not ready")
			}
			proxy := bustest.StartProxy(t, ns.Addr().String(), nil, nil)
			var logs syncbuf.Buffer
			c, err := bus.Start(context.Background(), bus.Config{URL: strings.Replace(proxy.URL(), "nats://", "tls://", 1),
				TLSCA: srvCrt, TLSCrt: cliCrt, TLSKey: cliKey}, zerolog.New(&logs).Level(zerolog.WarnLevel))
			if err != nil {
				t.Fatal(err)
			}
			closed := make(chan struct{})
			t.Cleanup(func() {
				select {
				case <-closed:
				case <-time.After(10 * time.Second):
					t.Error("Close did not return within 10 s while the file hung")
				}
			})
			defer func() {
				go func() { c.Close(); close(closed) }()
			}()

			path := map[string]string{"NATS_TLS_CA": srvCrt, "NATS_TLS_CERT": cliCrt, "NATS_TLS_KEY": cliKey}[file]
			content, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			waitReader, _ := bustest.HangFile(t, path, content)
			proxy.Cut()
			waitFor(t, 10*time.Second, waitReader)

			// The server and the files' last contents are fine: publishing
			// works again once reconnected.
			// (The publish waits on nats.go's connection lock, which its
			// context does not bound: hence the goroutine.)
			published := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				_, err := c.JetStream().Publish(ctx, "screenpop.events.voice.alerting.hung-file", []byte(`{}`))
				published <- err
			}()
			select {
			case err := <-published:
				if err != nil {
					t.Fatalf("publish while %s hangs: %v\nlog:\n%s", file, err, logs.String())
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("publish still waiting 20 s after the connection dropped while %s hangs\nlog:\n%s", file, logs.String())
			}
		})
	}
}
