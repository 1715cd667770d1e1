package bus_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/bridge/bus/bustest"
	"github.com/screenpop/screenpop/internal/syncbuf"
)

// The stream and the marker bucket a daemon makes with the defaults are
// the ones docs/architecture.md (section 3) describes, and on which other
// services and on-call rely: the duplicate window is what makes a second
// bridge or a reconnect's republish harmless (and bounds MarkPop's own
// window), the max age is how long a consumer that was down can catch up,
// direct get is what a page's hello reads its latest pop with, and an
// ended leg's marker lives the marker grace (15 minutes) from its end.
func TestStart_StreamAndBucketAsDocumented(t *testing.T) {
	c := MustStart(t, bus.Config{Listen: "off"})
	ctx := context.Background()
	st, err := c.JetStream().Stream(ctx, "SCREENPOP")
	if err != nil {
		t.Fatalf("stream SCREENPOP: %v", err)
	}
	sc := st.CachedInfo().Config
	for _, d := range []struct {
		what      string
		got, want any
	}{
		{"subjects", strings.Join(sc.Subjects, ","), bridge.SubjectAll},
		{"retention", sc.Retention, jetstream.LimitsPolicy},
		{"max age", sc.MaxAge, 24 * time.Hour},
		{"duplicate window", sc.Duplicates, 2 * time.Minute},
		{"storage", sc.Storage, jetstream.FileStorage},
		{"replicas", sc.Replicas, 1},
		{"direct get", sc.AllowDirect, true},
		{"discard", sc.Discard, jetstream.DiscardOld},
	} {
		if d.got != d.want {
			t.Errorf("stream %s %v, want %v (docs/architecture.md, section 3)", d.what, d.got, d.want)
		}
	}
	kv, err := c.JetStream().KeyValue(ctx, bus.DefaultMarkerBucket)
	if err != nil {
		t.Fatalf("bucket %s: %v", bus.DefaultMarkerBucket, err)
	}
	ks, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ks.History() != 1 || ks.TTL() != 24*time.Hour || ks.LimitMarkerTTL() != time.Second {
		t.Errorf("bucket history %d, ttl %v, limit marker ttl %v; want 1, 24h, 1s", ks.History(), ks.TTL(), ks.LimitMarkerTTL())
	}
	if err := c.EndPop(ctx, "pop:c1:p1"); err != nil {
		t.Fatal(err)
	}
	ms, err := c.JetStream().Stream(ctx, "KV_"+bus.DefaultMarkerBucket)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ms.GetLastMsgForSubject(ctx, "$KV."+bus.DefaultMarkerBucket+".pop.c1.p1")
	if err != nil {
		t.Fatalf("the ended leg's marker: %v", err)
	}
	if ttl, err := time.ParseDuration(m.Header.Get(jetstream.MsgTTLHeader)); err != nil || ttl != 15*time.Minute {
		t.Errorf("an ended leg's marker has Nats-TTL %q, want 15m (the default marker grace)", m.Header.Get(jetstream.MsgTTLHeader))
	}
}

// gather reads one metric (counter or gauge) of reg.
func gather(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if m.GetCounter() != nil {
			return m.GetCounter().GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

// The bus metrics on-call reads (docs/operations.md, section 6, and the
// alert ScreenpopNATSReconnectLoop): published_total counts every publish
// JetStream acknowledged, duplicates included, duplicates_total the ones
// it dropped; connected is 0 while the connection is down, and
// reconnects_total counts each time it came back.
func TestConn_MetricsCountPublishesAndTheConnection(t *testing.T) {
	server := MustStart(t, bus.Config{})
	u, err := url.Parse(server.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	px := bustest.StartProxy(t, u.Host, nil, nil)
	reg := prometheus.NewRegistry()
	c, err := bus.Start(context.Background(), bus.Config{URL: px.URL(), Registerer: reg}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx := context.Background()
	m := pop("agent-metrics", "conv-metrics")
	for range 3 {
		if err := c.Publish(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if got := gather(t, reg, "screenpop_bus_published_total"); got != 3 {
		t.Errorf("screenpop_bus_published_total %g after 3 publishes of one id, want 3 (duplicates included)", got)
	}
	if got := gather(t, reg, "screenpop_bus_duplicates_total"); got != 2 {
		t.Errorf("screenpop_bus_duplicates_total %g after 3 publishes of one id, want 2", got)
	}
	if got := gather(t, reg, "screenpop_bus_connected"); got != 1 {
		t.Fatalf("screenpop_bus_connected %g while connected, want 1", got)
	}
	px.Down()
	waitFor(t, 10*time.Second, func() bool { return !c.Connected() })
	for deadline := time.Now().Add(5 * time.Second); gather(t, reg, "screenpop_bus_connected") != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("screenpop_bus_connected still 1 5s after the connection went down, want 0 (alert ScreenpopNATSReconnectLoop)")
		}
	}
	px.Up()
	waitFor(t, 15*time.Second, c.Connected)
	waitFor(t, 5*time.Second, func() bool { return gather(t, reg, "screenpop_bus_connected") == 1 })
	if got := gather(t, reg, "screenpop_bus_reconnects_total"); got != 1 {
		t.Errorf("screenpop_bus_reconnects_total %g after one reconnect, want 1", got)
	}
}

// An operator who narrows the stream's subjects by hand a second time, a
// while after the daemon put them back, gets them put back again: the
// guard is at most once a second (restoreSubjects), not once a run. Each
// time the daemon says so at warn, where on-call looks.
func TestConn_PublishPutsBackSubjectsNarrowedByHandAgain(t *testing.T) {
	var logs syncbuf.Buffer
	c, err := bus.Start(context.Background(), bus.Config{Listen: "off", DataDir: t.TempDir()}, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx := context.Background()
	narrow := func() {
		t.Helper()
		st, err := c.JetStream().Stream(ctx, c.StreamName())
		if err != nil {
			t.Fatal(err)
		}
		cfg := st.CachedInfo().Config
		cfg.Subjects = []string{"screenpop.events.>"}
		if _, err := c.JetStream().UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	stored := func(conv string) {
		t.Helper()
		var perr error
		for range 3 { // the resolver's retries: its event's redeliveries
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			perr = c.Publish(pctx, pop("agent-s", conv))
			cancel()
			if perr == nil {
				return
			}
		}
		t.Fatalf("a pop after the stream's subjects were narrowed by hand is not stored after 3 tries: %v", perr)
	}
	for i := range 2 {
		narrow()
		stored(fmt.Sprintf("conv-after-%d", i))
		time.Sleep(1500 * time.Millisecond) // past the guard's once a second
	}
	var warned int
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "the stream's settings were changed by hand") {
			if !strings.Contains(line, `"level":"warn"`) {
				t.Errorf("the hand edit is told below warn: %s", line)
			}
			warned++
		}
	}
	if warned != 2 {
		t.Fatalf("%d lines say the stream was edited, want 2 (one per edit):\n%s", warned, logs.String())
	}
}

// Every message an instance publishes carries its offset to the NATS
// server's clock in Screenpop-Clock-Offset, in milliseconds
// (docs/events.md): a consumer on another host moves receivedAt onto its
// clock with it.
func TestConn_PublishCarriesTheClockOffset(t *testing.T) {
	c := MustStart(t, bus.Config{Listen: "off"})
	sub, err := c.NATS().SubscribeSync("screenpop.pops.offset-agent")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := c.Publish(context.Background(), pop("offset-agent", "conv-offset")); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	v := m.Header.Get(bus.ClockOffsetHeader)
	if ms, err := strconv.ParseInt(v, 10, 64); err != nil || ms < -2000 || ms > 2000 {
		t.Fatalf("%s %q, want the embedded server's offset in ms (about 0)", bus.ClockOffsetHeader, v)
	}
}

// Every page resuming at once (a restart, a load balancer dropping every
// socket) replays its agent's pops: at most 64 of those replays hold a
// consumer at once per instance (docs/architecture.md, section 3), the rest
// wait their turn, well below nats-server's 1,000 consumers a stream.
func TestConn_ReplayPopsHoldsAtMost64Consumers(t *testing.T) {
	c := MustStart(t, bus.Config{Listen: "off"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const pages = 80
	for i := range pages {
		if err := c.Publish(ctx, pop(bridge.AgentID(fmt.Sprintf("agent-%d", i)), fmt.Sprintf("conv-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	release := make(chan struct{})
	var wg sync.WaitGroup
	for i := range pages {
		wg.Go(func() {
			err := c.ReplayPops(ctx, bridge.AgentID(fmt.Sprintf("agent-%d", i)), 0, time.Time{}, func(bridge.StoredPop) error {
				<-release // the page's socket is slow: the replay holds its consumer
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	st, err := c.JetStream().Stream(ctx, c.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	consumers := func() int {
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Consumers
	}
	waitFor(t, 20*time.Second, func() bool { return consumers() >= 64 })
	time.Sleep(time.Second) // the rest, were they not held back, would be made by now
	n := consumers()
	close(release)
	wg.Wait()
	if n != 64 {
		t.Fatalf("%d replay consumers at once, want 64", n)
	}
}

// An event whose handler fails on its last delivery is lost if it was to
// pop: docs/operations.md (section 5) lists `event given up after its
// last delivery` at error, where on-call's log alerts look.
func TestConn_ConsumeEventsGivingUpIsAnError(t *testing.T) {
	var logs syncbuf.Buffer
	c, err := bus.Start(context.Background(), bus.Config{Listen: "off", DataDir: t.TempDir()}, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- c.ConsumeEvents(ctx, bus.ConsumeConfig{Durable: "gives-up-loudly", MaxDeliver: 2}, func(context.Context, []byte) error {
			return errors.New("always fails")
		})
	}()
	waitFor(t, 5*time.Second, func() bool {
		_, err := c.JetStream().Consumer(context.Background(), c.StreamName(), "gives-up-loudly")
		return err == nil
	})
	publishEvent(t, c, "conv-doomed")
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(logs.String(), "event given up after its last delivery") })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "event given up after its last delivery") && !strings.Contains(line, `"level":"error"`) {
			t.Fatalf("an event given up is told below error: %s", line)
		}
	}
}

// An instance that hangs rather than dies (its connection stays open,
// nothing gets through) is handed events only until its pull requests to
// the resolver's consumer expire, 5 s at most (docs/architecture.md,
// "Failure of one instance"): the events stored after that go to the
// healthy instance at once, not to the hung one's pulls, to come back
// only after the ack wait, by when they are too old to pop.
func TestConn_ConsumeEventsHungInstanceGetsNoEventsOnceItsPullsExpire(t *testing.T) {
	server := MustStart(t, bus.Config{})
	u, err := url.Parse(server.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	gate, stalled := bustest.Stalling()
	px := bustest.StartProxy(t, u.Host, gate, gate)
	t.Cleanup(func() { stalled.Store(false) }) // before the proxy's cleanup
	hung, err := bus.Start(context.Background(), bus.Config{URL: px.URL()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hung.Close)
	healthy, err := bus.Start(context.Background(), bus.Config{URL: server.ClientURL()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(healthy.Close)
	cc := bus.ConsumeConfig{Durable: "hung-pair", AckWait: 30 * time.Second, DrainWithin: time.Second}
	h := startConsuming(t, hung, cc)
	ok := startConsuming(t, healthy, cc)
	waitFor(t, 10*time.Second, func() bool { return h.consuming.Load() && ok.consuming.Load() })
	time.Sleep(500 * time.Millisecond) // both instances' pulls are out
	stalled.Store(true)
	time.Sleep(8 * time.Second) // past the hung instance's pulls' expiry (5 s), with a margin
	const n = 10
	for i := range n {
		publishEvent(t, server, fmt.Sprintf("conv-hung-%d", i))
	}
	got := map[string]bool{}
	for deadline := time.After(10 * time.Second); len(got) < n; {
		select {
		case conv := <-ok.handled:
			got[conv] = true
		case <-deadline:
			t.Fatalf("the healthy instance handled %d of %d events stored 8 s after the other hung, within 10 s: the hung instance's pulls still took the rest", len(got), n)
		}
	}
}

// A handler's failure (NATS trouble during a pop: `pop not published;
// event will be redelivered`) has its event back after a short delay, not
// after the ack wait (10 s): five attempts must fit in the resolver's max
// event age (30 s), or the later ones are too old to pop. Each failure is
// counted in event_handler_errors_total (docs/operations.md, section 6).
func TestConn_ConsumeEventsRedeliversAFailedEventSoon(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := MustStart(t, bus.Config{Listen: "off", Registerer: reg})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	deliveries := make(chan time.Time, 4)
	done := make(chan error, 1)
	go func() {
		var calls atomic.Int32
		done <- c.ConsumeEvents(ctx, bus.ConsumeConfig{Durable: "fails-once"}, func(context.Context, []byte) error {
			deliveries <- time.Now()
			if calls.Add(1) == 1 {
				return errors.New("pop not published")
			}
			return nil
		})
	}()
	waitFor(t, 5*time.Second, func() bool {
		_, err := c.JetStream().Consumer(context.Background(), c.StreamName(), "fails-once")
		return err == nil
	})
	publishEvent(t, c, "conv-fails-once")
	first := <-deliveries
	select {
	case second := <-deliveries:
		if d := second.Sub(first); d > 3*time.Second {
			t.Errorf("a failed event came back after %v, want a short delay (0.5 s), not the ack wait", d.Round(time.Millisecond))
		}
	case <-time.After(15 * time.Second):
		t.Fatal("a failed event was not delivered again")
	}
	if got := gather(t, reg, "screenpop_bus_event_handler_errors_total"); got != 1 {
		t.Errorf("screenpop_bus_event_handler_errors_total %g after one failure, want 1", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// The resolver's consumer deleted while the daemon runs: ConsumeEvents says
// so (Consuming(false): /status resolver.consuming false until it is made
// again, then true) and counts it in consumer_recreated_total, behind the
// alert ScreenpopResolverConsumerLost (docs/operations.md).
func TestConn_ConsumeEventsTellsOfALostConsumer(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := MustStart(t, bus.Config{Listen: "off", Registerer: reg})
	var mu sync.Mutex
	var told []bool
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- c.ConsumeEvents(ctx, bus.ConsumeConfig{Durable: "lost-told", Consuming: func(b bool) {
			mu.Lock()
			told = append(told, b)
			mu.Unlock()
		}}, func(context.Context, []byte) error { return nil })
	}()
	history := func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprint(told)
	}
	waitFor(t, 10*time.Second, func() bool { return history() == "[true]" })
	if err := c.JetStream().DeleteConsumer(context.Background(), c.StreamName(), "lost-told"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for history() != "[true false true]" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if h := history(); h != "[true false true]" {
		t.Errorf("Consuming was told %s across the consumer's loss and making again, want [true false true]", h)
	}
	if got := gather(t, reg, "screenpop_bus_consumer_recreated_total"); got != 1 {
		t.Errorf("screenpop_bus_consumer_recreated_total %g after the consumer was deleted once, want 1", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Screenpop-Clock-Offset moves the times a publisher wrote onto the
// handler's clock: the publisher's offset to the server less the
// handler's own (docs/events.md). A publisher that sees the server 5 s
// ahead wrote times 5 s behind the server's: the handler, at offset 0,
// adds 5 s.
func TestConn_ConsumeEventsCorrectsThePublishersClock(t *testing.T) {
	server, publisher := behindSkewedServer(t, 5*time.Second, bus.Config{Listen: "127.0.0.1:0"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan time.Duration, 1)
	done := make(chan error, 1)
	go func() {
		done <- server.ConsumeEvents(ctx, bus.ConsumeConfig{Durable: "corrects"}, func(hctx context.Context, _ []byte) error {
			select {
			case got <- bridge.ClockCorrection(hctx):
			default:
			}
			return nil
		})
	}()
	waitFor(t, 5*time.Second, func() bool {
		_, err := server.JetStream().Consumer(context.Background(), server.StreamName(), "corrects")
		return err == nil
	})
	publishEvent(t, publisher, "conv-skewed-publisher")
	select {
	case d := <-got:
		if d < 4*time.Second || d > 6*time.Second {
			t.Errorf("clock correction %v for a publisher that sees the server 5s ahead, want about +5s", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the event was not handled")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// The resolver's consumer as docs/architecture.md (section 3) describes
// it with the defaults: a durable pull consumer of screenpop.events.>,
// explicit acks, ack wait 10 s (well inside the max event age, so that a
// dead instance's events are redelivered in time to pop), at most 5
// deliveries.
func TestConn_ConsumeEventsConsumerAsDocumented(t *testing.T) {
	c := MustStart(t, bus.Config{Listen: "off"})
	s := startConsuming(t, c, bus.ConsumeConfig{})
	waitFor(t, 10*time.Second, s.consuming.Load)
	cons, err := c.JetStream().Consumer(context.Background(), "SCREENPOP", bus.DefaultDurable)
	if err != nil {
		t.Fatalf("consumer %s: %v", bus.DefaultDurable, err)
	}
	cfg := cons.CachedInfo().Config
	filters := cfg.FilterSubjects
	if cfg.FilterSubject != "" {
		filters = append([]string{cfg.FilterSubject}, filters...)
	}
	if strings.Join(filters, ",") != bridge.SubjectEvents {
		t.Errorf("consumer filter %q, want %s", filters, bridge.SubjectEvents)
	}
	if cfg.Durable != bus.DefaultDurable || cfg.AckPolicy != jetstream.AckExplicitPolicy || cfg.AckWait != 10*time.Second || cfg.MaxDeliver != 5 {
		t.Errorf("consumer durable %q, ack %v, ack wait %v, max deliver %d; want %s, explicit, 10s, 5",
			cfg.Durable, cfg.AckPolicy, cfg.AckWait, cfg.MaxDeliver, bus.DefaultDurable)
	}
	s.cancel()
	if err := <-s.done; err != nil {
		t.Fatal(err)
	}
}

// A NATS server's clock a few seconds off this host's is told at start:
// beyond ±2 s one of them has no working NTP (docs/operations.md), and
// marker ages, replays and a new consumer's start all read the server's.
func TestConn_WarnsOfAServerClockThreeSecondsOff(t *testing.T) {
	var logs syncbuf.Buffer
	_, _ = behindSkewedServerLog(t, 3*time.Second, bus.Config{Listen: "127.0.0.1:0"}, zerolog.New(&logs))
	if !strings.Contains(logs.String(), "clock differs") {
		t.Fatalf("no warning for a server clock 3s ahead; log:\n%s", logs.String())
	}
}

// A marker removed because its pop could not be published (UnmarkPop)
// leaves nothing behind past the marker grace: the purge's own delete
// marker goes too, or each such leg would count in pop_markers (and in the
// embedded server's heap) for the bucket's 24 h, as a leg whose hang-up
// was never seen.
func TestConn_UnmarkPopLeavesNoMarkerBehind(t *testing.T) {
	c := MustStart(t, bus.Config{Listen: "off", MarkerGrace: 2 * time.Second})
	ctx := context.Background()
	if ok, err := c.MarkPop(ctx, "pop:cu:p1", "evt:cu:p1:voice:alerting"); err != nil || !ok {
		t.Fatalf("MarkPop = %v, %v", ok, err)
	}
	if err := c.UnmarkPop(ctx, "pop:cu:p1", "evt:cu:p1:voice:alerting"); err != nil {
		t.Fatal(err)
	}
	var st bus.Status
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if st = c.Status(ctx); st.Error == "" && st.Markers == 0 {
			return
		}
	}
	t.Fatalf("%d markers (error %q) 15 s after the only one was removed, with a marker grace of 2 s; want 0", st.Markers, st.Error)
}
