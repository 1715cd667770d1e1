//go:build linux

package dataverse_test

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// DATAVERSE_CLIENT_CERTIFICATE on a file system that hangs (an NFS server
// gone, a secret store's FUSE mount stuck; a FIFO nobody writes here): the
// file is read again for each token, and that read never returns. The
// last good certificate must sign the next token, as for a file that does
// not load: otherwise, once the token expires, every lookup waits on the
// hung token request, and every agent's pop falls back to search for as
// long as the file hangs.
func TestClient_CertificateFileHangs(t *testing.T) {
	a := mustCert(t, dataversetest.CertificateOptions{})
	dir := t.TempDir()
	file := filepath.Join(dir, "dataverse.pem")
	if err := a.WriteFile(file); err != nil {
		t.Fatal(err)
	}
	srv, c, _ := certEnv(t, []*dataversetest.Certificate{a}, file, nil)
	number := "+13175559001"
	srv.AddContact(dataversetest.Contact{FirstName: "Caller", LastName: "One", Telephone1: number})
	if _, err := c.Lookup(ctxT(t, 5*time.Second), phone(number)); err != nil {
		t.Fatal(err)
	}

	fifo := filepath.Join(dir, ".hung")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(fifo, file); err != nil {
		t.Fatal(err)
	}
	// Released at the end (after the client's Close), as the file
	// system answering again.
	t.Cleanup(func() {
		if w, err := os.OpenFile(file, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Write(a.PEM())
			w.Close()
		}
	})
	srv.ExpireTokens() // the next lookup needs a new token

	for i := range 3 {
		n := fmt.Sprintf("+1317555910%d", i)
		srv.AddContact(dataversetest.Contact{FirstName: "Caller", LastName: fmt.Sprint(i), Telephone1: n})
		start := time.Now()
		recs, err := c.Lookup(ctxT(t, 5*time.Second), phone(n))
		if err != nil || len(recs) != 1 {
			t.Fatalf("lookup %d while the certificate file hangs: %v records, %v after %v", i+1, len(recs), err, time.Since(start).Round(time.Millisecond))
		}
	}
}

// The file system answers again: the read that hung returns, here with a
// renewed certificate B, and the file now holds B. The next token must be
// signed with B ("reloaded"), not with A after a "no answer within 1s"
// for a read that has answered. read() waited on the returned read with a
// timer of 0: select picks either ready case at random, so the renewal
// was lost, and a false hang logged, at one token in two.
func TestClient_CertificateFileAnswersAgain(t *testing.T) {
	for i := range 10 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			a := mustCert(t, dataversetest.CertificateOptions{})
			b := mustCert(t, dataversetest.CertificateOptions{})
			dir := t.TempDir()
			file := filepath.Join(dir, "dataverse.pem")
			if err := a.WriteFile(file); err != nil {
				t.Fatal(err)
			}
			srv, c, logs := certEnv(t, []*dataversetest.Certificate{a, b}, file, nil)
			lookup := func(n string) {
				t.Helper()
				srv.AddContact(dataversetest.Contact{FirstName: "Caller", LastName: n, Telephone1: n})
				if recs, err := c.Lookup(ctxT(t, 10*time.Second), phone(n)); err != nil || len(recs) != 1 {
					t.Fatalf("lookup %s: %v records, %v", n, len(recs), err)
				}
			}
			lookup("+13175559001")

			fifo, hung := filepath.Join(dir, ".hung"), filepath.Join(dir, ".hung2")
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Link(fifo, hung); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(fifo, file); err != nil {
				t.Fatal(err)
			}
			srv.ExpireTokens()
			lookup("+13175559002") // signed with A: the read hangs

			// The file system answers again: the file is B, and the read
			// that hung returns B.
			renewed := filepath.Join(dir, ".renewed")
			if err := b.WriteFile(renewed); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(renewed, file); err != nil {
				t.Fatal(err)
			}
			w, err := os.OpenFile(hung, os.O_WRONLY|syscall.O_NONBLOCK, 0)
			if err != nil {
				t.Fatal(err)
			}
			w.Write(b.PEM())
			w.Close()
			// The read has closed the FIFO once no reader holds it (a
			// writer's open then fails); it then parses B and returns.
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				w, err := os.OpenFile(hung, os.O_WRONLY|syscall.O_NONBLOCK, 0)
				if err != nil {
					break
				}
				w.Close()
				if time.Now().After(deadline) {
					t.Fatal("the hung read did not return within 10 s of the file system answering")
				}
			}
			time.Sleep(300 * time.Millisecond)

			srv.ExpireTokens()
			lookup("+13175559003")
			if len(messages(t, logs, "dataverse client certificate reloaded")) != 1 {
				t.Errorf("the renewed certificate was not reloaded at the first token after the file system answered again")
			}
		})
	}
}
