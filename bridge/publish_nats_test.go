package bridge_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
)

// swapPublisher forwards to the current bus connection, and fails while
// there is none (NATS down, between a close and a restart).
type swapPublisher struct {
	mu   sync.Mutex
	conn *bus.Conn
}

func (s *swapPublisher) set(c *bus.Conn) {
	s.mu.Lock()
	s.conn = c
	s.mu.Unlock()
}

func (s *swapPublisher) Publish(ctx context.Context, m bridge.Message) error {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c == nil {
		return errors.New("nats: no connection")
	}
	return c.Publish(ctx, m)
}

func mustStartBus(tb testing.TB, dir string) *bus.Conn {
	tb.Helper()
	c, err := bus.Start(context.Background(), bus.Config{Listen: "127.0.0.1:0", DataDir: dir}, zerolog.Nop())
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// fixtureEvents normalizes fixtures with a fresh normalizer (one bridge
// instance's view).
func fixtureEvents(tb testing.TB, names ...string) []bridge.Event {
	n := bridge.MustNormalizer(tb, bridge.NormalizerConfig{})
	var out []bridge.Event
	for _, name := range names {
		for _, s := range bridge.MustLoadFrames(tb, filepath.Join("testdata", "snapshots", name+".json")) {
			out = append(out, n.Normalize(s)...)
		}
	}
	return out
}

// receive reads n messages from sub, validating each against the event
// schema, and fails on a message that is not voice.
func receive(t *testing.T, sub *nats.Subscription, n int, validate func([]byte)) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	for range n {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", len(ids), n, err)
		}
		validate(m.Data)
		ce, err := bridge.DecodeEvent(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if ce.Media != bridge.MediaVoice || !strings.HasPrefix(m.Subject, "screenpop.events.voice.") || m.Subject != ce.Subject() {
			t.Errorf("subject %q for %s event", m.Subject, ce.Media)
		}
		if got := m.Header.Get(jetstream.MsgIDHeader); got != ce.ID() {
			t.Errorf("Nats-Msg-Id %q, want %q", got, ce.ID())
		}
		if ids[ce.ID()] {
			t.Errorf("%s received twice", ce.ID())
		}
		ids[ce.ID()] = true
	}
	return ids
}

func countVoice(es []bridge.Event) int {
	n := 0
	for _, e := range es {
		if e.Media == bridge.MediaVoice {
			n++
		}
	}
	return n
}

// TestEventPublisher_NATS publishes normalized fixtures through the real
// embedded NATS (JetStream), subscribes with a plain NATS client to
// screenpop.events.voice.> and validates what arrives against
// docs/schema/event.schema.json. A second bridge instance publishing the
// same events adds nothing to the stream (Nats-Msg-Id), and events produced
// while NATS is down are buffered and published once it is back.
func TestEventPublisher_NATS(t *testing.T) {
	defer goleak.VerifyNone(t)
	schema := bridge.MustSchema(t, "event")
	validate := func(b []byte) { bridge.MustValidate(t, schema, b) }
	dir := t.TempDir()
	conn := mustStartBus(t, dir)
	defer func() { conn.Close() }()
	swap := &swapPublisher{conn: conn}

	nc, err := nats.Connect(conn.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { nc.Close() }()
	sub, err := nc.SubscribeSync("screenpop.events.voice.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	pub, err := bridge.NewEventPublisher(bridge.EventPublisherConfig{MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}, swap, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer runPublisher(t, pub)()

	waitMsgs := func(c *bus.Conn, want uint64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for streamMsgs(t, c) != want {
			if time.Now().After(deadline) {
				t.Fatalf("stream has %d messages, want %d", streamMsgs(t, c), want)
			}
			time.Sleep(5 * time.Millisecond) // polling a deadline
		}
	}

	names := []string{"inbound_call", "blind_transfer", "web_chat", "callback"}
	events := fixtureEvents(t, names...)
	pub.Enqueue(events...)
	ids := receive(t, sub, countVoice(events), validate)
	for _, e := range events {
		if e.Media == bridge.MediaVoice && !ids[e.ID()] {
			t.Errorf("%s not received", e.ID())
		}
	}
	waitMsgs(conn, uint64(len(events)))

	t.Run("SecondBridgeInstanceDeduplicated", func(t *testing.T) {
		again := fixtureEvents(t, names...) // another instance's normalizer, same snapshots
		pub.Enqueue(again...)
		marker := fixtureEvents(t, "internal_call")
		pub.Enqueue(marker...)
		// The stream stores each id once. (Plain subscribers see every
		// publish, duplicates included: JetStream de-duplicates what it
		// stores, so consumers that must not see a duplicate read the
		// stream, as below.)
		waitMsgs(conn, uint64(len(events)+len(marker)))
		cons, err := conn.JetStream().OrderedConsumer(context.Background(), conn.StreamName(),
			jetstream.OrderedConsumerConfig{FilterSubjects: []string{"screenpop.events.voice.>"}})
		if err != nil {
			t.Fatal(err)
		}
		want := countVoice(events) + countVoice(marker)
		batch, err := cons.Fetch(want+1, jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for m := range batch.Messages() {
			validate(m.Data())
			e, err := bridge.DecodeEvent(m.Data())
			if err != nil {
				t.Fatal(err)
			}
			if seen[e.ID()] {
				t.Errorf("%s stored twice", e.ID())
			}
			seen[e.ID()] = true
		}
		if len(seen) != want {
			t.Errorf("stream holds %d voice events, want %d", len(seen), want)
		}
	})

	t.Run("NATSRestarted", func(t *testing.T) {
		before := streamMsgs(t, conn)
		swap.set(nil)
		nc.Close()
		conn.Close() // NATS goes away
		down := fixtureEvents(t, "consult_transfer", "reoffer_no_answer")
		if n := pub.Enqueue(down...); n != len(down) {
			t.Fatalf("buffered %d of %d while NATS is down", n, len(down))
		}
		deadline := time.Now().Add(5 * time.Second)
		for st := pub.Status(); st.Buffered+st.InFlight == 0; st = pub.Status() {
			if time.Now().After(deadline) {
				t.Fatal("nothing waiting while NATS is down")
			}
		}
		// NATS comes back with its store; a subscriber reconnects.
		conn = mustStartBus(t, dir)
		nc, err = nats.Connect(conn.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		sub, err = nc.SubscribeSync("screenpop.events.voice.>")
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		swap.set(conn)
		receive(t, sub, countVoice(down), validate)
		waitMsgs(conn, before+uint64(len(down)))
	})
}

// An event too large for the bus (the customer's participant data) is
// published without its largest attributes, the short ones kept, instead
// of being retried for ever in front of its lane's later events.
func TestEventPublisher_TooLargeForTheBus(t *testing.T) {
	conn := mustStartBus(t, t.TempDir())
	defer conn.Close()
	got := publishBigThenNext(t, conn, map[string]string{"crm_id": "a15531c3", "notes": strings.Repeat("x", 1_100_000)})
	if a := got["conv-big"].Customer.Attributes; a["notes"] != "" || a["crm_id"] != "a15531c3" {
		t.Errorf("attributes of the large event: %v keys, want crm_id only", len(a))
	}
}

// The same for a stream whose messages an admin limited by hand (nats
// stream edit --max-msg-size): JetStream refuses the event (10054), which
// was retried for ever in front of its lane's later events.
func TestEventPublisher_TooLargeForTheStream(t *testing.T) {
	conn := mustStartBus(t, t.TempDir())
	defer conn.Close()
	ctx := context.Background()
	st, err := conn.JetStream().Stream(ctx, conn.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.MaxMsgSize = 16 << 10
	if _, err := conn.JetStream().UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	got := publishBigThenNext(t, conn, map[string]string{"crm_id": "a15531c3", "notes": strings.Repeat("x", 40_000), "summary": strings.Repeat("y", 4_000)})
	// Only what it takes: the 40 KB note goes, the 4 KB summary fits.
	if a := got["conv-big"].Customer.Attributes; a["notes"] != "" || a["crm_id"] != "a15531c3" || a["summary"] == "" {
		t.Errorf("attributes of the large event: %d keys, want crm_id and summary", len(a))
	}
}

// publishBigThenNext publishes a call's event with attrs, then another
// conversation's on the same lane (one in flight), and returns both as
// the stream holds them, by conversation, in order: the large one must
// not hold up the next.
func publishBigThenNext(t *testing.T, conn *bus.Conn, attrs map[string]string) map[string]*bridge.Event {
	t.Helper()
	pub, err := bridge.NewEventPublisher(bridge.EventPublisherConfig{MaxInFlight: 1, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}, conn, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer runPublisher(t, pub)()
	event := func(conv string, attrs map[string]string) bridge.Event {
		return bridge.Event{ConversationID: bridge.ConversationID(conv), Agent: bridge.AgentLeg{UserID: "agent-big", ParticipantID: "P1"},
			Media: bridge.MediaVoice, State: bridge.StateAlerting, ReceivedAt: bridge.Time{Time: time.Now()},
			Customer: bridge.Customer{Phone: "+13175550123", Attributes: attrs}}
	}
	pub.Enqueue(event("conv-big", attrs), event("conv-next", nil))
	deadline := time.Now().Add(10 * time.Second)
	for streamMsgs(t, conn) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("stream has %d messages, want 2: the large event holds up its lane", streamMsgs(t, conn))
		}
		time.Sleep(5 * time.Millisecond) // polling a deadline
	}
	cons, err := conn.JetStream().OrderedConsumer(context.Background(), conn.StreamName(), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(2, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*bridge.Event{}
	var order []string
	for m := range batch.Messages() {
		e, err := bridge.DecodeEvent(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		got[string(e.ConversationID)] = e
		order = append(order, string(e.ConversationID))
	}
	if strings.Join(order, ",") != "conv-big,conv-next" {
		t.Fatalf("stream holds %v, want conv-big then conv-next", order)
	}
	return got
}

// streamMsgs returns how many messages c's stream holds.
func streamMsgs(tb testing.TB, c *bus.Conn) uint64 {
	tb.Helper()
	s, err := c.JetStream().Stream(context.Background(), c.StreamName())
	if err != nil {
		tb.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return info.State.Msgs
}

// runPublisher runs pub until the returned stop is called.
func runPublisher(t *testing.T, pub *bridge.EventPublisher) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pub.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
