package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestDaemon_DataDirIsPrivate: SCREENPOP_DATA_DIR holds the embedded
// store (callers' numbers, emails, names and participant data for
// SCREENPOP_STREAM_MAX_AGE) and pii-hash.key, with which a caller_hash in
// the logs can be reversed by trying every phone number. Nothing there may
// be readable by other local users, a key copied in from another instance
// (architecture.md, "Copy pii-hash.key") with the copier's umask included.
func TestDaemon_DataDirIsPrivate(t *testing.T) {
	vars := testEnv(t)
	dir := vars["SCREENPOP_DATA_DIR"]
	key := bytes.Repeat([]byte{0x5a}, 32)
	keyPath := filepath.Join(dir, "pii-hash.key")
	if err := os.WriteFile(keyPath, key, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(keyPath, 0o644); err != nil { // whatever this process's umask
		t.Fatal(err)
	}
	MustStartDemo(t, vars)

	if b, err := os.ReadFile(keyPath); err != nil || !bytes.Equal(b, key) {
		t.Fatalf("the copied key was replaced or lost: %v", err)
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil // the admin's (t.TempDir's 0700 here)
		}
		fi, err := d.Info()
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is %v: readable by other users", p, fi.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
