package bus

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
)

// A pop the follow consumer sent but this instance never received (a gap
// in the consumer's sequence) stops delivery where it is: the pop after
// the gap is not handed on, and the consumer is marked to be made again
// after the last pop delivered, so the missing one comes first. The
// messages are real deliveries of a consumer on the embedded server, one
// held back as a lost one would be.
func TestFollower_AGapInTheConsumerSequenceMakesItAgain(t *testing.T) {
	c, err := Start(context.Background(), Config{Listen: "off", DataDir: t.TempDir()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 1; i <= 3; i++ {
		conv := bridge.ConversationID(fmt.Sprintf("conv-%d", i))
		p := &bridge.Pop{ID: bridge.PopID(conv, "P1"), ConversationID: conv, AgentID: "agent-g", Media: bridge.MediaVoice, State: bridge.StateAlerting,
			Target: bridge.Target{Action: bridge.ActionOpen, Entity: "contact", ID: "C1"}}
		m, err := bridge.EncodePop(p, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Publish(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := c.js.CreateConsumer(ctx, c.cfg.Stream, jetstream.ConsumerConfig{AckPolicy: jetstream.AckNonePolicy, FilterSubject: bridge.SubjectPops})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(3, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if len(msgs) != 3 {
		t.Fatalf("fetched %d pops, want 3", len(msgs))
	}

	var got []uint64
	f := &follower{c: c, fn: func(p bridge.StoredPop) { got = append(got, p.Seq) }, failed: make(chan struct{}, 1), serial: 1}
	deliver := f.deliver(1)
	deliver(msgs[0])
	deliver(msgs[2]) // the second never arrived
	first, _ := msgs[0].Metadata()
	if len(got) != 1 || got[0] != first.Sequence.Stream {
		t.Fatalf("delivered stream sequences %v, want only the first pop's (%d)", got, first.Sequence.Stream)
	}
	select {
	case <-f.failed:
	default:
		t.Fatal("a gap in the consumer's sequence did not ask for the consumer to be made again")
	}
	if !f.broken.Load() || f.next != first.Sequence.Stream+1 {
		t.Fatalf("broken %v, next %d; want the consumer made again at %d, the missing pop", f.broken.Load(), f.next, first.Sequence.Stream+1)
	}
	deliver(msgs[2]) // what follows the gap is not handed on either
	if len(got) != 1 {
		t.Fatalf("delivered stream sequences %v after the gap, want none", got)
	}
	f.stop() // as start does first: the broken consumer's deliveries are dropped
	deliver(msgs[1])
	if len(got) != 1 {
		t.Fatalf("the consumer given up delivered %v", got)
	}
}
