package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/screenpop/screenpop/bridge/bus"
)

// An older daemon's resolver consumer (here: one without acks, which
// JetStream does not let this version turn into its own) is a refusal
// NATS answers: docs/operations.md says it "stops the daemon with its
// cause". So it does when NATS answers the first attempt; when that first
// attempt got no answer (NATS away for a moment just after the stream was
// made), the refusal that follows must stop the daemon all the same, not
// be retried for ever with /readyz 503 and a line about a consumer "lost".
func TestConn_ConsumeEventsStopsOnARefusalAfterNoAnswerAtStart(t *testing.T) {
	server, client, px := behindCutProxy(t)
	older := func(durable string) {
		t.Helper()
		if _, err := server.JetStream().CreateConsumer(context.Background(), server.StreamName(), jetstream.ConsumerConfig{
			Durable: durable, AckPolicy: jetstream.AckNonePolicy,
		}); err != nil {
			t.Fatal(err)
		}
	}
	consume := func(ctx context.Context, durable string) error {
		return client.ConsumeEvents(ctx, bus.ConsumeConfig{Durable: durable}, func(context.Context, []byte) error { return nil })
	}

	// Control: answered at once, the refusal stops it.
	older("older-answered")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := consume(ctx, "older-answered"); err == nil || ctx.Err() != nil {
		t.Fatalf("older consumer, NATS answering: %v; want the refusal (the test proves nothing)", err)
	}

	// NATS away at the first attempt, then back with the same refusal.
	older("older-after-blip")
	px.Down()
	waitFor(t, 5*time.Second, func() bool { return !client.NATS().IsConnected() })
	done := make(chan error, 1)
	// No deadline, as the daemon's: each JetStream API call waits 5 s.
	bctx, bcancel := context.WithCancel(context.Background())
	defer bcancel()
	go func() { done <- consume(bctx, "older-after-blip") }()
	time.Sleep(6 * time.Second) // the first attempt waits out the API's 5 s
	px.Up()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("ConsumeEvents ended without the refusal")
		}
		t.Logf("stopped with: %v", err)
	case <-time.After(12 * time.Second):
		bcancel()
		<-done
		t.Fatal("the refusal NATS answered once it was back was retried, not reported: the daemon neither stops nor becomes ready")
	}
}
