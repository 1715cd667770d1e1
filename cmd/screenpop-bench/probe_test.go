package main

import (
	"runtime"
	"testing"
	"time"
)

// The probe must see a saturated CPU: with one P held by a busy goroutine,
// its 5 ms timer can only be served when sysmon preempts the spinner
// (about every 10 ms), so the probe's goroutine runs late by several ms.
// Since Go 1.23 the time a timer channel delivers is the timer's scheduled
// time (time.sendTime subtracts the delay), not when the receiver ran, so
// the value received on t.C cannot show any lateness.
func TestProbe_SeesASaturatedCPU(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	p := startProbe()
	spin := func() {
		for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
		}
	}
	spin()
	time.Sleep(20 * time.Millisecond) // let the probe record its last wake-up
	p.close()
	d := dist(p.take())
	t.Logf("probe lateness under a spinning goroutine on one P: %+v", d)
	if d.N == 0 || d.Max < 2 {
		t.Fatalf("probe max lateness %.3f ms over %d samples while the only P was busy: it does not measure when its goroutine ran", d.Max, d.N)
	}
}
