package bus_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/bridge/bus/bustest"
)

// A stop while the NATS server stalls (the TCP connection up, nothing
// answered: the client still counts itself connected): the subscription's
// drain never completes. ConsumeEvents outlives its context by DrainWithin
// at most, its handlers' context ending then; it waited DrainWithin for
// the drain and only then gave the handlers DrainWithin of their own, so
// the resolver's stage of a daemon's stop took twice its bound and the
// stop was cut short (TestShutdown_WhileNATSStalls in cmd/screenpopd).
func TestConn_ConsumeEventsStopsWithinDrainWhileNATSStalls(t *testing.T) {
	server := MustStart(t, bus.Config{})
	u, err := url.Parse(server.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	gate, stalled := bustest.Stalling()
	px := bustest.StartProxy(t, u.Host, gate, gate)
	t.Cleanup(func() { stalled.Store(false) }) // before the proxy's cleanup
	c, err := bus.Start(context.Background(), bus.Config{URL: px.URL()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	const drain = 2 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{}, 4)
	done := make(chan error, 1)
	go func() {
		done <- c.ConsumeEvents(ctx, bus.ConsumeConfig{Durable: "stall", Workers: 1, DrainWithin: drain}, func(hctx context.Context, _ []byte) error {
			started <- struct{}{}
			<-hctx.Done() // a lookup that would run for ever: only its context stops it
			return hctx.Err()
		})
	}()
	waitFor(t, 5*time.Second, func() bool {
		_, err := server.JetStream().Consumer(context.Background(), server.StreamName(), "stall")
		return err == nil
	})
	publishEvent(t, server, "conv-stall")
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("no handler started")
	}
	stalled.Store(true)
	stop := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(4 * drain):
		t.Fatalf("ConsumeEvents still running %v after its context ended (DrainWithin %v)", 4*drain, drain)
	}
	// Twice DrainWithin is what the old code took at the least.
	if took := time.Since(stop); took >= 3*drain/2 {
		t.Errorf("ConsumeEvents returned %v after its context ended with NATS stalled, want DrainWithin (%v): the drain's wait and the handlers' were added", took.Round(time.Millisecond), drain)
	}
}
