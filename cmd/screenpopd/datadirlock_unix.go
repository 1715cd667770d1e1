//go:build unix

package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// lockDataDir takes SCREENPOP_DATA_DIR for this process: an exclusive
// lock on its screenpopd.lock, held until the returned Closer is closed or
// the process ends (the kernel drops it then, also after SIGKILL, so a
// start right after a crash finds it free). Two built-in NATS servers on
// one JetStream store write over each other's blocks. inUse reports that
// another process holds it.
func lockDataDir(dir string) (lock io.Closer, inUse bool, err error) {
	f, err := os.OpenFile(filepath.Join(dir, "screenpopd.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, false, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, errors.Is(err, unix.EWOULDBLOCK), err
	}
	return f, false, nil
}
