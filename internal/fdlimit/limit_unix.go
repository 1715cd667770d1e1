//go:build unix

package fdlimit

import "syscall"

// Limit is the process's soft RLIMIT_NOFILE (Go raises it to the hard
// limit at start on Linux); ok is false when it cannot be read.
func Limit() (limit uint64, ok bool) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, false
	}
	return uint64(l.Cur), true
}
