package bus

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// fileWait bounds a read of NATS_CREDS or a NATS_TLS_* file at a
// (re)connect: well inside nats.go's connect timeout (2 s), which covers
// the whole handshake.
const fileWait = 500 * time.Millisecond

// boundedFile is a file nats.go reads again at every connect and
// reconnect (so that a renewed file is picked up: NATS_CREDS, and the
// NATS_TLS_* files at each TLS handshake), with the read bounded. nats.go
// calls its credential and TLS callbacks holding its connection's lock: a
// read that never returns (a hung NFS or FUSE mount) would hold every
// publish, every status read and the close at the stop for good. A read
// that does not answer within wait gives the file as read last; one read
// at a time is in flight, however long it hangs.
type boundedFile struct {
	path string
	what string // the setting that names it
	wait time.Duration

	mu      sync.Mutex
	last    []byte        // the file as last read whole
	err     error         // the last read's error
	reading chan struct{} // closed when the read in flight returns; nil when none is
}

func newBoundedFile(path, what string) *boundedFile {
	return &boundedFile{path: path, what: what, wait: fileWait}
}

func (f *boundedFile) read() ([]byte, error) {
	f.mu.Lock()
	if f.reading != nil && f.last != nil {
		// An earlier read still hangs: waiting on it again would only
		// make this connect slower (nats.go gives the whole handshake
		// its connect timeout, 2 s by default).
		b := slices.Clone(f.last)
		f.mu.Unlock()
		return b, nil
	}
	if f.reading == nil {
		done := make(chan struct{})
		f.reading = done
		go func() {
			b, err := os.ReadFile(f.path)
			f.mu.Lock()
			if err == nil {
				f.last = b
			}
			f.err, f.reading = err, nil
			f.mu.Unlock()
			close(done)
		}()
	}
	done := f.reading
	f.mu.Unlock()
	t := time.NewTimer(f.wait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.last != nil {
			return slices.Clone(f.last), nil
		}
		return nil, fmt.Errorf("nats: read %s (%s): no answer within %v (a hung file system?)", f.path, f.what, f.wait)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, fmt.Errorf("nats: %s: %w", f.what, f.err)
	}
	return slices.Clone(f.last), nil
}

// FileOptions are the nats.go options for NATS_CREDS and the NATS_TLS_*
// files (each when set), read at every connect and reconnect with each
// read bounded (boundedFile): for Start, and for a check's own connection.
func FileOptions(creds, ca, crt, key string) []nats.Option {
	var opts []nats.Option
	if creds != "" {
		opts = append(opts, credsOption(creds))
	}
	if ca != "" || crt != "" || key != "" {
		opts = append(opts, tlsOption(ca, crt, key))
	}
	return opts
}

// credsOption is nats.UserCredentials(path) with the reads bounded.
func credsOption(path string) nats.Option {
	f := newBoundedFile(path, "NATS_CREDS")
	return nats.UserJWT(func() (string, error) {
		b, err := f.read()
		if err != nil {
			return "", err
		}
		return nkeys.ParseDecoratedJWT(b)
	}, func(nonce []byte) ([]byte, error) {
		b, err := f.read()
		if err != nil {
			return nil, err
		}
		kp, err := nkeys.ParseDecoratedNKey(b)
		if err != nil {
			return nil, fmt.Errorf("nats: unable to extract key pair from file %q: %w", path, err)
		}
		defer kp.Wipe()
		return kp.Sign(nonce)
	})
}

// tlsOption is nats.RootCAs(ca) and nats.ClientCert(crt, key) (each when
// set) with the reads bounded.
func tlsOption(ca, crt, key string) nats.Option {
	var roots nats.RootCAsHandler
	if ca != "" {
		f := newBoundedFile(ca, "NATS_TLS_CA")
		roots = func() (*x509.CertPool, error) {
			b, err := f.read()
			if err != nil {
				return nil, err
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(b) {
				return nil, fmt.Errorf("nats: failed to parse root certificate from %q (NATS_TLS_CA)", ca)
			}
			return pool, nil
		}
	}
	var cert nats.TLSCertHandler
	if crt != "" || key != "" {
		cf, kf := newBoundedFile(crt, "NATS_TLS_CERT"), newBoundedFile(key, "NATS_TLS_KEY")
		cert = func() (tls.Certificate, error) {
			cb, err := cf.read()
			if err != nil {
				return tls.Certificate{}, err
			}
			kb, err := kf.read()
			if err != nil {
				return tls.Certificate{}, err
			}
			c, err := tls.X509KeyPair(cb, kb)
			if err != nil {
				return tls.Certificate{}, fmt.Errorf("nats: error loading client certificate (NATS_TLS_CERT, NATS_TLS_KEY): %w", err)
			}
			if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
				return tls.Certificate{}, fmt.Errorf("nats: error parsing client certificate (NATS_TLS_CERT): %w", err)
			}
			return c, nil
		}
	}
	return nats.ClientTLSConfig(cert, roots)
}
