package bus_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/bridge/bus/bustest"
)

const (
	ownerA = "https://a.crm.dynamics.com"
	ownerB = "https://b.crm4.dynamics.com"
)

// The resolver's consumer belongs to one deployment (Config.Owner): the
// daemons of another are refused while the owner's consume from it; a
// pair of the owner's are not; and once no one consumes from it, another
// owner takes it over.
func TestStart_RefusesAnotherDeploymentsConsumer(t *testing.T) {
	a := MustStart(t, bus.Config{Owner: ownerA})
	seenA, stopA := consumeConversations(t, a, bus.DefaultDurable)
	waitFor(t, 5*time.Second, pulling(a, bus.DefaultDurable))

	t.Run("AnotherDeployment", func(t *testing.T) {
		b, err := bus.Start(context.Background(), bus.Config{URL: a.ClientURL(), Owner: ownerB, StreamMaxAge: time.Hour}, zerolog.Nop())
		if err == nil {
			b.Close()
			t.Fatal("started against another deployment's running resolver")
		}
		if !errors.Is(err, bus.ErrOtherDeployment) {
			t.Fatalf("err %v, want ErrOtherDeployment", err)
		}
		// Refused before it touched the stream: A's settings stand.
		st, err := a.JetStream().Stream(context.Background(), a.StreamName())
		if err != nil {
			t.Fatal(err)
		}
		if got := st.CachedInfo().Config.MaxAge; got != 24*time.Hour {
			t.Fatalf("stream max age %v after B's refused start, want A's 24h", got)
		}
	})
	t.Run("Pair", func(t *testing.T) {
		pair, err := bus.Start(context.Background(), bus.Config{URL: a.ClientURL(), Owner: ownerA}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		defer pair.Close()
		seen, stop := consumeConversations(t, pair, bus.DefaultDurable)
		defer stop()
		waitFor(t, 5*time.Second, func() bool {
			cons, err := a.JetStream().Consumer(context.Background(), a.StreamName(), bus.DefaultDurable)
			return err == nil && cons.CachedInfo().NumWaiting >= 2
		})
		publishEvent(t, pair, "conv-owner-pair")
		select { // A's handler or the pair's: one of them has it
		case <-seen:
		case <-seenA:
		case <-time.After(10 * time.Second):
			t.Fatal("the event was not consumed")
		}
	})
	t.Run("TakenOverOnceUnused", func(t *testing.T) {
		stopA()
		waitFor(t, 5*time.Second, func() bool { return !pulling(a, bus.DefaultDurable)() })
		b, err := bus.Start(context.Background(), bus.Config{URL: a.ClientURL(), Owner: ownerB}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		seen, stop := consumeConversations(t, b, bus.DefaultDurable)
		defer stop()
		waitFor(t, 5*time.Second, pulling(b, bus.DefaultDurable))
		publishEvent(t, b, "conv-owner-b")
		nextSet(t, seen, "conv-owner-b")
		if _, err := bus.Start(context.Background(), bus.Config{URL: a.ClientURL(), Owner: ownerA}, zerolog.Nop()); !errors.Is(err, bus.ErrOtherDeployment) {
			t.Fatalf("A again, while B consumes: %v, want ErrOtherDeployment", err)
		}
	})
}

// A daemon of another deployment can take the consumer over in a moment
// when this one's pulls are not there (both starting at once, a NATS
// blip): the running resolver finds that within OwnerCheck and stops.
func TestConn_ConsumeEventsStopsWhenAnotherDeploymentTakesOver(t *testing.T) {
	a := MustStart(t, bus.Config{Owner: ownerA, Listen: "off"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- a.ConsumeEvents(ctx, bus.ConsumeConfig{OwnerCheck: 50 * time.Millisecond}, func(context.Context, []byte) error { return nil })
	}()
	waitFor(t, 5*time.Second, pulling(a, bus.DefaultDurable))
	takeOver(t, a, bus.DefaultDurable)
	select {
	case err := <-done:
		if !errors.Is(err, bus.ErrOtherDeployment) {
			t.Fatalf("ConsumeEvents: %v, want ErrOtherDeployment", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the resolver went on consuming another deployment's consumer")
	}
}

// consumeOwned runs ConsumeEvents with a short owner check, like
// consumeConversations; done is closed when it returns, with its error in
// *err. stop ends it (also at cleanup, before the Conn closes).
func consumeOwned(t *testing.T, c *bus.Conn) (done <-chan struct{}, err *error, stop func()) {
	d := make(chan struct{})
	var e error
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(d)
		e = c.ConsumeEvents(ctx, bus.ConsumeConfig{Since: time.Minute, OwnerCheck: 20 * time.Millisecond}, func(context.Context, []byte) error { return nil })
	}()
	stop = func() { cancel(); <-d }
	t.Cleanup(stop)
	return d, &e, stop
}

// stillRunning fails t when done reports ConsumeEvents' end within d.
func stillRunning(t *testing.T, done <-chan struct{}, err *error, d time.Duration, who string) {
	t.Helper()
	select {
	case <-done:
		t.Fatalf("%s's resolver stopped: %v", who, *err)
	case <-time.After(d):
	}
}

// A rolling upgrade of a pair from the version before the owner check (no
// owner: Config.Owner empty does what it did, updating the consumer without
// metadata) and a rollback of one instance while the other runs the new
// version: the new instance never takes the earlier one for another
// deployment, on the embedded server and on one before 2.11.
func TestConn_OwnerCheckRollingUpgradeAndRollback(t *testing.T) {
	for _, tc := range []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"Embedded", func(t *testing.T) string { return MustStart(t, bus.Config{}).ClientURL() }},
		{"NATSBefore2_11", func(t *testing.T) string { return bustest.MustStartOldServer(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := tc.url(t)
			start := func(owner string) *bus.Conn {
				c, err := bus.Start(context.Background(), bus.Config{URL: url, Owner: owner}, zerolog.Nop())
				if err != nil {
					t.Fatalf("start (owner %q): %v", owner, err)
				}
				t.Cleanup(c.Close)
				return c
			}
			// The earlier version runs both instances.
			old1 := start("")
			old1done, old1err, stopOld1 := consumeOwned(t, old1)
			waitFor(t, 5*time.Second, pulling(old1, bus.DefaultDurable))
			// Upgrade the other one.
			new1 := start(ownerA)
			new1done, new1err, _ := consumeOwned(t, new1)
			waitFor(t, 5*time.Second, func() bool {
				cons, err := new1.JetStream().Consumer(context.Background(), new1.StreamName(), bus.DefaultDurable)
				return err == nil && cons.CachedInfo().Config.Metadata["screenpop_owner"] == ownerA
			})
			// The earlier one restarts (a crash) while the new one runs.
			stopOld1()
			if *old1err != nil {
				t.Fatal(*old1err)
			}
			_ = old1done
			old2 := start("")
			old2done, old2err, _ := consumeOwned(t, old2)
			stillRunning(t, new1done, new1err, 500*time.Millisecond, "the new instance")
			stillRunning(t, old2done, old2err, 0, "the earlier instance")
			// Upgraded too.
			new2 := start(ownerA)
			new2done, new2err, _ := consumeOwned(t, new2)
			stillRunning(t, new1done, new1err, 300*time.Millisecond, "the first new instance")
			stillRunning(t, new2done, new2err, 0, "the second new instance")
			// Rolled back again, one instance.
			old3 := start("")
			old3done, old3err, _ := consumeOwned(t, old3)
			stillRunning(t, new1done, new1err, 300*time.Millisecond, "the first new instance")
			stillRunning(t, new2done, new2err, 0, "the second new instance")
			stillRunning(t, old3done, old3err, 0, "the rolled-back instance")
			// Another deployment is still refused while the new ones run.
			if b, err := bus.Start(context.Background(), bus.Config{URL: url, Owner: ownerB}, zerolog.Nop()); err == nil {
				b.Close()
				t.Logf("another deployment started after the rollback updated the consumer without an owner")
			} else if !errors.Is(err, bus.ErrOtherDeployment) {
				t.Fatal(err)
			}
			publishEvent(t, new2, "conv-rolling")
		})
	}
}

// A running resolver's pull expires every few seconds and is sent again at
// once: a start of another deployment that reads the consumer in that
// moment must not take it for an unused one (here the owner's pull comes
// 200 ms after the consumer is seen without one).
func TestStart_RefusesAnotherDeploymentBetweenItsPulls(t *testing.T) {
	a := MustStart(t, bus.Config{Owner: ownerA})
	_, stopA := consumeConversations(t, a, bus.DefaultDurable)
	waitFor(t, 5*time.Second, pulling(a, bus.DefaultDurable))
	stopA()
	waitFor(t, 5*time.Second, func() bool { return !pulling(a, bus.DefaultDurable)() })
	cons, err := a.JetStream().Consumer(context.Background(), a.StreamName(), bus.DefaultDurable)
	if err != nil {
		t.Fatal(err)
	}
	fetched := make(chan struct{})
	t.Cleanup(func() { <-fetched })
	go func() {
		defer close(fetched)
		time.Sleep(200 * time.Millisecond)
		if b, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second)); err == nil {
			for range b.Messages() {
			}
		}
	}()
	b, err := bus.Start(context.Background(), bus.Config{URL: a.ClientURL(), Owner: ownerB}, zerolog.Nop())
	if err == nil {
		b.Close()
		t.Fatal("started against another deployment's resolver seen between two of its pulls")
	}
	if !errors.Is(err, bus.ErrOtherDeployment) {
		t.Fatalf("err %v, want ErrOtherDeployment", err)
	}
}

// takeOver makes the consumer durable another deployment's (ownerB), as
// that deployment's daemon does when it takes it over.
func takeOver(t *testing.T, c *bus.Conn, durable string) {
	t.Helper()
	ctx := context.Background()
	cons, err := c.JetStream().Consumer(ctx, c.StreamName(), durable)
	if err != nil {
		t.Fatal(err)
	}
	cfg := cons.CachedInfo().Config
	cfg.Metadata = map[string]string{"screenpop_owner": ownerB}
	if _, err := c.JetStream().UpdateConsumer(ctx, c.StreamName(), cfg); err != nil {
		t.Fatal(err)
	}
}

// A running resolver whose workers are all busy (a throttled Dataverse, a
// backlog of calls) has no pull waiting: nats.go pulls again only once it
// has worked its batch down, and the consumer shows the events in its
// handlers as ack pending. It runs all the same: another deployment must
// be refused, not take the consumer over (the running one would then stop
// with ErrOtherDeployment, and its calls be looked up in the other
// deployment's Dataverse).
func TestStart_RefusesAnotherDeploymentWhileItsResolverIsBusy(t *testing.T) {
	a := MustStart(t, bus.Config{Owner: ownerA})
	ctx, cancel := context.WithCancel(context.Background())
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- a.ConsumeEvents(ctx, bus.ConsumeConfig{Since: time.Minute, Workers: 2, DrainWithin: time.Second},
			func(hctx context.Context, _ []byte) error {
				select { // a slow lookup
				case <-release:
				case <-hctx.Done():
				}
				return nil
			})
	}()
	t.Cleanup(func() { close(release); cancel(); <-done })
	waitFor(t, 5*time.Second, pulling(a, bus.DefaultDurable))
	for i := range 40 {
		publishEvent(t, a, fmt.Sprintf("conv-busy-%d", i))
	}
	waitFor(t, 10*time.Second, func() bool {
		cons, err := a.JetStream().Consumer(context.Background(), a.StreamName(), bus.DefaultDurable)
		return err == nil && cons.CachedInfo().NumWaiting == 0 && cons.CachedInfo().NumAckPending > 0
	})
	b, err := bus.Start(context.Background(), bus.Config{URL: a.ClientURL(), Owner: ownerB}, zerolog.Nop())
	if err == nil {
		b.Close()
		t.Fatal("started against another deployment's running resolver, busy: no pull waiting, its events in its handlers")
	}
	if !errors.Is(err, bus.ErrOtherDeployment) {
		t.Fatalf("err %v, want ErrOtherDeployment", err)
	}
}

// A deployment that died with events in its handlers (its host lost, a
// kill -9) leaves them counted as ack pending until someone pulls again.
// That is no deployment running: once its ack wait has passed with no
// delivery or ack, the consumer is another deployment's to take over, as
// the docs promise for a DATAVERSE_URL changed with every daemon stopped.
func TestStart_TakesOverFromADeploymentThatDiedWithEventsInItsHandlers(t *testing.T) {
	const ackWait = time.Second
	a := MustStart(t, bus.Config{Owner: ownerA})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- a.ConsumeEvents(ctx, bus.ConsumeConfig{Since: time.Minute, AckWait: ackWait}, func(context.Context, []byte) error { return nil })
	}()
	waitFor(t, 5*time.Second, pulling(a, bus.DefaultDurable))
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return !pulling(a, bus.DefaultDurable)() })
	for i := range 3 {
		publishEvent(t, a, fmt.Sprintf("conv-died-%d", i))
	}
	// Its last pull: the events delivered, never acknowledged (it died).
	cons, err := a.JetStream().Consumer(context.Background(), a.StreamName(), bus.DefaultDurable)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cons.Fetch(3, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for range b.Messages() {
	}
	time.Sleep(ackWait + 500*time.Millisecond)
	if info, err := cons.Info(context.Background()); err != nil || info.NumAckPending == 0 {
		t.Fatalf("setup: ack pending %v, %v; want the dead deployment's events still counted", info, err)
	}
	c, err := bus.Start(context.Background(), bus.Config{URL: a.ClientURL(), Owner: ownerB}, zerolog.Nop())
	if err != nil {
		t.Fatalf("refused a consumer whose deployment died %v ago with events in its handlers: %v", ackWait+500*time.Millisecond, err)
	}
	c.Close()
}
