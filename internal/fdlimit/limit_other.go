//go:build !unix

package fdlimit

// Limit is unknown here.
func Limit() (limit uint64, ok bool) { return 0, false }
