package testenv

import (
	"testing"
	"time"
	"unsafe"
)

// StepWall returns t as time.Now() would read it had the wall clock been
// stepped by d since (NTP, an admin's date -s, a VM resumed): the same
// monotonic reading, a wall clock d later. d is whole seconds. No test can
// step the real clock; code that keeps UnixNano of a time.Now() and
// compares it with a later one is thrown by a step, code that compares
// two time.Now()s of the process is not, and a test tells them apart with
// this.
func StepWall(tb testing.TB, t time.Time, d time.Duration) time.Time {
	tb.Helper()
	if d%time.Second != 0 {
		tb.Fatalf("StepWall: %v is not whole seconds", d)
	}
	// time.Time's layout (src/time/time.go): with hasMonotonic (bit 63),
	// bits 30-62 of wall are the seconds since 1885. Checked below, so a
	// runtime that changes it fails here rather than stepping nothing.
	type rep struct {
		wall uint64
		ext  int64
		loc  *time.Location
	}
	r := (*rep)(unsafe.Pointer(&t))
	if r.wall&(1<<63) == 0 {
		tb.Fatal("StepWall: t has no monotonic reading")
	}
	orig := t
	r.wall = uint64(int64(r.wall) + int64(d/time.Second)<<30)
	if !t.Round(0).Equal(orig.Round(0).Add(d)) || t.Sub(orig) != 0 {
		tb.Fatalf("StepWall: got wall %v (want %v), monotonic difference %v", t.Round(0), orig.Round(0).Add(d), t.Sub(orig))
	}
	return t
}
