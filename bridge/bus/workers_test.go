package bus_test

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/screenpop/screenpop/bridge/bus"
)

// Events are handled by at most Workers goroutines, started once and ended
// before ConsumeEvents returns, not by a goroutine started for each event:
// a fresh goroutine's small stack grew two or three times while decoding
// each event, a stack copy each time (docs/performance-log.md, "Stack
// growth").
func TestConn_ConsumeEventsHandlesOnItsWorkers(t *testing.T) {
	c := MustStart(t, bus.Config{Listen: "off"})
	const workers, events = 4, 100
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	handlers := map[uint64]int{} // goroutine id -> events it handled
	var handled atomic.Int64
	done := make(chan error)
	go func() {
		done <- c.ConsumeEvents(ctx, bus.ConsumeConfig{Durable: "workers", Workers: workers}, func(context.Context, []byte) error {
			mu.Lock()
			handlers[goroutineID()]++
			mu.Unlock()
			handled.Add(1)
			return nil
		})
	}()
	waitFor(t, 5*time.Second, func() bool {
		_, err := c.JetStream().Consumer(context.Background(), c.StreamName(), "workers")
		return err == nil
	})
	for i := range events {
		publishEvent(t, c, fmt.Sprintf("conv-worker-%d", i))
	}
	waitFor(t, 10*time.Second, func() bool { return handled.Load() == events })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(handlers) > workers {
		t.Errorf("%d events were handled on %d goroutines, want at most %d (Workers)", events, len(handlers), workers)
	}
	for id := range handlers {
		if goroutineAlive(id) {
			t.Errorf("worker goroutine %d still runs a second after ConsumeEvents returned", id)
		}
	}
}

// goroutineID is the calling goroutine's id, from the header of its stack
// trace ("goroutine 42 [running]:").
func goroutineID() uint64 {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	buf, _ = bytes.CutPrefix(buf, []byte("goroutine "))
	id, _ := strconv.ParseUint(string(buf[:bytes.IndexByte(buf, ' ')]), 10, 64)
	return id
}

// goroutineAlive reports whether goroutine id still runs a second after
// the call: a goroutine past its last deferred call (the worker's
// workers.Done, which ConsumeEvents waits for) may still be in the
// runtime's exit for a moment, and showed so once in a CI run under -race.
func goroutineAlive(id uint64) bool {
	needle := []byte("goroutine " + strconv.FormatUint(id, 10) + " [")
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(time.Second); ; time.Sleep(10 * time.Millisecond) {
		n := runtime.Stack(buf, true)
		if !bytes.Contains(buf[:n], needle) {
			return false
		}
		if time.Now().After(deadline) {
			return true
		}
	}
}
