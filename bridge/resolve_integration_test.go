package bridge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
	"github.com/screenpop/screenpop/internal/syncbuf"
)

// resolverStack is the resolver wired as in screenpopd: the Dataverse
// emulator behind a dataverse.Client, and an embedded NATS (bus.Conn) as
// PopStore and Publisher, with the resolver consuming events through
// bus.ConsumeEvents and the test following pops through bus.FollowPops.
type resolverStack struct {
	dv    *dataversetest.Server
	dir   *dataverse.Client
	conn  *bus.Conn
	r     *bridge.Resolver
	mu    sync.Mutex
	pops  []*bridge.Pop
	got   chan struct{}
	stop  func()
	agent bridge.AgentID
	logs  syncbuf.Buffer // the resolver's
}

// stackOptions change how startResolverStack runs the resolver's consumer.
type stackOptions struct {
	consume bus.ConsumeConfig
	// markerGrace is the bus's MarkerGrace (its default when zero).
	markerGrace time.Duration
	// dupWindow is the bus's DuplicateWindow (its default when zero).
	dupWindow time.Duration
	// beforeConsume runs once the stream exists and before the resolver
	// consumes.
	beforeConsume func(*resolverStack)
	// publisher wraps the resolver's publisher (the bus.Conn).
	publisher func(bridge.Publisher) bridge.Publisher
}

func startResolverStack(t *testing.T, rcfg bridge.ResolverConfig, seed func(*dataversetest.Server), opts ...func(*stackOptions)) *resolverStack {
	t.Helper()
	var o stackOptions
	for _, f := range opts {
		f(&o)
	}
	s := &resolverStack{dv: dataversetest.New(dataversetest.Config{}), got: make(chan struct{}, 1000), agent: "agent-1"}
	if seed != nil {
		seed(s.dv)
	}
	if err := s.dv.Start(); err != nil {
		t.Fatal(err)
	}
	ec := s.dv.Config()
	var err error
	s.dir, err = dataverse.New(dataverse.Config{URL: s.dv.URL(), ClientID: ec.ClientID, ClientSecret: ec.ClientSecret, TokenURL: s.dv.TokenURL(), AppID: "11111111-2222-3333-4444-555555555555"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	s.conn, err = bus.Start(context.Background(), bus.Config{Listen: "off", DataDir: t.TempDir(), MarkerGrace: o.markerGrace, DuplicateWindow: o.dupWindow}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	var pub bridge.Publisher = s.conn
	if o.publisher != nil {
		pub = o.publisher(pub)
	}
	s.r, err = bridge.NewResolver(rcfg, s.dir, s.conn, pub, bridge.NewHasher([]byte("integration-test-key")), zerolog.New(&s.logs))
	if err != nil {
		t.Fatal(err)
	}
	if o.beforeConsume != nil {
		o.beforeConsume(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := s.conn.ConsumeEvents(ctx, o.consume, s.r.HandleMessage); err != nil {
			t.Error(err)
		}
	})
	wg.Go(func() {
		if err := s.dir.Run(ctx); err != nil {
			t.Error(err)
		}
	})
	wg.Go(func() {
		_ = s.conn.FollowPops(ctx, func(sp bridge.StoredPop) {
			p, err := bridge.DecodePop(sp.Data)
			if err != nil {
				t.Error(err)
				return
			}
			s.mu.Lock()
			s.pops = append(s.pops, p)
			s.mu.Unlock()
			s.got <- struct{}{}
		}, nil)
	})
	// The resolver's durable and the pop follower both start at new
	// messages: an event or a pop stored before they exist never reaches
	// them (under load, the first event of a test was lost that way). Wait
	// for the stream's two consumers.
	waitUntil(t, 10*time.Second, func() bool {
		st, err := s.conn.JetStream().Stream(ctx, s.conn.StreamName())
		if err != nil {
			return false
		}
		info, err := st.Info(ctx)
		return err == nil && info.State.Consumers >= 2
	})
	waitUntil(t, 5*time.Second, s.dir.Ready)
	s.stop = func() {
		cancel()
		wg.Wait()
		s.dir.Close()
		s.conn.Close()
		s.dv.Close()
	}
	return s
}

func waitUntil(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond) // polling a deadline
	}
}

func (s *resolverStack) publish(t *testing.T, e *bridge.Event) {
	t.Helper()
	m, err := bridge.EncodeEvent(e, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.conn.Publish(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

// awaitPops waits for n pops and returns them by conversation id.
func (s *resolverStack) awaitPops(t *testing.T, n int, within time.Duration) map[bridge.ConversationID]*bridge.Pop {
	t.Helper()
	timeout := time.After(within)
	for range n {
		select {
		case <-s.got:
		case <-timeout:
			s.mu.Lock()
			defer s.mu.Unlock()
			t.Fatalf("%d of %d pops arrived", len(s.pops), n)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[bridge.ConversationID]*bridge.Pop{}
	for _, p := range s.pops {
		if out[p.ConversationID] != nil {
			t.Fatalf("two pops for %s", p.ConversationID)
		}
		out[p.ConversationID] = p
	}
	return out
}

func callEvent(conv string, phone string) *bridge.Event {
	return &bridge.Event{
		ConversationID: bridge.ConversationID(conv),
		Agent:          bridge.AgentLeg{UserID: "agent-1", ParticipantID: bridge.ParticipantID("p-" + conv)},
		Media:          bridge.MediaVoice, State: bridge.StateAlerting, Direction: bridge.DirectionInbound,
		Customer:   bridge.Customer{Phone: phone, Address: "tel:" + phone},
		ReceivedAt: bridge.NewTime(time.Now()),
	}
}

func TestResolver_DataverseNATS(t *testing.T) {
	defer goleak.VerifyNone(t)
	var info dataversetest.SeedInfo
	s := startResolverStack(t, bridge.ResolverConfig{}, func(dv *dataversetest.Server) {
		info = dv.Seed(300, rand.New(rand.NewPCG(1, 2)))
	})
	defer s.stop()
	if len(info.Unique) < 3 || len(info.Shared) < 1 || len(info.Unknown) < 1 {
		t.Fatalf("seed %d/%d/%d", len(info.Unique), len(info.Shared), len(info.Unknown))
	}
	s.publish(t, callEvent("unique", info.Unique[0]))
	s.publish(t, callEvent("shared", info.Shared[0]))
	s.publish(t, callEvent("unknown", info.Unknown[0]))
	internal := callEvent("internal", "")
	internal.Internal = true
	s.publish(t, internal)
	again := callEvent("unique", info.Unique[0]) // the same leg, connected: no second pop
	again.State = bridge.StateConnected
	s.publish(t, again)
	pops := s.awaitPops(t, 3, 10*time.Second)
	if p := pops["unique"]; p.Target.Action != bridge.ActionOpen || p.Target.URL == "" {
		t.Fatalf("unique: %+v", p.Target)
	}
	if p := pops["shared"]; p.Target.Action != bridge.ActionChoose || len(p.Candidates) < 2 {
		t.Fatalf("shared: %+v %+v", p.Target, p.Candidates)
	}
	if p := pops["unknown"]; p.Target.Action != bridge.ActionCreate || p.Prefill["telephone1"] != info.Unknown[0] {
		t.Fatalf("unknown: %+v %v", p.Target, p.Prefill)
	}
	// Nothing more arrives (internal, and the repeat of the unique leg).
	s.publish(t, callEvent("sentinel", info.Unique[1]))
	s.awaitPops(t, 1, 10*time.Second)
	s.mu.Lock()
	n := len(s.pops)
	s.mu.Unlock()
	if n != 4 {
		t.Fatalf("%d pops, want 4", n)
	}
}

// TestResolver_EndedLegsLoseTheirMarkers: the resolver consumes the
// disconnected events too, and a leg's marker lives the grace after its
// leg ends instead of the marker TTL (24 h) after its pop.
func TestResolver_EndedLegsLoseTheirMarkers(t *testing.T) {
	defer goleak.VerifyNone(t)
	var info dataversetest.SeedInfo
	s := startResolverStack(t, bridge.ResolverConfig{}, func(dv *dataversetest.Server) {
		info = dv.Seed(50, rand.New(rand.NewPCG(5, 6)))
	}, func(o *stackOptions) {
		o.consume = bus.ConsumeConfig{Subjects: bridge.ResolverSubjects}
		o.markerGrace = time.Second
	})
	defer s.stop()
	markers := func() uint64 {
		st := s.conn.Status(context.Background())
		if st.Error != "" {
			t.Fatal(st.Error)
		}
		return st.Markers
	}
	s.publish(t, callEvent("ends", info.Unique[0]))
	s.publish(t, callEvent("goes-on", info.Unique[1]))
	s.awaitPops(t, 2, 10*time.Second)
	if n := markers(); n != 2 {
		t.Fatalf("%d markers after two pops, want 2", n)
	}
	// A callback's call fails while the callback goes on: the leg's
	// marker stays.
	failed := callEvent("goes-on", info.Unique[1])
	failed.State = bridge.StateDisconnected
	s.publish(t, failed)
	hangUp := callEvent("ends", info.Unique[0])
	hangUp.State, hangUp.LegEnded = bridge.StateDisconnected, true
	s.publish(t, hangUp)
	waitUntil(t, 10*time.Second, func() bool { return markers() == 1 })
	time.Sleep(1500 * time.Millisecond) // more than the grace: an ended marker would be gone
	if n := markers(); n != 1 {
		t.Fatalf("%d markers, want the one of the leg that goes on", n)
	}
	if _, err := s.conn.MarkPop(context.Background(), failed.PopID(), "evt:another"); err != nil {
		t.Fatalf("MarkPop of the leg that goes on: %v; want its marker live, not ended", err)
	}
}

// TestResolver_ThrottledDataverse: half of Dataverse's answers are 429 with
// Retry-After: 1. Every pop still arrives, as open or (when the deadline
// passes first) search, and no request reached Dataverse before a
// Retry-After it had been given elapsed.
func TestResolver_ThrottledDataverse(t *testing.T) {
	defer goleak.VerifyNone(t)
	var info dataversetest.SeedInfo
	s := startResolverStack(t, bridge.ResolverConfig{Deadline: 2 * time.Second}, func(dv *dataversetest.Server) {
		info = dv.Seed(200, rand.New(rand.NewPCG(3, 4)))
	})
	defer s.stop()
	s.dv.ThrottleEvery(2, time.Second)
	const calls = 8
	for i := range calls {
		s.publish(t, callEvent(fmt.Sprintf("call-%d", i), info.Unique[i]))
	}
	pops := s.awaitPops(t, calls, 20*time.Second)
	actions := map[bridge.Action]int{}
	for conv, p := range pops {
		if p.Target.Action != bridge.ActionOpen && p.Target.Action != bridge.ActionSearch {
			t.Fatalf("%s: action %s, want open or search", conv, p.Target.Action)
		}
		if p.Target.Action == bridge.ActionSearch && p.Target.Query == "" {
			t.Fatalf("%s: search without query", conv)
		}
		actions[p.Target.Action]++
	}
	throttled := 0
	for _, r := range s.dv.Requests() {
		if r.Status == http.StatusTooManyRequests {
			throttled++
		}
	}
	if throttled == 0 {
		t.Fatal("nothing was throttled; the test proves nothing")
	}
	if v := s.dv.Violations(); len(v) != 0 {
		t.Fatalf("%d requests arrived inside a Retry-After window: %+v", len(v), v)
	}
	t.Logf("pops: %v; 429 answers: %d", actions, throttled)
}

// dyingInstance is an instance that takes the next event from the
// resolver's durable consumer (as ConsumeEvents makes it), writes its pop
// marker, and dies: neither acked nor published. event gives the event it
// takes, and then (if not nil) what happens while the daemon is down,
// before the stack's resolver (another instance, or this one restarted)
// starts.
func dyingInstance(t *testing.T, ackWait time.Duration, event func() *bridge.Event, then func(*resolverStack)) func(*stackOptions) {
	return func(o *stackOptions) {
		o.consume = bus.ConsumeConfig{AckWait: ackWait}
		o.beforeConsume = func(s *resolverStack) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cons, err := s.conn.JetStream().CreateOrUpdateConsumer(ctx, s.conn.StreamName(), jetstream.ConsumerConfig{
				Durable: "screenpop-resolver", FilterSubjects: []string{bridge.SubjectEvents},
				DeliverPolicy: jetstream.DeliverNewPolicy, AckPolicy: jetstream.AckExplicitPolicy,
				AckWait: ackWait, MaxDeliver: 5, MaxAckPending: 256,
			})
			if err != nil {
				t.Fatal(err)
			}
			s.publish(t, event())
			batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			taken := 0
			for m := range batch.Messages() {
				e, err := bridge.DecodeEvent(m.Data())
				if err != nil {
					t.Fatal(err)
				}
				if created, err := s.conn.MarkPop(ctx, e.PopID(), e.ID()); err != nil || !created {
					t.Fatalf("the dying instance's marker: %v, %v", created, err)
				}
				taken++ // and then it dies: no ack, no publish
			}
			if taken != 1 {
				t.Fatalf("the dying instance took %d events, want 1", taken)
			}
			if then != nil {
				then(s)
			}
		}
	}
}

// answered is the connected event of call's leg, as the reconciliation or
// the socket brings it once the call is answered.
func answered(call *bridge.Event) *bridge.Event {
	c := *call
	c.State = bridge.StateConnected
	c.OccurredAt = bridge.NewTime(time.Now())
	c.ReceivedAt = bridge.NewTime(time.Now())
	return &c
}

// awaitOnePop waits for conv's pop, opening its record, then for a later
// call's: nothing of conv pops a second time in between.
func (s *resolverStack) awaitOnePop(t *testing.T, conv bridge.ConversationID, laterPhone string) {
	t.Helper()
	pops := s.awaitPops(t, 1, 10*time.Second)
	if p := pops[conv]; p == nil || p.Target.Action != bridge.ActionOpen {
		t.Fatalf("pops %v, want %s's call to open its record", pops, conv)
	}
	s.publish(t, callEvent("sentinel", laterPhone))
	if p := s.awaitPops(t, 1, 10*time.Second); p["sentinel"] == nil {
		t.Fatalf("next pop %v, want the sentinel's", p)
	}
	s.awaitPopLine(t, conv)
	s.awaitPopLine(t, "sentinel")
}

// awaitPopLine waits for conv's pop line: the resolver writes it after the
// pop is published, so the pop can reach the test first.
func (s *resolverStack) awaitPopLine(t *testing.T, conv bridge.ConversationID) {
	t.Helper()
	want := fmt.Sprintf(`"conversation_id":%q`, conv)
	waitUntil(t, 10*time.Second, func() bool {
		for l := range strings.Lines(s.logs.String()) {
			if strings.Contains(l, `"message":"pop"`) && strings.Contains(l, want) {
				return true
			}
		}
		return false
	})
}

// TestResolver_CrashAfterMarker: an instance dies after writing a pop's
// marker and before publishing the pop (it took the event, marked, and
// neither acked nor published). The event comes back, after the consumer's
// ack wait, to the resolver of another instance (here the stack's, started
// after the crash); the marker is young, so it pops, once.
func TestResolver_CrashAfterMarker(t *testing.T) {
	defer goleak.VerifyNone(t)
	var info dataversetest.SeedInfo
	s := startResolverStack(t, bridge.ResolverConfig{}, func(dv *dataversetest.Server) {
		info = dv.Seed(200, rand.New(rand.NewPCG(5, 6)))
	}, dyingInstance(t, time.Second, func() *bridge.Event { return callEvent("crash", info.Unique[0]) }, nil))
	defer s.stop()
	s.awaitOnePop(t, "crash", info.Unique[1])
	// On-call tells a pop made after a crash by its line (docs/operations.md).
	redelivered := map[string]any{}
	for l := range strings.Lines(s.logs.String()) {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["message"] == "pop" {
			redelivered[m["conversation_id"].(string)] = m["redelivered"]
		}
	}
	if redelivered["crash"] != true || redelivered["sentinel"] != nil {
		t.Fatalf("pop lines' redelivered %v, want true for the crash's pop and absent for the next", redelivered)
	}
}

// TestResolver_CrashAfterMarkerThenAnswered: as TestResolver_CrashAfterMarker,
// and the agent answers the call before the alerting event comes back: the
// restarted daemon's reconciliation (or the socket) brings the leg's
// connected event, which the resolver gets at once, while the alerting
// event waits out its ack wait. The call is live and never popped: it must
// pop, once. It used to make no pop at all: the connected event found the
// leg marked by the dead instance's claim and put it in the recently
// popped set, where the alerting event's redelivery was then skipped as
// "already popped".
func TestResolver_CrashAfterMarkerThenAnswered(t *testing.T) {
	defer goleak.VerifyNone(t)
	var info dataversetest.SeedInfo
	var call *bridge.Event
	s := startResolverStack(t, bridge.ResolverConfig{}, func(dv *dataversetest.Server) {
		info = dv.Seed(200, rand.New(rand.NewPCG(9, 10)))
		call = callEvent("answered", info.Unique[0])
	}, dyingInstance(t, time.Second, func() *bridge.Event { return call },
		func(s *resolverStack) { s.publish(t, answered(call)) }))
	defer s.stop()
	s.awaitOnePop(t, "answered", info.Unique[1])
}

// TestResolver_CrashAfterMarkerSlowRestart: as
// TestResolver_CrashAfterMarkerThenAnswered, but the daemon comes back too
// late for the alerting event: its redelivery is older than the max event
// age and makes no pop. The answered call's connected event must pop it; it
// found the leg marked by the dead instance's claim and made none, so the
// call never popped at all.
func TestResolver_CrashAfterMarkerSlowRestart(t *testing.T) {
	defer goleak.VerifyNone(t)
	var info dataversetest.SeedInfo
	var call *bridge.Event
	s := startResolverStack(t, bridge.ResolverConfig{MaxEventAge: 2 * time.Second}, func(dv *dataversetest.Server) {
		info = dv.Seed(200, rand.New(rand.NewPCG(11, 12)))
		// Received 1.9 s ago: by its redelivery, after the 1 s ack wait,
		// it is older than the 2 s max event age, as after a slow restart.
		call = callEvent("late", info.Unique[0])
		call.ReceivedAt = bridge.NewTime(time.Now().Add(-1900 * time.Millisecond))
	}, dyingInstance(t, time.Second, func() *bridge.Event { return call },
		func(s *resolverStack) { s.publish(t, answered(call)) }))
	defer s.stop()
	s.awaitOnePop(t, "late", info.Unique[1])
}

// TestResolver_PublishOutlastsAckWait: a pop's publish fails for longer
// than the resolver consumer's ack wait (JetStream answering no publish
// for a few seconds, say while a stream leader is elected), and then
// recovers. The pop must arrive once, from a retry or the event's
// redelivery. It used to be lost: JetStream delivered the event again while
// the first handler was still retrying, the copy's handler found the leg
// being popped and acknowledged the event, and the first handler's request
// for redelivery came after that. Timings are the daemon's scaled down:
// an ack wait of 1 s, publish retries for 3 s, publishes failing for 3.5 s.
func TestResolver_PublishOutlastsAckWait(t *testing.T) {
	defer goleak.VerifyNone(t)
	var info dataversetest.SeedInfo
	failing := &failingPublisher{window: 3500 * time.Millisecond}
	s := startResolverStack(t, bridge.ResolverConfig{PublishTimeout: 3 * time.Second}, func(dv *dataversetest.Server) {
		info = dv.Seed(50, rand.New(rand.NewPCG(7, 8)))
	}, func(o *stackOptions) {
		o.consume = bus.ConsumeConfig{AckWait: time.Second}
		o.publisher = func(p bridge.Publisher) bridge.Publisher { failing.Publisher = p; return failing }
	})
	defer s.stop()
	s.publish(t, callEvent("flaky", info.Unique[0]))
	pops := s.awaitPops(t, 1, 10*time.Second)
	if p := pops["flaky"]; p == nil || p.Target.Action != bridge.ActionOpen {
		t.Fatalf("pops %v, want the call to open its record", pops)
	}
	if failed, last := failing.stats(); failed == 0 || last <= time.Second {
		t.Fatalf("publishes failed %d times, the last %v after the first; want failures past the ack wait (1s), or the test proves nothing", failed, last)
	}
	// Once: a later call's pop is the next one to arrive.
	s.publish(t, callEvent("sentinel", info.Unique[1]))
	if p := s.awaitPops(t, 1, 10*time.Second); p["sentinel"] == nil {
		t.Fatalf("next pop %v, want the sentinel's", p)
	}
}

// failingPublisher fails every publish for window from its first one.
type failingPublisher struct {
	bridge.Publisher
	window time.Duration

	mu     sync.Mutex
	first  time.Time
	failed int
	last   time.Duration // since first, of the last failed publish
}

func (p *failingPublisher) Publish(ctx context.Context, m bridge.Message) error {
	p.mu.Lock()
	now := time.Now()
	if p.first.IsZero() {
		p.first = now
	}
	fail := now.Sub(p.first) < p.window
	if fail {
		p.failed++
		p.last = now.Sub(p.first)
	}
	p.mu.Unlock()
	if fail {
		return errors.New("nats: no response from stream")
	}
	return p.Publisher.Publish(ctx, m)
}

func (p *failingPublisher) stats() (failed int, last time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed, p.last
}

// BenchmarkResolver_DataverseCacheHit: Handle with the real dataverse.Client
// as Directory answering from its cache; marker and publish are in-memory
// no-ops, so this is the resolver's own cost per pop.
func BenchmarkResolver_DataverseCacheHit(b *testing.B) {
	dv := dataversetest.New(dataversetest.Config{})
	dv.AddContact(dataversetest.Contact{FirstName: "Jane", LastName: "Doe", Telephone1: "(317) 555-0123"})
	if err := dv.Start(); err != nil {
		b.Fatal(err)
	}
	defer dv.Close()
	ec := dv.Config()
	dir, err := dataverse.New(dataverse.Config{URL: dv.URL(), ClientID: ec.ClientID, ClientSecret: ec.ClientSecret, TokenURL: dv.TokenURL()}, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	defer dir.Close()
	if recs, err := dir.Lookup(context.Background(), bridge.Key{Kind: bridge.KeyPhone, Value: "+13175550123"}); err != nil || len(recs) != 1 {
		b.Fatal(recs, err)
	}
	r, err := bridge.NewResolver(bridge.ResolverConfig{}, dir, nopStore{}, nopPub{}, bridge.NewHasher([]byte("0123456789abcdef")), zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	ev := callEvent("c1", "+13175550123")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		ev.Agent.ParticipantID = bridge.ParticipantID(fmt.Sprintf("p%d", i))
		if err := r.Handle(context.Background(), ev); err != nil {
			b.Fatal(err)
		}
	}
}

type nopStore struct{}

func (nopStore) MarkPop(context.Context, string, string) (bool, error)            { return true, nil }
func (nopStore) Epoch() string                                                    { return "" }
func (nopStore) LatestPop(context.Context, bridge.AgentID) (uint64, error)        { return 0, nil }
func (nopStore) FollowPops(context.Context, func(bridge.StoredPop), func()) error { return nil }
func (nopStore) ReplayPops(context.Context, bridge.AgentID, uint64, time.Time, func(bridge.StoredPop) error) error {
	return nil
}

type nopPub struct{}

func (nopPub) Publish(context.Context, bridge.Message) error { return nil }

// TestResolver_RedeliveryAfterPublishLogsOnePop: an instance dies after
// it published a pop and before it acknowledged the event. The restarted
// instance gets the event again; the marker holds its claim, so it
// publishes again and JetStream drops the copy. The agent gets one pop,
// and the log says so: one pop line and one count in pops_total.
func TestResolver_RedeliveryAfterPublishLogsOnePop(t *testing.T) {
	c := mustStartBus(t, t.TempDir())
	defer c.Close()
	var logs bytes.Buffer
	log := zerolog.New(&logs)
	e := &bridge.Event{
		ConversationID: "c-crash", Agent: bridge.AgentLeg{UserID: "u-crash", ParticipantID: "p-crash"},
		Media: bridge.MediaVoice, State: bridge.StateAlerting, Direction: bridge.DirectionInbound,
		Customer: bridge.Customer{Phone: "+13175550123"}, ReceivedAt: bridge.NewTime(time.Now()),
	}
	var popped float64
	for range 2 { // the instance before the crash, then the restarted one
		reg := prometheus.NewRegistry()
		r, err := bridge.NewResolver(bridge.ResolverConfig{Registerer: reg}, noRecords{}, c, c, bridge.NewHasher([]byte("0123456789abcdef")), log)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Handle(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		popped += counterSum(t, reg, "screenpop_bridge_resolver_pops_total")
	}
	n := 0
	if err := c.ReplayPops(context.Background(), "u-crash", 0, time.Time{}, func(bridge.StoredPop) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("%d pops stored, want 1", n)
	}
	if n := strings.Count(logs.String(), `"message":"pop"`); n != 1 {
		t.Fatalf("%d pop log lines for one pop stored, want 1:\n%s", n, logs.String())
	}
	if popped != 1 {
		t.Fatalf("pops_total %v over both instances, want 1", popped)
	}
}

// counterSum adds up every series of the counter name in reg.
func counterSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// noRecords is a directory that knows no one.
type noRecords struct{}

func (noRecords) Lookup(context.Context, bridge.Key) ([]bridge.Record, error) { return nil, nil }
func (noRecords) RecordURL(entity, id string) string                          { return "" }

// TestResolver_PopStoredDespiteFailedPublishIsLogged: a pop's first
// publish is stored but its acknowledgement is lost, and the retries fail
// until PublishTimeout (NATS unreachable for a few seconds). The handler
// used to log "pop not published; event will be redelivered" and remove
// the marker; the event's redelivery published the pop again, JetStream
// dropped the copy, and no pop line was logged. The agent got the pop: the
// log must say so, in one pop line, and pops_total must count it, or the
// on-call engineer reads a pop that was lost.
func TestResolver_PopStoredDespiteFailedPublishIsLogged(t *testing.T) {
	c := mustStartBus(t, t.TempDir())
	defer c.Close()
	var logs syncbuf.Buffer
	reg := prometheus.NewRegistry()
	pub := &lostAckPublisher{c: c, down: true}
	r, err := bridge.NewResolver(bridge.ResolverConfig{Registerer: reg, PublishTimeout: 200 * time.Millisecond}, noRecords{}, c, pub, bridge.NewHasher([]byte("0123456789abcdef")), zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	e := &bridge.Event{
		ConversationID: "c-lost-ack", Agent: bridge.AgentLeg{UserID: "u-lost-ack", ParticipantID: "p-lost-ack"},
		Media: bridge.MediaVoice, State: bridge.StateAlerting, Direction: bridge.DirectionInbound,
		Customer: bridge.Customer{Phone: "+13175550123"}, ReceivedAt: bridge.NewTime(time.Now()),
	}
	err = r.Handle(context.Background(), e)
	pub.setDown(false)
	if err != nil { // the handler asked for the event again: its redelivery
		if err := r.Handle(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	if err := c.ReplayPops(context.Background(), "u-lost-ack", 0, time.Time{}, func(bridge.StoredPop) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("%d pops stored, want 1 (or the test proves nothing)", n)
	}
	if got := strings.Count(logs.String(), `"message":"pop"`); got != 1 {
		t.Fatalf("%d pop log lines for the one pop the agent got, want 1:\n%s", got, logs.String())
	}
	if popped := counterSum(t, reg, "screenpop_bridge_resolver_pops_total"); popped != 1 {
		t.Fatalf("pops_total %v, want 1", popped)
	}
}

// lostAckPublisher stores its first message but reports it failed (the
// acknowledgement lost), then fails every publish while down.
type lostAckPublisher struct {
	c    *bus.Conn
	mu   sync.Mutex
	n    int
	down bool
}

func (p *lostAckPublisher) setDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
}

func (p *lostAckPublisher) Publish(ctx context.Context, m bridge.Message) error {
	_, err := p.PublishDedup(ctx, m)
	return err
}

func (p *lostAckPublisher) PublishDedup(ctx context.Context, m bridge.Message) (bool, error) {
	p.mu.Lock()
	p.n++
	first, down := p.n == 1, p.down
	p.mu.Unlock()
	if first {
		if _, err := p.c.PublishDedup(ctx, m); err != nil {
			return false, err
		}
		return false, errors.New("nats: timeout")
	}
	if down {
		return false, errors.New("nats: no responders available for request")
	}
	return p.c.PublishDedup(ctx, m)
}
