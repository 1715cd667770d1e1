//go:build !linux

package main

// aclReadableByOthers: ACLs are read on Linux only; elsewhere the mode
// bits decide.
func aclReadableByOthers(string) (others, ok bool) { return false, false }
