package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// A pop whose publish failed and whose marker could not be removed either
// (NATS unreachable for both) waits in Resolver.pending for its event's
// redelivery. When that never comes (the event's deliveries ran out while
// NATS still failed, and the leg's hang-up is never seen) the entry, a
// whole encoded pop with the caller's number, email and name, used to stay
// for the life of the process: each NATS incident left its legs behind,
// and /status reported them as pending_publishes for ever.
func TestResolver_PendingPopsOfGivenUpEventsAreForgotten(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	natsDown := true
	pub := &fakePub{fail: func(Message) error {
		mu.Lock()
		defer mu.Unlock()
		if natsDown {
			return errors.New("nats: connection closed")
		}
		return nil
	}}
	fs := &fakeStore{}
	r, err := NewResolver(ResolverConfig{PublishTimeout: time.Millisecond, Now: clock}, &fakeDir{}, fs, pub, NewHasher([]byte("0123456789abcdef0123")), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	const legs, maxDeliver = 200, 5
	for i := range legs {
		ev := resEvent(fmt.Sprintf("conv-%d", i), "agent-1", fmt.Sprintf("part-%d", i), StateAlerting)
		ev.ReceivedAt = NewTime(clock())
		for range maxDeliver { // every delivery fails: the event is given up
			if err := r.Handle(context.Background(), ev); err == nil {
				t.Fatalf("leg %d: Handle succeeded with NATS down", i)
			}
		}
	}
	if n := r.Status().PendingPublishes; n != legs {
		t.Fatalf("%d pending after the incident, want %d ", n, legs)
	}

	// NATS is back; two days of ordinary traffic follow. None of the
	// given-up events will ever be delivered again.
	mu.Lock()
	natsDown = false
	mu.Unlock()
	for d := range 48 {
		advance(time.Hour)
		ev := resEvent(fmt.Sprintf("later-%d", d), "agent-2", "p", StateAlerting)
		ev.ReceivedAt = NewTime(clock())
		if err := r.Handle(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.Status().PendingPublishes; n != 0 {
		t.Fatalf("%d pops of given-up events still held in memory two days later, want 0", n)
	}
}
