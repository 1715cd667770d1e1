package bus_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/bridge/bus/bustest"
	"github.com/screenpop/screenpop/internal/syncbuf"
)

// A stop while the disk under the store does not answer: the store cannot
// close, and the daemon gives Close only what is left of its 10 s once its
// stages (the publisher's and the resolver's drains, waiting on the same
// disk) have had theirs. CloseWithin(d) ends within about d, leaving the
// store open as a crash would, where Close waits its own bounds (the disk
// probe in flight, the flush, the store's shutdown: about 4 s here).
func TestConn_CloseWithinEndsInTimeOnAStalledDisk(t *testing.T) {
	disk := bustest.MountStallDisk(t)
	var logs syncbuf.Buffer
	c, err := bus.Start(context.Background(), bus.Config{Listen: "127.0.0.1:0", DataDir: filepath.Join(disk.Dir, "data")}, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Publish(ctx, pop("a1", "c1")); err != nil {
		t.Fatal(err)
	}

	disk.Stall()
	t.Cleanup(disk.Resume) // before c.Close (cleanups run last first)
	published := make(chan error, 1)
	go func() { published <- c.Publish(ctx, pop("a1", "c2")) }()
	deadline := time.Now().Add(10 * time.Second)
	for disk.Blocked() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no write waiting on the stalled disk within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}

	start := time.Now()
	c.CloseWithin(time.Second)
	took := time.Since(start)
	t.Logf("CloseWithin(1s) on a stalled disk took %v", took.Round(10*time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("CloseWithin(1s) took %v on a stalled disk, want about 1 s: a daemon whose stages spent 8 s on the disk would stop after its 10 s", took.Round(10*time.Millisecond))
	}
	if !c.StoreLeftOpen() {
		t.Error("the store closed on a disk that does not answer")
	}
	if l := logs.String(); !strings.Contains(l, "did not close in the time left of the stop") || !strings.Contains(l, `"level":"error"`) {
		t.Errorf("no error line says the store was left open for want of time:\n%s", l)
	}
	if err := <-published; err == nil {
		t.Error("the publish waiting on the stalled disk succeeded")
	}
}
