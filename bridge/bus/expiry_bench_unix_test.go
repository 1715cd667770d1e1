//go:build unix

package bus_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/screenpop/screenpop/bridge/bus"
)

// BenchmarkConn_MarkerExpiry is the server's work when ended markers
// expire: removing each one and the delete marker it leaves for a second.
// Each round ends 5,000 legs with a one-second grace and waits until the
// bucket is empty; cpu-us/marker is the process's CPU time over that wait,
// less an idle wait as long, per marker. Its ns/op is a round's wall time.
func BenchmarkConn_MarkerExpiry(b *testing.B) {
	c := MustStart(b, bus.Config{MarkerGrace: time.Second})
	ctx := context.Background()
	const legs = 5000
	markers := func() uint64 {
		st := c.Status(ctx)
		if st.Error != "" {
			b.Fatal(st.Error)
		}
		return st.Markers
	}
	empty := func() {
		for deadline := time.Now().Add(30 * time.Second); markers() != 0; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatalf("%d markers left 30s after their grace", markers())
			}
		}
	}
	var busy, idle time.Duration
	expired := 0
	for b.Loop() {
		for range legs {
			id := "pop:" + uuid.NewString() + ":" + uuid.NewString()
			if created, err := c.MarkPop(ctx, id, "evt"); err != nil || !created {
				b.Fatal(created, err)
			}
			if err := c.EndPop(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
		start, t0 := cpuTime(), time.Now()
		empty()
		busy += cpuTime() - start
		wall := time.Since(t0)
		start = cpuTime()
		for deadline := time.Now().Add(wall); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			markers() // the same polling, nothing to expire
		}
		idle += cpuTime() - start
		expired += legs
	}
	b.ReportMetric(float64(max(busy-idle, 0).Microseconds())/float64(expired), "cpu-us/marker")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
