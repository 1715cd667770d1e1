package bustest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/screenpop/screenpop/internal/testenv"
)

// SmallDisk mounts a tmpfs of size (as mount(8) reads it: "32m") on a
// temporary directory and returns it: a real filesystem whose writes fail
// with ENOSPC once it is full. Mounting needs root (or CAP_SYS_ADMIN): a
// missing dependency by testenv's rule, failed in CI. It is unmounted when
// the test ends.
func SmallDisk(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		testenv.Missing(t, fmt.Sprintf("mounting a small tmpfs (run as root, or in a container with CAP_SYS_ADMIN): %v %s", err, bytes.TrimSpace(out)))
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// FillDisk writes a file in dir until its filesystem is full, as another
// program's files or logs would, and returns the file's path: removing it
// frees the disk again.
func FillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for _, n := range []int{len(chunk), 4096, 1} {
		for {
			_, err := f.Write(chunk[:n])
			if err == nil {
				continue
			}
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	return path
}
