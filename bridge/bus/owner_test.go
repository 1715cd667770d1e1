package bus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge/bus"
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
	cons, err := a.JetStream().Consumer(ctx, a.StreamName(), bus.DefaultDurable)
	if err != nil {
		t.Fatal(err)
	}
	cfg := cons.CachedInfo().Config
	cfg.Metadata = map[string]string{"screenpop_owner": ownerB}
	if _, err := a.JetStream().UpdateConsumer(ctx, a.StreamName(), cfg); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, bus.ErrOtherDeployment) {
			t.Fatalf("ConsumeEvents: %v, want ErrOtherDeployment", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the resolver went on consuming another deployment's consumer")
	}
}
