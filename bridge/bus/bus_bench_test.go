package bus_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
)

// The JetStream round trips each pop costs: the event publish (bridge),
// the pop marker and the pop publish (resolver), and the stream to the
// push server's follower. Together with BenchmarkNormalize, the resolver
// and push benchmarks they are the pipeline overhead the load tool
// (cmd/screenpop-bench) measures end to end.

func BenchmarkConn_Publish(b *testing.B) {
	c := MustStart(b, bus.Config{})
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if err := c.Publish(ctx, pop("5e1f0a1c-0000-4000-8000-000000000001", fmt.Sprintf("c-%d", i))); err != nil {
			b.Fatal(err)
		}
	}
}

// It also reports heap-bytes/marker: the memory a live marker holds in the
// embedded server (its per-key index) after a GC, with pop ids of the real
// length. Markers live MarkerTTL (24 h), so this is what a day of pops
// costs the daemon's memory (docs/performance.md, "Sizing").
func BenchmarkConn_MarkPop(b *testing.B) {
	c := MustStart(b, bus.Config{})
	ctx := context.Background()
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	h0 := heap()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		created, err := c.MarkPop(ctx, fmt.Sprintf("pop:c0000000-0000-4000-8000-%012d:d0000000-0000-4000-8000-000000000001", i), "evt")
		if err != nil || !created {
			b.Fatal(created, err)
		}
	}
	b.StopTimer()
	if h1 := heap(); h1 > h0 && i > 0 {
		b.ReportMetric(float64(h1-h0)/float64(i), "heap-bytes/marker")
	}
}

// BenchmarkConn_PublishToFollow is one pop from the resolver's publish to
// the push server's FollowPops callback (the NATS floor of the pipeline,
// in process): ns/op is the round trip, one pop at a time.
func BenchmarkConn_PublishToFollow(b *testing.B) {
	c := MustStart(b, bus.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan struct{}, 1)
	done := make(chan error, 1)
	live := make(chan struct{})
	go func() {
		done <- c.FollowPops(ctx, func(bridge.StoredPop) { got <- struct{}{} }, func() { close(live) })
	}()
	defer func() { cancel(); <-done }()
	select {
	case <-live:
	case <-time.After(10 * time.Second):
		b.Fatal("FollowPops not live within 10s")
	}
	for len(got) > 0 {
		<-got
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if err := c.Publish(ctx, pop("5e1f0a1c-0000-4000-8000-000000000001", fmt.Sprintf("c-%d", i))); err != nil {
			b.Fatal(err)
		}
		<-got
	}
}
