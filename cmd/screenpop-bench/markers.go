package main

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/screenpop/screenpop/bridge/bus"
)

// preloadMarkers stores n pop markers of earlier legs in the daemon's
// marker bucket, through its NATS server at url, and waits until the bucket
// holds at least n entries. A load run starts with an empty store; a daemon
// that has been up for a while holds a marker for every call in progress
// that has popped, every call ended within the marker grace and every leg
// of the last 24 h whose hang-up it never saw, and its collector scans
// their index on every cycle (BenchmarkConn_MarkPop). These are never
// ended, so they live 24 h. The keys have the shape and length of real ones
// (pop.<conversation uuid>.<participant uuid>) and are random, so no pop of
// the run can find one of them.
func preloadMarkers(ctx context.Context, url string, n int) error {
	nc, err := nats.Connect(url, nats.Name("screenpop-bench-markers"))
	if err != nil {
		return fmt.Errorf("preload markers: connect to the daemon's NATS (%s): %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return fmt.Errorf("preload markers: %w", err)
	}
	kv, err := js.KeyValue(ctx, bus.DefaultMarkerBucket)
	if err != nil {
		return fmt.Errorf("preload markers: bucket %s: %w", bus.DefaultMarkerBucket, err)
	}
	// The key of a pop id pop:<conversation>:<participant>, as bus.markerKey
	// makes it, under the bucket's subject prefix.
	subject := "$KV." + bus.DefaultMarkerBucket + "."
	value := []byte("evt:preloaded")
	for i := range n {
		// With 4,096 unacknowledged, a publish waits for room up to its stall
		// wait; a busy server (CI under -race) can need more than the
		// default 200 ms.
		if _, err := js.PublishAsync(subject+"pop."+uuid.NewString()+"."+uuid.NewString(), value, jetstream.WithStallWait(30*time.Second)); err != nil {
			return fmt.Errorf("preload markers: marker %d: %w", i, err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(5 * time.Minute):
		return fmt.Errorf("preload markers: %d publishes not acknowledged after 5 minutes", js.PublishAsyncPending())
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return fmt.Errorf("preload markers: %w", err)
	}
	if st.Values() < uint64(n) {
		return fmt.Errorf("preload markers: the bucket holds %d entries after %d were stored", st.Values(), n)
	}
	return nil
}
