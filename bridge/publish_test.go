package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/screenpop/screenpop/internal/syncbuf"
)

// fakePublisher is a func-field fake of Publisher.
type fakePublisher struct {
	PublishFn func(ctx context.Context, m Message) error
}

func (f *fakePublisher) Publish(ctx context.Context, m Message) error { return f.PublishFn(ctx, m) }

// recorder records what was published.
type recorder struct {
	mu   sync.Mutex
	msgs []Message
}

func (r *recorder) add(m Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

func testEvent(conv string, part string, s State) Event {
	return Event{ConversationID: ConversationID(conv), Agent: AgentLeg{UserID: "agent-1", ParticipantID: ParticipantID(part)},
		Media: MediaVoice, State: s, Direction: DirectionInbound, ReceivedAt: NewTime(time.Now())}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, d time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatal("condition not met in time")
		}
		time.Sleep(time.Millisecond) // polling a deadline, not waiting for an outcome
	}
}

func MustEventPublisher(tb testing.TB, cfg EventPublisherConfig, pub Publisher) *EventPublisher {
	tb.Helper()
	p, err := NewEventPublisher(cfg, pub, zerologNop())
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// runPublisher runs p until the returned stop is called.
func runPublisher(tb testing.TB, p *EventPublisher) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Run: %v", err)
		}
	}
}

func TestEventPublisher_Run(t *testing.T) {
	t.Run("PublishesInOrderPerConversation", func(t *testing.T) {
		defer goleak.VerifyNone(t)
		var rec recorder
		p := MustEventPublisher(t, EventPublisherConfig{MaxInFlight: 4}, &fakePublisher{PublishFn: func(_ context.Context, m Message) error {
			rec.add(m)
			return nil
		}})
		stop := runPublisher(t, p)
		var all []Event
		for c := range 20 {
			for _, s := range []State{StateAlerting, StateConnected, StateDisconnected} {
				all = append(all, testEvent(fmt.Sprintf("conv-%d", c), "p1", s))
			}
		}
		if n := p.Enqueue(all...); n != len(all) {
			t.Fatalf("accepted %d of %d", n, len(all))
		}
		waitFor(t, 5*time.Second, func() bool { return rec.len() == len(all) })
		stop()
		last := map[string]int{}
		for _, m := range rec.msgs {
			e, err := DecodeEvent(m.Data)
			if err != nil {
				t.Fatal(err)
			}
			if m.ID != e.ID() || m.Subject != e.Subject() {
				t.Errorf("message id %q subject %q for event %q on %q", m.ID, m.Subject, e.ID(), e.Subject())
			}
			if r := e.State.Rank(); r <= last[string(e.ConversationID)] {
				t.Errorf("%s: %s published after a later state", e.ConversationID, e.State)
			} else {
				last[string(e.ConversationID)] = r
			}
		}
		if got := testutil.ToFloat64(p.m.published); got != float64(len(all)) {
			t.Errorf("published counted %v", got)
		}
	})

	t.Run("BufferFullDropsCounted", func(t *testing.T) {
		defer goleak.VerifyNone(t)
		var rec recorder
		p := MustEventPublisher(t, EventPublisherConfig{MaxInFlight: 1, MaxBuffer: 2}, &fakePublisher{PublishFn: func(_ context.Context, m Message) error {
			rec.add(m)
			return nil
		}})
		// Not running yet: NATS unreachable at start-up looks the same.
		n := p.Enqueue(testEvent("c1", "p1", StateAlerting), testEvent("c1", "p1", StateConnected),
			testEvent("c1", "p1", StateDisconnected), testEvent("c2", "p1", StateAlerting))
		if n != 2 {
			t.Fatalf("accepted %d, want 2", n)
		}
		if st := p.Status(); st.Buffered != 2 || st.Capacity != 2 {
			t.Errorf("status %+v", st)
		}
		if got := testutil.ToFloat64(p.m.dropped.WithLabelValues("buffer_full")); got != 2 {
			t.Errorf("buffer_full drops counted %v, want 2", got)
		}
		stop := runPublisher(t, p)
		waitFor(t, 5*time.Second, func() bool { return rec.len() == 2 })
		stop()
	})

	t.Run("RetriesUntilPublished", func(t *testing.T) {
		defer goleak.VerifyNone(t)
		var (
			rec  recorder
			mu   sync.Mutex
			fail = 5
		)
		p := MustEventPublisher(t, EventPublisherConfig{MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond},
			&fakePublisher{PublishFn: func(_ context.Context, m Message) error {
				mu.Lock()
				defer mu.Unlock()
				if fail > 0 {
					fail--
					return errors.New("nats: no responders available for request")
				}
				rec.add(m)
				return nil
			}})
		stop := runPublisher(t, p)
		p.Enqueue(testEvent("c1", "p1", StateAlerting), testEvent("c1", "p1", StateConnected))
		waitFor(t, 5*time.Second, func() bool { return rec.len() == 2 })
		stop()
		if got := testutil.ToFloat64(p.m.retries); got != 5 {
			t.Errorf("retries counted %v, want 5", got)
		}
		if rec.msgs[0].ID != "evt:c1:p1:voice:alerting" || rec.msgs[1].ID != "evt:c1:p1:voice:connected" {
			t.Errorf("published %q, %q", rec.msgs[0].ID, rec.msgs[1].ID)
		}
	})

	t.Run("MaxAttemptsDropsCounted", func(t *testing.T) {
		defer goleak.VerifyNone(t)
		var logs syncbuf.Buffer
		p, err := NewEventPublisher(EventPublisherConfig{MinBackoff: time.Millisecond, MaxAttempts: 3},
			&fakePublisher{PublishFn: func(context.Context, Message) error { return errors.New("nats: timeout") }}, zerolog.New(&logs))
		if err != nil {
			t.Fatal(err)
		}
		stop := runPublisher(t, p)
		p.Enqueue(testEvent("c1", "p1", StateAlerting))
		waitFor(t, 5*time.Second, func() bool { return testutil.ToFloat64(p.m.dropped.WithLabelValues("attempts")) == 1 })
		stop()
		if got := testutil.ToFloat64(p.m.retries); got != 2 {
			t.Errorf("retries counted %v, want 2", got)
		}
		// On-call reads why from the line (operations.md).
		if l := logs.String(); !strings.Contains(l, `"reason":"attempts"`) || !strings.Contains(l, `"dropped":1`) || !strings.Contains(l, `"message":"event dropped"`) {
			t.Errorf("the drop's log line lacks its reason:\n%s", l)
		}
	})

	t.Run("ABurstOfDropsIsToldInFull", func(t *testing.T) {
		// A burst of drops (NATS stalled, the buffer full) that ends within
		// a second: the first is logged at once, the rest held back. Once
		// the second is up they are told even if no drop follows, so the
		// "dropped" counts of the lines add up to every event lost
		// (operations.md: "event dropped ... that call may not pop").
		defer goleak.VerifyNone(t)
		var logs syncbuf.Buffer
		release := make(chan struct{})
		p, err := NewEventPublisher(EventPublisherConfig{MaxInFlight: 1, MaxBuffer: 1},
			&fakePublisher{PublishFn: func(ctx context.Context, m Message) error {
				select {
				case <-release:
				case <-ctx.Done():
				}
				return nil
			}}, zerolog.New(&logs))
		if err != nil {
			t.Fatal(err)
		}
		stop := runPublisher(t, p)
		defer stop()
		defer close(release)
		p.Enqueue(testEvent("c0", "p1", StateAlerting))
		waitFor(t, 5*time.Second, func() bool { return p.Status().Buffered == 0 }) // in flight, held
		p.Enqueue(testEvent("c0", "p1", StateConnected))                           // the buffer's one place
		const burst = 40
		for i := range burst {
			p.Enqueue(testEvent(fmt.Sprintf("c%d", i+1), "p1", StateAlerting))
		}
		if got := testutil.ToFloat64(p.m.dropped.WithLabelValues("buffer_full")); got != burst {
			t.Fatalf("dropped counted %v, want %d", got, burst)
		}
		told := func() (n int) {
			lines, err := logs.JSONLines()
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range lines {
				if l["message"] == "event dropped" {
					n += int(l["dropped"].(float64))
				}
			}
			return n
		}
		waitFor(t, 5*time.Second, func() bool { return told() == burst })
		if l := logs.String(); strings.Count(l, `"message":"event dropped"`) != 2 || strings.Count(l, `"reason":"buffer_full"`) != 2 {
			t.Errorf("want the first drop's line and one line for the rest, each with its reason:\n%s", l)
		}
		// Each line names one of the events it counts (7.2 sends on-call
		// from a missing pop to "event dropped, which names one
		// conversation a second"): without the ids, the 39 calls of the
		// tail's line are named by no line at all.
		lines, _ := logs.JSONLines()
		for _, l := range lines {
			if l["message"] != "event dropped" {
				continue
			}
			conv, _ := l["conversation_id"].(string)
			if id, _ := l["event_id"].(string); id == "" || !strings.HasPrefix(conv, "c") {
				t.Errorf("an event dropped line (dropped=%v) names no event or conversation: %v", l["dropped"], l)
			}
		}
	})

	t.Run("DrainsOnShutdown", func(t *testing.T) {
		defer goleak.VerifyNone(t)
		var rec recorder
		release := make(chan struct{})
		p := MustEventPublisher(t, EventPublisherConfig{MaxInFlight: 2, DrainTimeout: 10 * time.Second},
			&fakePublisher{PublishFn: func(ctx context.Context, m Message) error {
				<-release
				rec.add(m)
				return nil
			}})
		// Five events in each of the two lanes (lanes are picked by a
		// seeded hash of the conversation, so ten arbitrary conversations
		// all fall into one lane now and then).
		var evs []Event
		perLane := [2]int{}
		for c := 0; perLane[0] < 5 || perLane[1] < 5; c++ {
			id := fmt.Sprintf("c%d", c)
			if l := p.lane(ConversationID(id)); perLane[l] < 5 {
				perLane[l]++
				evs = append(evs, testEvent(id, "p1", StateAlerting))
			}
		}
		p.Enqueue(evs...)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		var releaseOnce sync.Once
		defer func() { cancel(); releaseOnce.Do(func() { close(release) }) }() // a failure below leaves no goroutine behind
		waitFor(t, 5*time.Second, func() bool { return p.Status().InFlight == 2 })
		cancel() // shut down with events in flight and buffered
		releaseOnce.Do(func() { close(release) })
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if rec.len() != len(evs) {
			t.Errorf("published %d of %d while draining", rec.len(), len(evs))
		}
		if n := p.Enqueue(testEvent("late", "p1", StateAlerting)); n != 0 {
			t.Error("accepted an event after Run returned")
		}
		if got := testutil.ToFloat64(p.m.dropped.WithLabelValues("shutdown")); got != 1 {
			t.Errorf("shutdown drops %v, want 1 (the late event)", got)
		}
	})

	t.Run("DrainTimeoutDropsCounted", func(t *testing.T) {
		defer goleak.VerifyNone(t)
		p := MustEventPublisher(t, EventPublisherConfig{MaxInFlight: 1, MinBackoff: time.Millisecond, DrainTimeout: 20 * time.Millisecond},
			&fakePublisher{PublishFn: func(context.Context, Message) error { return errors.New("nats: connection closed") }})
		p.Enqueue(testEvent("c1", "p1", StateAlerting), testEvent("c1", "p1", StateConnected), testEvent("c1", "p1", StateDisconnected))
		stop := runPublisher(t, p)
		waitFor(t, 5*time.Second, func() bool { return testutil.ToFloat64(p.m.retries) >= 2 })
		stop()
		if got := testutil.ToFloat64(p.m.dropped.WithLabelValues("shutdown")); got != 3 {
			t.Errorf("shutdown drops %v, want 3", got)
		}
		if st := p.Status(); st.Buffered != 0 || st.InFlight != 0 || st.Running {
			t.Errorf("status after stop %+v", st)
		}
	})

	t.Run("RunTwice", func(t *testing.T) {
		defer goleak.VerifyNone(t)
		p := MustEventPublisher(t, EventPublisherConfig{}, &fakePublisher{PublishFn: func(context.Context, Message) error { return nil }})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := p.Run(ctx); err != nil {
			t.Fatal(err)
		}
		if err := p.Run(ctx); !errors.Is(err, ErrPublisherStopped) {
			t.Errorf("second Run: %v", err)
		}
	})
}
