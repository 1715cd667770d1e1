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
