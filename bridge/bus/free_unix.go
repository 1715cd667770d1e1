//go:build unix

package bus

import "syscall"

// freeBytes is the room left to an unprivileged user on dir's filesystem;
// ok is false when it cannot be read.
func freeBytes(dir string) (free int64, ok bool) {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return 0, false
	}
	return int64(fs.Bavail) * int64(fs.Bsize), true
}
