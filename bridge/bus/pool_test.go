package bus_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
)

// gauge tracks how many handlers run at once, and the most that ever did.
type gauge struct{ now, max atomic.Int32 }

func (g *gauge) enter() {
	n := g.now.Add(1)
	for m := g.max.Load(); n > m && !g.max.CompareAndSwap(m, n); m = g.max.Load() {
	}
}

func (g *gauge) leave() { g.now.Add(-1) }

// A resolver stopped by an error (here another deployment taking its
// consumer over) still finishes the pop in flight within DrainWithin, its
// context intact until then, runs no more handlers at once than Workers,
// and returns once they are done with no worker left behind (goleak).
func TestConn_ConsumeEventsFinishesItsHandlersOnAnErrorReturn(t *testing.T) {
	a := MustStart(t, bus.Config{Owner: ownerA, Listen: "off"})
	const workers = 1
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	release := make(chan struct{})
	started := make(chan string, 8)
	var running gauge
	var cutShort atomic.Bool
	done := make(chan error, 1)
	go func() {
		done <- a.ConsumeEvents(ctx, bus.ConsumeConfig{Durable: "fatal", Workers: workers, DrainWithin: 3 * time.Second, OwnerCheck: 50 * time.Millisecond},
			func(hctx context.Context, data []byte) error {
				running.enter()
				defer running.leave()
				e, err := bridge.DecodeEvent(data)
				if err != nil {
					return err
				}
				started <- string(e.ConversationID)
				select {
				case <-release: // a lookup that takes its time
				case <-hctx.Done():
					cutShort.Store(true)
					return hctx.Err()
				}
				return nil
			})
	}()
	waitFor(t, 5*time.Second, pulling(a, "fatal"))
	for i := range 3 { // one runs, the consume loop waits with the next
		publishEvent(t, a, fmt.Sprintf("conv-fatal-%d", i))
	}
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("no handler started")
	}
	takeOver(t, a, "fatal")
	select {
	case err := <-done:
		t.Fatalf("ConsumeEvents returned (%v) with a handler in flight: its pop is cut off", err)
	case <-time.After(time.Second): // 20 owner checks: the takeover is seen
	}
	if cutShort.Load() {
		t.Fatal("the handler in flight had its context ended before DrainWithin")
	}
	close(release)
	select {
	case err := <-done:
		if !errors.Is(err, bus.ErrOtherDeployment) {
			t.Fatalf("ConsumeEvents: %v, want ErrOtherDeployment", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ConsumeEvents did not return once its handlers were done: the daemon's stop hangs")
	}
	if m := running.max.Load(); m > workers {
		t.Errorf("%d handlers ran at once, want at most %d (Workers)", m, workers)
	}
	t.Logf("%d handlers started in all", 1+len(started))
}

// The resolver's consumer lost and made again inside one ConsumeEvents:
// a pop in flight across the loss is finished (its context intact), the
// events after it are handled on the same workers while it runs, never
// more than Workers at once, and the workers end with ConsumeEvents.
func TestConn_ConsumeEventsKeepsItsWorkersAcrossALostConsumer(t *testing.T) {
	c := MustStart(t, bus.Config{Listen: "off"})
	const workers = 2
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	release := make(chan struct{})
	var running gauge
	var cutShort, held, heldDone atomic.Bool
	var mu sync.Mutex
	handled := map[string]bool{}
	handlers := map[uint64]bool{} // goroutine ids
	consuming := make(chan bool, 8)
	done := make(chan error, 1)
	go func() {
		done <- c.ConsumeEvents(ctx, bus.ConsumeConfig{Durable: "relost", Workers: workers, Since: time.Minute, Consuming: func(b bool) { consuming <- b }},
			func(hctx context.Context, data []byte) error {
				running.enter()
				defer running.leave()
				e, err := bridge.DecodeEvent(data)
				if err != nil {
					return err
				}
				mu.Lock()
				handlers[goroutineID()] = true
				mu.Unlock()
				// Its first delivery only: the consumer made again
				// starts at it, the newest this instance was given.
				if e.ConversationID == "conv-held" && held.CompareAndSwap(false, true) {
					select {
					case <-release:
						heldDone.Store(true)
					case <-hctx.Done():
						cutShort.Store(true)
						return hctx.Err()
					}
				}
				mu.Lock()
				handled[string(e.ConversationID)] = true
				mu.Unlock()
				return nil
			})
	}()
	next := func(want bool) {
		t.Helper()
		select {
		case got := <-consuming:
			if got != want {
				t.Fatalf("Consuming(%v), want Consuming(%v)", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no Consuming(%v) within 10s", want)
		}
	}
	next(true)
	waitFor(t, 5*time.Second, pulling(c, "relost"))
	publishEvent(t, c, "conv-held")
	waitFor(t, 5*time.Second, func() bool { return running.now.Load() == 1 })
	if err := c.JetStream().DeleteConsumer(context.Background(), c.StreamName(), "relost"); err != nil {
		t.Fatal(err)
	}
	next(false)
	next(true)
	waitFor(t, 5*time.Second, pulling(c, "relost"))
	const after = 20
	for i := range after {
		publishEvent(t, c, fmt.Sprintf("conv-after-%d", i))
	}
	has := func(conv string) bool { mu.Lock(); defer mu.Unlock(); return handled[conv] }
	waitFor(t, 10*time.Second, func() bool {
		for i := range after {
			if !has(fmt.Sprintf("conv-after-%d", i)) {
				return false
			}
		}
		return true
	})
	if heldDone.Load() {
		t.Fatal("the held handler finished before its release")
	}
	close(release)
	waitFor(t, 5*time.Second, heldDone.Load)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ConsumeEvents still running 5s after its context ended")
	}
	if cutShort.Load() {
		t.Error("the handler in flight across the loss had its context ended")
	}
	if m := running.max.Load(); m > workers {
		t.Errorf("%d handlers ran at once, want at most %d (Workers)", m, workers)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(handlers) > workers {
		t.Errorf("events were handled on %d goroutines across the consumer's loss, want at most %d (Workers)", len(handlers), workers)
	}
	for id := range handlers {
		if goroutineAlive(id) {
			t.Errorf("worker goroutine %d still runs a second after ConsumeEvents returned", id)
		}
	}
}

// With every worker busy the consume loop waits: no further handler
// starts, and the consumer's pulls stop short of its MaxAckPending
// (Workers*4), rather than events piling up in a queue of this instance
// that another instance could have handled.
func TestConn_ConsumeEventsHoldsBackWhileEveryWorkerIsBusy(t *testing.T) {
	c := MustStart(t, bus.Config{Listen: "off"})
	const workers = 2
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	release := make(chan struct{})
	var running gauge
	var calls atomic.Int32
	done := make(chan error, 1)
	go func() {
		done <- c.ConsumeEvents(ctx, bus.ConsumeConfig{Durable: "busy", Workers: workers, AckWait: time.Minute}, func(context.Context, []byte) error {
			running.enter()
			defer running.leave()
			calls.Add(1)
			<-release
			return nil
		})
	}()
	waitFor(t, 5*time.Second, pulling(c, "busy"))
	const n = 40
	for i := range n {
		publishEvent(t, c, fmt.Sprintf("conv-busy-%d", i))
	}
	waitFor(t, 5*time.Second, func() bool { return calls.Load() == workers })
	time.Sleep(500 * time.Millisecond) // would a third handler start, or the pulls go on?
	if got := calls.Load(); got != workers {
		t.Errorf("%d handlers started with %d workers all busy", got, workers)
	}
	cons, err := c.JetStream().Consumer(context.Background(), c.StreamName(), "busy")
	if err != nil {
		t.Fatal(err)
	}
	if info := cons.CachedInfo(); info.NumAckPending >= 4*workers {
		t.Errorf("%d events taken by a resolver whose %d workers are all busy (MaxAckPending %d): it queues them rather than hold back", info.NumAckPending, workers, 4*workers)
	}
	close(release)
	waitFor(t, 10*time.Second, func() bool { return calls.Load() == n })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if m := running.max.Load(); m > workers {
		t.Errorf("%d handlers ran at once, want at most %d (Workers)", m, workers)
	}
}

// A resolver stopped by an error with every worker busy and the consume
// loop waiting on them: its handlers' context still ends DrainWithin after
// the stop, as at a shutdown, so ConsumeEvents returns in bounded time
// rather than when the handlers happen to finish.
func TestConn_ConsumeEventsReturnsWithinDrainOnAnErrorReturn(t *testing.T) {
	a := MustStart(t, bus.Config{Owner: ownerA, Listen: "off"})
	const drain = 300 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan struct{}, 8)
	done := make(chan error, 1)
	go func() {
		done <- a.ConsumeEvents(ctx, bus.ConsumeConfig{Durable: "fatal-drain", Workers: 1, DrainWithin: drain, OwnerCheck: 50 * time.Millisecond},
			func(hctx context.Context, _ []byte) error {
				started <- struct{}{}
				<-hctx.Done() // a handler that would run for ever: only its context stops it
				return hctx.Err()
			})
	}()
	waitFor(t, 5*time.Second, pulling(a, "fatal-drain"))
	for i := range 3 { // one runs, the consume loop waits with the next
		publishEvent(t, a, fmt.Sprintf("conv-fatal-drain-%d", i))
	}
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("no handler started")
	}
	takeOver(t, a, "fatal-drain")
	select {
	case err := <-done:
		if !errors.Is(err, bus.ErrOtherDeployment) {
			t.Fatalf("ConsumeEvents: %v, want ErrOtherDeployment", err)
		}
	case <-time.After(5 * time.Second):
		cancel() // let it go, for the leak check
		<-done
		t.Fatalf("ConsumeEvents still running 5s after another deployment took its consumer over (DrainWithin %v): the daemon neither stops nor says why while a handler runs", drain)
	}
}
