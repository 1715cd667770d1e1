package bus_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
)

// Two instances share the resolver's durable (a NATS cluster). One is
// busy: it holds events it has pulled but not yet handed to a worker. When
// the durable is lost, the other instance makes it again from the newest
// event it was given, later than those: the busy one still handles them
// (the deletion reaches it behind them), so none is lost.
func TestConn_ConsumeEventsRecreatedByAnotherInstanceKeepsTheBusyOnesEvents(t *testing.T) {
	b := MustStart(t, bus.Config{}) // instance B, with the server
	a, err := bus.Start(context.Background(), bus.Config{URL: b.ClientURL()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	const durable = "shared"

	var mu sync.Mutex
	handled := map[string]string{} // conversation -> instance
	record := func(who string, data []byte) {
		e, err := bridge.DecodeEvent(data)
		if err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		if _, ok := handled[string(e.ConversationID)]; !ok {
			handled[string(e.ConversationID)] = who
		}
		mu.Unlock()
	}
	has := func(conv string) bool {
		mu.Lock()
		defer mu.Unlock()
		_, ok := handled[conv]
		return ok
	}
	release := make(chan struct{})
	run := func(c *bus.Conn, who string, workers int, hold bool) func() {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- c.ConsumeEvents(ctx, bus.ConsumeConfig{Durable: durable, Workers: workers, Since: time.Minute}, func(_ context.Context, data []byte) error {
				record(who, data)
				if hold {
					<-release // a slow lookup
				}
				return nil
			})
		}()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}

	// A, busy: its workers held.
	const workersA = 4
	stopA := run(a, "a", workersA, true)
	waitFor(t, 5*time.Second, pulling(b, durable))
	const n = 16
	for i := 1; i <= n; i++ {
		publishEvent(t, b, fmt.Sprintf("conv-%02d", i))
	}
	// A has taken what it can hold and asks for no more; the rest waits.
	waitFor(t, 5*time.Second, func() bool {
		cons, err := b.JetStream().Consumer(context.Background(), b.StreamName(), durable)
		if err != nil {
			return false
		}
		info := cons.CachedInfo()
		return info.NumWaiting == 0 && info.NumPending > 0 && info.NumAckPending > workersA+1
	})

	// B takes the rest and handles them.
	stopB := run(b, "b", 64, false)
	waitFor(t, 5*time.Second, func() bool { return has(fmt.Sprintf("conv-%02d", n)) })

	if err := b.JetStream().DeleteConsumer(context.Background(), b.StreamName(), durable); err != nil {
		t.Fatal(err)
	}
	// B makes it again at once (A waits for its held handler).
	waitFor(t, 5*time.Second, func() bool {
		_, err := b.JetStream().Consumer(context.Background(), b.StreamName(), durable)
		return err == nil
	})
	close(release)

	deadline := time.Now().Add(5 * time.Second)
	var missing []string
	for {
		missing = missing[:0]
		for i := 1; i <= n; i++ {
			if c := fmt.Sprintf("conv-%02d", i); !has(c) {
				missing = append(missing, c)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopA()
	stopB()
	if len(missing) > 0 {
		t.Fatalf("never handled by either instance: %q (A held them when the durable was lost; B made it again from its newest event)", missing)
	}
}

// Two instances start at once and find the durable missing: both make it,
// each at its own start time; one is refused (it exists now) and binds the
// other's. Neither fails its start (attempt 0 of ConsumeEvents is fatal).
func TestConn_ConsumeEventsTwoInstancesMakeTheDurableAtOnce(t *testing.T) {
	b := MustStart(t, bus.Config{})
	a, err := bus.Start(context.Background(), bus.Config{URL: b.ClientURL()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	for i := range 10 {
		durable := fmt.Sprintf("race-%d", i)
		ctx, cancel := context.WithCancel(context.Background())
		start := make(chan struct{})
		errs := make(chan error, 2)
		for _, c := range []*bus.Conn{a, b} {
			go func() {
				<-start
				errs <- c.ConsumeEvents(ctx, bus.ConsumeConfig{Durable: durable, Since: time.Minute}, func(context.Context, []byte) error { return nil })
			}()
		}
		close(start)
		select {
		case err := <-errs:
			cancel()
			t.Fatalf("%s: an instance stopped at its start: %v", durable, err)
		case <-time.After(200 * time.Millisecond):
		}
		cancel()
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}
}
