package bus_test

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/google/uuid"

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

// It also reports what the live markers cost the daemon's memory and its
// collector, with pop ids of random UUIDs: heap-bytes/marker, the heap
// they hold in the embedded server (its per-key index) after a GC;
// scan-bytes/marker, the part of it the collector scans on every cycle;
// gc-cpu-ns/marker, the CPU one full collection spends on each of them.
// A marker lives as long as its leg and the marker grace (15 min) after,
// or the marker TTL (24 h) when the leg's end is never seen
// (docs/performance.md, "Sizing").
func BenchmarkConn_MarkPop(b *testing.B) {
	ctx := context.Background()
	benchMarkers(b, func(c *bus.Conn, id string) {
		if created, err := c.MarkPop(ctx, id, "evt"); err != nil || !created {
			b.Fatal(created, err)
		}
	})
}

// BenchmarkConn_MarkAndEndPop is a leg's whole use of the bucket: its
// marker at the pop and its end at the hang-up (EndPop, one publish with
// a per-message TTL); less BenchmarkConn_MarkPop, what ending costs. The
// heap metrics are those of an ended marker during its grace.
func BenchmarkConn_MarkAndEndPop(b *testing.B) {
	ctx := context.Background()
	benchMarkers(b, func(c *bus.Conn, id string) {
		if created, err := c.MarkPop(ctx, id, "evt"); err != nil || !created {
			b.Fatal(created, err)
		}
		if err := c.EndPop(ctx, id); err != nil {
			b.Fatal(err)
		}
	})
}

// benchMarkers runs leg once per iteration on a pop id of two random
// UUIDs, as Genesys ids are (ids that share a long prefix cost the
// server's subject index less, a fifth to a quarter of the GC CPU, its
// inner nodes holding the common prefixes), and reports the heap the
// markers hold afterwards, per marker.
func benchMarkers(b *testing.B, leg func(c *bus.Conn, id string)) {
	c := MustStart(b, bus.Config{})
	h0 := measureHeap()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		leg(c, "pop:"+uuid.NewString()+":"+uuid.NewString())
	}
	b.StopTimer()
	h1 := measureHeap()
	if i < 1000 {
		return // too few markers to tell from the rest of the heap
	}
	per := func(after, before float64) float64 { return max(after-before, 0) / float64(i) }
	b.ReportMetric(per(h1.live, h0.live), "heap-bytes/marker")
	b.ReportMetric(per(h1.scan, h0.scan), "scan-bytes/marker")
	b.ReportMetric(per(h1.gcCPU, h0.gcCPU)*1e9, "gc-cpu-ns/marker")
}

type heapCost struct{ live, scan, gcCPU float64 }

// measureHeap runs full collections and returns the live heap and the heap
// the collector scans after them, and the CPU seconds one collection took
// (the least of five).
func measureHeap() heapCost {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/heap:bytes"}, {Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(s)
	h := heapCost{live: float64(s[0].Value.Uint64()), scan: float64(s[1].Value.Uint64()), gcCPU: -1}
	for range 5 {
		before := s[2].Value.Float64()
		runtime.GC()
		metrics.Read(s)
		if d := s[2].Value.Float64() - before; h.gcCPU < 0 || d < h.gcCPU {
			h.gcCPU = d
		}
	}
	return h
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

// The hello's reads of an agent whose page resumes with nothing to replay
// (the common case: every page reload, every reconnect): the ready frame's
// LatestPop and ReplayPops' decision.
func BenchmarkConn_HelloNothingToReplay(b *testing.B) {
	c := MustStart(b, bus.Config{})
	ctx := context.Background()
	const agent = bridge.AgentID("5e1f0a1c-0000-4000-8000-000000000001")
	if _, err := c.PublishDedup(ctx, pop(agent, "c-1")); err != nil {
		b.Fatal(err)
	}
	latest, err := c.LatestPop(ctx, agent)
	if err != nil || latest == 0 {
		b.Fatal(latest, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.LatestPop(ctx, agent); err != nil {
			b.Fatal(err)
		}
		if err := c.ReplayPops(ctx, agent, latest, time.Now().Add(-2*time.Minute), func(bridge.StoredPop) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
