package main

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge/bus"
)

func TestPreloadMarkers_FillsTheDaemonsBucket(t *testing.T) {
	ctx := context.Background()
	c, err := bus.Start(ctx, bus.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := preloadMarkers(ctx, c.ClientURL(), 5000); err != nil {
		t.Fatal(err)
	}
	// Status is a JetStream request answered within a second or an error;
	// a loaded CI machine gets a few tries.
	st := c.Status(ctx)
	for deadline := time.Now().Add(5 * time.Second); st.Error != "" && time.Now().Before(deadline); st = c.Status(ctx) {
		time.Sleep(50 * time.Millisecond)
	}
	if st.Markers != 5000 || st.Error != "" {
		t.Fatalf("the bucket holds %d markers after a preload of 5000 (error %q)", st.Markers, st.Error)
	}
	// A real pop still claims its leg: the preloaded keys are other legs.
	first, err := c.MarkPop(ctx, "pop:0b7c4d2e-4f1a-4c3b-9d8e-1a2b3c4d5e6f:5f6e7d8c-9b0a-4c1d-8e2f-3a4b5c6d7e8f", "evt")
	if err != nil || !first {
		t.Fatalf("MarkPop of a new leg after the preload = %v, %v; want true", first, err)
	}
}
