package bus

import (
	"context"
	"testing"

	"github.com/rs/zerolog"
)

// The purge behind UnmarkPop is a compare-and-set on the revision it read:
// a leg that ended between the read and the purge keeps its ended marker.
func TestConn_PurgeMarkerAfterAnEnd(t *testing.T) {
	c, err := Start(context.Background(), Config{Listen: "off", DataDir: t.TempDir()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	const popID, claim = "pop:c1:p1", "evt:c1:p1:voice:alerting"
	if created, err := c.MarkPop(ctx, popID, claim); err != nil || !created {
		t.Fatalf("MarkPop = %v, %v", created, err)
	}
	e, err := c.markers.Get(ctx, markerKey(popID)) // UnmarkPop's read
	if err != nil || string(e.Value()) != claim {
		t.Fatalf("marker %v, %v; want the claim", e, err)
	}
	if err := c.EndPop(ctx, popID); err != nil { // the hang-up, in between
		t.Fatal(err)
	}
	if err := c.purgeMarker(ctx, markerKey(popID), e.Revision()); err != nil {
		t.Fatalf("purge at a stale revision: %v, want nil (left alone)", err)
	}
	if got, err := c.markers.Get(ctx, markerKey(popID)); err != nil || string(got.Value()) != markerEnded {
		t.Fatalf("marker after the purge %v, %v; want it still ended", got, err)
	}
}

// A close with no time left (the stop's stages before took it all) still
// gives the store watcher the floor a healthy one needs to end: it is not
// taken for a restart under way and the store is not left open.
func TestConn_CloseWithNoTimeLeftLeavesAHealthyStoreClosed(t *testing.T) {
	for range 5 {
		c, err := Start(context.Background(), Config{Listen: "off", DataDir: t.TempDir()}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		c.CloseWithin(0)
		if c.StoreLeftOpen() {
			t.Fatal("CloseWithin(0) on a healthy disk with no restart under way left the store open")
		}
	}
}
