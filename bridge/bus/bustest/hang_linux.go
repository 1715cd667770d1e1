package bustest

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// HangFile replaces path with a FIFO nobody writes: a file on a hung file
// system (an NFS server gone, a FUSE secret mount stuck) as a reader sees
// it. waitReader reports whether a reader has it open; release answers
// that reader with content and puts content back as a regular file, as
// the file system answering again (also at the end of the test).
func HangFile(t testing.TB, path string, content []byte) (waitReader func() bool, release func()) {
	t.Helper()
	fifo := filepath.Join(filepath.Dir(path), ".hung-"+filepath.Base(path))
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(fifo, path); err != nil {
		t.Fatal(err)
	}
	var w *os.File
	// Opening the FIFO for writing without blocking succeeds once a
	// reader has it open: the code under test is waiting on the file.
	waitReader = func() bool {
		if w != nil {
			return true
		}
		f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return false
		}
		w = f
		return true
	}
	released := false
	release = func() {
		if released {
			return
		}
		released = true
		// The reader waiting on it reads content, then EOF; later
		// readers find a regular file again.
		if w != nil || waitReader() {
			w.Write(content)
			w.Close()
		}
		tmp := path + ".back"
		if err := os.WriteFile(tmp, content, 0o600); err == nil {
			os.Rename(tmp, path)
		}
	}
	t.Cleanup(release)
	return waitReader, release
}
