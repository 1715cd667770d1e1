package bus_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/bridge/bus/bustest"
	"github.com/screenpop/screenpop/internal/syncbuf"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// MustStart starts an embedded server on a free loopback port with its store
// in a temporary directory.
func MustStart(tb testing.TB, cfg bus.Config) *bus.Conn {
	tb.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.DataDir == "" {
		cfg.DataDir = tb.TempDir()
	}
	c, err := bus.Start(context.Background(), cfg, zerolog.Nop())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}

func pop(agent bridge.AgentID, conv string) bridge.Message {
	p := &bridge.Pop{ID: bridge.PopID(bridge.ConversationID(conv), "P1"), ConversationID: bridge.ConversationID(conv), AgentID: agent,
		Media: bridge.MediaVoice, State: bridge.StateAlerting, Target: bridge.Target{Action: bridge.ActionOpen, Entity: "contact", ID: "C1"}}
	m, err := bridge.EncodePop(p, time.Now())
	if err != nil {
		panic(err)
	}
	return m
}

func TestConn_Publish(t *testing.T) {
	c := MustStart(t, bus.Config{})
	ctx := context.Background()

	t.Run("EmbeddedServerListens", func(t *testing.T) {
		if c.ClientURL() == "" || c.ClientURL() == "nats://127.0.0.1:4222" {
			t.Fatalf("client url %q: want a free loopback port", c.ClientURL())
		}
		nc, err := nats.Connect(c.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		nc.Close()
	})

	t.Run("DropsDuplicateMsgID", func(t *testing.T) {
		sub, err := c.NATS().SubscribeSync("screenpop.pops.dup-agent")
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		m := pop("dup-agent", "conv-dup")
		for range 3 {
			if err := c.Publish(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		st := c.Status(ctx)
		if st.Messages != 1 {
			t.Fatalf("stream holds %d messages after 3 publishes of one id, want 1", st.Messages)
		}
		got, err := sub.NextMsg(time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if got.Header.Get("Nats-Msg-Id") != m.ID {
			t.Fatalf("Nats-Msg-Id %q, want %q", got.Header.Get("Nats-Msg-Id"), m.ID)
		}
	})
}

// The marker count in /status and /metrics is what on-call reads when the
// daemon's memory and GC cycles grow with the pops of the last day
// (docs/operations.md).
func TestConn_StatusCountsMarkers(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := MustStart(t, bus.Config{Listen: "off", Registerer: reg})
	ctx := context.Background()
	gauge := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "screenpop_bus_pop_markers" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no screenpop_bus_pop_markers in /metrics")
		return 0
	}
	// Each read is a JetStream request answered within a second or an
	// error; a loaded CI machine gets a few tries.
	counts := func(want uint64) {
		t.Helper()
		var st bus.Status
		var g float64
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if st, g = c.Status(ctx), gauge(); st.Error == "" && st.Markers == want && g == float64(want) {
				return
			}
		}
		t.Fatalf("markers %d (gauge %g), error %q; want %d and no error", st.Markers, g, st.Error, want)
	}
	counts(0)
	for _, id := range []string{"pop:conv-1:part-1", "pop:conv-2:part-1", "pop:conv-2:part-2", "pop:conv-1:part-1"} {
		if _, err := c.MarkPop(ctx, id, "evt"); err != nil {
			t.Fatal(err)
		}
	}
	counts(3) // three legs, one of them marked twice
	c.Close()
	if g := gauge(); !math.IsNaN(g) {
		t.Fatalf("gauge %g with NATS closed, want NaN (unknown), not a count", g)
	}
}

func TestConn_MarkPop(t *testing.T) {
	c := MustStart(t, bus.Config{Listen: "off"})
	ctx := context.Background()
	// Twenty handlers of the leg's events at once (instances of a
	// deployment): each may publish, as the marker is within the duplicate
	// window, and the pop is stored once.
	var stored atomic.Int32
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mayPublish, err := c.MarkPop(ctx, "pop:c0ffee-1:part-2", fmt.Sprintf("evt-%d", i))
			if err != nil || !mayPublish {
				t.Errorf("MarkPop = %v, %v; want true within the duplicate window", mayPublish, err)
				return
			}
			dup, err := c.PublishDedup(ctx, bridge.Message{Subject: bridge.PopSubject("agent-1"), ID: "pop:c0ffee-1:part-2", Data: []byte("{}")})
			if err != nil {
				t.Error(err)
			}
			if !dup {
				stored.Add(1)
			}
		}()
	}
	wg.Wait()
	if stored.Load() != 1 {
		t.Fatalf("%d of 20 concurrent publishes of one pop stored, want exactly 1", stored.Load())
	}
	t.Run("OddIDsAreHashed", func(t *testing.T) {
		for _, id := range []string{"pop:a b:c", "pop:ä:x", "pop::", ""} {
			if _, err := c.MarkPop(ctx, id, "evt"); err != nil {
				t.Errorf("MarkPop(%q): %v", id, err)
			}
		}
	})
	t.Run("Unmark", func(t *testing.T) {
		mark := func(id, claim string, want bool) {
			t.Helper()
			if got, err := c.MarkPop(ctx, id, claim); err != nil || got != want {
				t.Fatalf("MarkPop(%s, %s) = %v, %v; want %v", id, claim, got, err, want)
			}
		}
		unmark := func(id, claim string) {
			t.Helper()
			if err := c.UnmarkPop(ctx, id, claim); err != nil {
				t.Fatalf("UnmarkPop(%s, %s): %v", id, claim, err)
			}
		}
		claimOf := func(key string) string {
			t.Helper()
			kv, err := c.JetStream().KeyValue(ctx, bus.DefaultMarkerBucket)
			if err != nil {
				t.Fatal(err)
			}
			e, err := kv.Get(ctx, key)
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				return ""
			}
			if err != nil {
				t.Fatal(err)
			}
			return string(e.Value())
		}
		mark("pop:u1:p1", "evt-a", true)
		unmark("pop:u1:p1", "evt-b") // not the marker's claim: left alone
		if got := claimOf("pop.u1.p1"); got != "evt-a" {
			t.Fatalf("marker after another claim's UnmarkPop holds %q, want evt-a", got)
		}
		unmark("pop:u1:p1", "evt-a")
		if got := claimOf("pop.u1.p1"); got != "" {
			t.Fatalf("marker after its claim's UnmarkPop holds %q, want none", got)
		}
		mark("pop:u1:p1", "evt-u", true)
		if got := claimOf("pop.u1.p1"); got != "evt-u" {
			t.Fatalf("marker made again holds %q, want evt-u", got)
		}
		// A leg that ended after its marker was written stays ended.
		mark("pop:u2:p1", "evt-a", true)
		if err := c.EndPop(ctx, "pop:u2:p1"); err != nil {
			t.Fatal(err)
		}
		unmark("pop:u2:p1", "evt-a")
		if got, err := c.MarkPop(ctx, "pop:u2:p1", "evt-a"); got || !errors.Is(err, bridge.ErrLegEnded) {
			t.Fatalf("MarkPop of an ended leg after UnmarkPop = %v, %v; want false, ErrLegEnded", got, err)
		}
		unmark("pop:never:p1", "evt-a") // no marker: nothing to do
	})
	t.Run("WithinTheDuplicateWindow", func(t *testing.T) {
		// A marker whose write was stored but not acknowledged, or whose
		// writer died before publishing: the same event's next attempt may
		// publish, and so may another event of the leg (JetStream drops
		// its publish if the pop was stored after all).
		for _, step := range []struct {
			claim string
			want  bool
		}{{"evt:c9:p9:voice:alerting", true}, {"evt:c9:p9:voice:alerting", true}, {"evt:c9:p9:voice:connected", true}} {
			got, err := c.MarkPop(ctx, "pop:c9:p9", step.claim)
			if err != nil || got != step.want {
				t.Fatalf("MarkPop(%s) = %v, %v; want %v", step.claim, got, err, step.want)
			}
		}
	})
	t.Run("SameClaimOutsideTheDuplicateWindow", func(t *testing.T) {
		// Older than the stream's duplicate window, JetStream would keep a
		// second publish: the claim no longer counts.
		c := MustStart(t, bus.Config{Listen: "off", DuplicateWindow: 200 * time.Millisecond})
		if got, err := c.MarkPop(ctx, "pop:c8:p8", "evt-x"); err != nil || !got {
			t.Fatalf("first MarkPop = %v, %v", got, err)
		}
		time.Sleep(300 * time.Millisecond)
		if got, err := c.MarkPop(ctx, "pop:c8:p8", "evt-x"); err != nil || got {
			t.Fatalf("MarkPop with the same claim after the duplicate window = %v, %v; want false", got, err)
		}
	})
}

func TestConn_EndPop(t *testing.T) {
	c := MustStart(t, bus.Config{Listen: "off", MarkerGrace: 3 * time.Second})
	ctx := context.Background()
	mark := func(popID, claim string, want bool) {
		t.Helper()
		if got, err := c.MarkPop(ctx, popID, claim); err != nil || got != want {
			t.Fatalf("MarkPop(%s, %s) = %v, %v; want %v", popID, claim, got, err, want)
		}
	}
	markers := func() uint64 {
		t.Helper()
		st := c.Status(ctx)
		if st.Error != "" {
			t.Fatal(st.Error)
		}
		return st.Markers
	}
	// Leg c1 popped and ends, c2 popped and goes on, c3 ends unpopped.
	mark("pop:c1:p1", "evt:c1:p1:voice:alerting", true)
	mark("pop:c2:p1", "evt:c2:p1:voice:alerting", true)
	for _, id := range []string{"pop:c1:p1", "pop:c3:p1"} {
		if err := c.EndPop(ctx, id); err != nil {
			t.Fatalf("EndPop(%s): %v", id, err)
		}
	}
	// Until it expires, an ended leg's marker refuses every event of the
	// leg, even a redelivery of the event that popped it.
	for _, m := range [][2]string{{"pop:c1:p1", "evt:c1:p1:voice:alerting"}, {"pop:c3:p1", "evt:c3:p1:voice:connected"}} {
		if got, err := c.MarkPop(ctx, m[0], m[1]); got || !errors.Is(err, bridge.ErrLegEnded) {
			t.Fatalf("MarkPop(%s, %s) of an ended leg = %v, %v; want false, ErrLegEnded", m[0], m[1], got, err)
		}
	}
	if n := markers(); n != 3 {
		t.Fatalf("%d markers after two ends, want 3", n)
	}
	// The grace over, the ended legs' markers are gone, the live one stays.
	waitFor(t, 15*time.Second, func() bool { return markers() == 1 })
	mark("pop:c2:p1", "evt:c2:p1:voice:connected", true)      // live: not ErrLegEnded
	mark("pop:c1:p1", "evt:c1:p1:voice:alerting:again", true) // the key is free again
}

func TestStart_UpgradesAnOlderMarkerBucket(t *testing.T) {
	// A bucket made by an earlier screenpopd (no per-key TTLs), on a
	// server the daemon reaches as an external one.
	srv := MustStart(t, bus.Config{})
	ctx := context.Background()
	old, err := srv.JetStream().CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "older-pops", TTL: 24 * time.Hour, History: 1, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Create(ctx, "pop.c1.p1", []byte("evt:c1:p1:voice:alerting")); err != nil {
		t.Fatal(err)
	}
	c, err := bus.Start(ctx, bus.Config{URL: srv.ClientURL(), MarkerBucket: "older-pops", MarkerGrace: time.Second}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.MarkPop(ctx, "pop:c1:p1", "evt:c1:p1:voice:connected"); err != nil {
		t.Fatalf("MarkPop of a leg the older bucket holds: %v", err)
	}
	if e, err := old.Get(ctx, "pop.c1.p1"); err != nil || string(e.Value()) != "evt:c1:p1:voice:alerting" {
		t.Fatalf("the older bucket's marker after MarkPop: %v; want it kept", err)
	}
	if err := c.EndPop(ctx, "pop:c1:p1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool {
		_, err := old.Get(ctx, "pop.c1.p1")
		return errors.Is(err, jetstream.ErrKeyNotFound)
	})
}

func TestConn_ReplayPops(t *testing.T) {
	c := MustStart(t, bus.Config{Listen: "off"})
	ctx := context.Background()
	var seqs []uint64
	for i := range 5 {
		for _, agent := range []bridge.AgentID{"agent-a", "agent-b"} {
			if err := c.Publish(ctx, pop(agent, fmt.Sprintf("conv-%d", i))); err != nil {
				t.Fatal(err)
			}
		}
		latest, err := c.LatestPop(ctx, "agent-a")
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, latest)
	}
	collect := func(after uint64, since time.Time) []uint64 {
		var got []uint64
		err := c.ReplayPops(ctx, "agent-a", after, since, func(p bridge.StoredPop) error {
			if p.Agent != "agent-a" {
				t.Errorf("replayed a pop of %q", p.Agent)
			}
			got = append(got, p.Seq)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := collect(seqs[1], time.Now().Add(-time.Minute)); fmt.Sprint(got) != fmt.Sprint(seqs[2:]) {
		t.Fatalf("replay after %d = %v, want %v", seqs[1], got, seqs[2:])
	}
	if got := collect(0, time.Time{}); fmt.Sprint(got) != fmt.Sprint(seqs) {
		t.Fatalf("replay of all = %v, want %v", got, seqs)
	}
	if got := collect(0, time.Now().Add(time.Hour)); len(got) != 0 {
		t.Fatalf("replay since the future = %v, want none", got)
	}
	if got := collect(seqs[4], time.Time{}); len(got) != 0 {
		t.Fatalf("replay after the newest = %v, want none", got)
	}
	if n, err := c.LatestPop(ctx, "nobody"); err != nil || n != 0 {
		t.Fatalf("LatestPop(nobody) = %d, %v", n, err)
	}
}

func TestConn_FollowPops(t *testing.T) {
	c := MustStart(t, bus.Config{Listen: "off"})
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan bridge.StoredPop, 10)
	done := make(chan error)
	live := make(chan struct{})
	// A pop stored before the subscription is not followed (it starts at
	// new pops); the first one stored once it is live is.
	if err := c.Publish(context.Background(), pop("agent-f", "conv-before")); err != nil {
		t.Fatal(err)
	}
	go func() { done <- c.FollowPops(ctx, func(p bridge.StoredPop) { got <- p }, func() { close(live) }) }()
	select {
	case <-live:
	case <-time.After(5 * time.Second):
		t.Fatal("FollowPops not live within 5s")
	}
	if err := c.Publish(context.Background(), pop("agent-f", "conv-after")); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if p.Agent != "agent-f" || p.Seq == 0 {
			t.Fatalf("followed pop %+v", p)
		}
		d, err := bridge.DecodePop(p.Data)
		if err != nil {
			t.Fatal(err)
		}
		if d.ConversationID != "conv-after" {
			t.Fatalf("first followed pop is of %s, want conv-after", d.ConversationID)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the pop stored after live was not followed within 5s")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A NATS that lost its JetStream store under a running daemon loses the
// stream and the marker bucket together: FollowPops notices (its consumer
// is gone), creates both again and ends with an error so that push
// follows the new stream; events can be marked again at once.
func TestConn_FollowPopsAfterTheStoreIsLost(t *testing.T) {
	c := MustStart(t, bus.Config{Listen: "off"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	live := make(chan struct{})
	go func() { done <- c.FollowPops(ctx, func(bridge.StoredPop) {}, func() { close(live) }) }()
	select {
	case <-live:
	case <-time.After(5 * time.Second):
		t.Fatal("FollowPops not live within 5s")
	}
	epoch := c.Epoch()
	js := c.JetStream()
	// A lost store loses both at once; the bucket goes first here, so that
	// a recheck the stream's loss sets off finds it gone too.
	for _, name := range []string{"KV_" + bus.DefaultMarkerBucket, c.StreamName()} {
		if err := js.DeleteStream(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("FollowPops ended without an error after its stream was recreated")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("FollowPops did not notice the lost stream within 30s")
	}
	if c.Epoch() == epoch {
		t.Fatal("the epoch did not change with the new stream")
	}
	mctx, mcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer mcancel()
	if created, err := c.MarkPop(mctx, "pop:c-lost:p-lost", "evt:claim"); err != nil || !created {
		t.Fatalf("MarkPop after the store was lost: %v, %v; want a new marker", created, err)
	}
}

func TestConn_ConsumeEvents(t *testing.T) {
	c := MustStart(t, bus.Config{Listen: "off"})
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	seen := map[string]int{}
	var failedOnce atomic.Bool
	done := make(chan error)
	go func() {
		done <- c.ConsumeEvents(ctx, bus.ConsumeConfig{Durable: "test"}, func(_ context.Context, data []byte) error {
			e, err := bridge.DecodeEvent(data)
			if err != nil {
				return err
			}
			if e.ConversationID == "conv-3" && failedOnce.CompareAndSwap(false, true) {
				return errors.New("first attempt fails")
			}
			mu.Lock()
			seen[string(e.ConversationID)]++
			mu.Unlock()
			return nil
		})
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }
	// The durable starts at new events; wait for it to exist before publishing.
	waitFor(t, 5*time.Second, func() bool {
		_, err := c.JetStream().Consumer(context.Background(), c.StreamName(), "test")
		return err == nil
	})
	for i := range 10 {
		e := &bridge.Event{ConversationID: bridge.ConversationID(fmt.Sprintf("conv-%d", i)), Agent: bridge.AgentLeg{UserID: "agent-c", ParticipantID: "P1"},
			Media: bridge.MediaVoice, State: bridge.StateAlerting}
		m, err := bridge.EncodeEvent(e, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Publish(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, func() bool { return count() == 10 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !failedOnce.Load() {
		t.Fatal("the failing handler never ran")
	}
}

func waitFor(tb testing.TB, d time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("condition not met within %v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func publishEvent(t *testing.T, c *bus.Conn, conv string) {
	t.Helper()
	e := &bridge.Event{ConversationID: bridge.ConversationID(conv), Agent: bridge.AgentLeg{UserID: "agent-c", ParticipantID: "P1"},
		Media: bridge.MediaVoice, State: bridge.StateAlerting}
	m, err := bridge.EncodeEvent(e, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

func TestConn_ConsumeEventsGivesUp(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := MustStart(t, bus.Config{Listen: "off", Registerer: reg})
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int32
	done := make(chan error)
	go func() {
		done <- c.ConsumeEvents(ctx, bus.ConsumeConfig{Durable: "gives-up", MaxDeliver: 2}, func(context.Context, []byte) error {
			calls.Add(1)
			return errors.New("always fails")
		})
	}()
	waitFor(t, 5*time.Second, func() bool {
		_, err := c.JetStream().Consumer(context.Background(), c.StreamName(), "gives-up")
		return err == nil
	})
	publishEvent(t, c, "conv-doomed")
	given := func() float64 {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "screenpop_bus_events_given_up_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		return -1
	}
	waitFor(t, 10*time.Second, func() bool { return given() == 1 })
	if n := calls.Load(); n != 2 {
		t.Fatalf("handler ran %d times, want MaxDeliver (2)", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestConn_ConsumeEventsKeepsHandledEventsInProgress: a handler that
// outlasts the ack wait three times over is not handed its event again
// while it works (its copy's handler could acknowledge the event before the
// first one fails), and a handler that then fails still gets its event
// redelivered.
func TestConn_ConsumeEventsKeepsHandledEventsInProgress(t *testing.T) {
	const ackWait = 500 * time.Millisecond
	c := MustStart(t, bus.Config{Listen: "off"})
	ctx, cancel := context.WithCancel(context.Background())
	var calls, running atomic.Int32
	overlapped := make(chan int32, 16)
	handled := make(chan error, 16)
	done := make(chan error)
	go func() {
		done <- c.ConsumeEvents(ctx, bus.ConsumeConfig{Durable: "slow", AckWait: ackWait}, func(hctx context.Context, _ []byte) error {
			n := calls.Add(1)
			if r := running.Add(1); r > 1 {
				overlapped <- n
			}
			defer running.Add(-1)
			if n > 1 {
				return nil // the redelivery the failure asked for
			}
			select {
			case <-time.After(3 * ackWait): // slow work, a publish being retried
			case <-hctx.Done():
				return hctx.Err()
			}
			err := errors.New("publish failed for good")
			handled <- err
			return err
		})
	}()
	waitFor(t, 5*time.Second, func() bool {
		_, err := c.JetStream().Consumer(context.Background(), c.StreamName(), "slow")
		return err == nil
	})
	publishEvent(t, c, "conv-slow")
	select {
	case <-handled:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow handler did not finish")
	}
	waitFor(t, 5*time.Second, func() bool { return calls.Load() == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(overlapped) > 0 {
		t.Fatalf("delivery %d began while an earlier one was still being handled", <-overlapped)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("handler ran %d times, want 2: the slow one and the redelivery its failure asked for", n)
	}
}

func TestConn_ConsumeEventsStopsWithinDrain(t *testing.T) {
	c := MustStart(t, bus.Config{Listen: "off"})
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{}, 16)
	done := make(chan error)
	go func() {
		done <- c.ConsumeEvents(ctx, bus.ConsumeConfig{Durable: "drain", Workers: 1, DrainWithin: 300 * time.Millisecond}, func(hctx context.Context, _ []byte) error {
			started <- struct{}{}
			<-hctx.Done() // a handler that would run for ever: only its context stops it
			return hctx.Err()
		})
	}()
	waitFor(t, 5*time.Second, func() bool {
		_, err := c.JetStream().Consumer(context.Background(), c.StreamName(), "drain")
		return err == nil
	})
	for i := range 4 { // one runs, the consume loop waits on the others
		publishEvent(t, c, fmt.Sprintf("conv-slow-%d", i))
	}
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("no handler started")
	}
	stop := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ConsumeEvents still running 5s after its context ended (DrainWithin 300ms)")
	}
	if len(started) > 0 {
		t.Errorf("%d handlers started after shutdown began", len(started))
	}
	t.Logf("stopped %v after cancel", time.Since(stop))
}

// Events already pulled into the subscription's buffer when the resolver
// stops are handed back at once, not left for their ack wait: after a
// restart they would come back that much older (the max event age is only
// three ack waits).
func TestConn_ConsumeEventsHandsBackBufferedEventsAtStop(t *testing.T) {
	c := MustStart(t, bus.Config{Listen: "off"})
	cc := bus.ConsumeConfig{Durable: "hand-back", Workers: 16, AckWait: time.Minute, DrainWithin: 300 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{}, 16)
	done := make(chan error)
	go func() {
		done <- c.ConsumeEvents(ctx, cc, func(hctx context.Context, _ []byte) error {
			started <- struct{}{}
			<-hctx.Done()
			return hctx.Err()
		})
	}()
	waitFor(t, 5*time.Second, func() bool {
		_, err := c.JetStream().Consumer(context.Background(), c.StreamName(), cc.Durable)
		return err == nil
	})
	const n = 64 // 16 run, the consume loop waits on one, the rest are in its buffer
	for i := range n {
		publishEvent(t, c, fmt.Sprintf("conv-buffered-%d", i))
	}
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("no handler started")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// The next start gets every one of them well inside the ack wait.
	var mu sync.Mutex
	seen := map[string]bool{}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	done2 := make(chan error, 1)
	go func() {
		done2 <- c.ConsumeEvents(ctx2, cc, func(_ context.Context, data []byte) error {
			e, err := bridge.DecodeEvent(data)
			if err != nil {
				return err
			}
			mu.Lock()
			seen[string(e.ConversationID)] = true
			mu.Unlock()
			return nil
		})
	}()
	waitFor(t, 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == n })
	cancel2()
	if err := <-done2; err != nil {
		t.Fatal(err)
	}
}

func TestConn_ConsumeEventsFiltersSubjects(t *testing.T) {
	c := MustStart(t, bus.Config{Listen: "off"})
	seen := make(chan string, 16) // conversation/state
	consume := func(subjects []string) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() {
			done <- c.ConsumeEvents(ctx, bus.ConsumeConfig{Durable: "filtered", Subjects: subjects}, func(_ context.Context, data []byte) error {
				e, err := bridge.DecodeEvent(data)
				if err != nil {
					return err
				}
				seen <- string(e.ConversationID) + "/" + string(e.State)
				return nil
			})
		}()
		// Running with these subjects: the durable of an earlier call
		// exists already, so wait for its update and for a pull request.
		waitFor(t, 5*time.Second, func() bool {
			cons, err := c.JetStream().Consumer(context.Background(), c.StreamName(), "filtered")
			if err != nil {
				return false
			}
			info := cons.CachedInfo()
			return slices.Equal(info.Config.FilterSubjects, subjects) && info.NumWaiting > 0
		})
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
	}
	// The durable of a daemon that consumed only the states that pop, then
	// filtered to one state, then the resolver's: updated in place each time.
	consume([]string{"screenpop.events.*.alerting.*", "screenpop.events.*.dialing.*", "screenpop.events.*.connected.*"})()
	publish := func(i int, st bridge.State) {
		t.Helper()
		e := &bridge.Event{ConversationID: bridge.ConversationID(fmt.Sprintf("conv-f%d", i)), Agent: bridge.AgentLeg{UserID: "agent-f", ParticipantID: "P1"}, Media: bridge.MediaVoice, State: st}
		m, err := bridge.EncodeEvent(e, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Publish(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	next := func() string {
		t.Helper()
		select {
		case got := <-seen:
			return got
		case <-time.After(5 * time.Second):
			t.Fatal("no event consumed within 5s")
			return ""
		}
	}
	stop := consume([]string{"screenpop.events.*.connected.*"})
	// Stream order: alerting, disconnected, connected: only connected is
	// the filter's.
	for i, st := range []bridge.State{bridge.StateAlerting, bridge.StateDisconnected, bridge.StateConnected} {
		publish(i, st)
	}
	if got := next(); got != "conv-f2/connected" {
		t.Fatalf("consumed %s, want only conv-f2/connected", got)
	}
	stop()
	stop = consume(bridge.ResolverSubjects)
	defer stop()
	// The resolver's consumer gets disconnected events: they end markers.
	publish(3, bridge.StateDisconnected)
	if got := next(); got != "conv-f3/disconnected" {
		t.Fatalf("the resolver's consumer got %s first, want conv-f3/disconnected, published after its update", got)
	}
}

// A durable consumer deleted from under the resolver (by hand, or lost in an
// incident on an external cluster) is created again, so events published
// afterwards pop; without it nothing would pop again while the daemon
// looked healthy. It starts at the newest event this instance was given:
// that one comes again (the resolver's pop marker makes it harmless), the
// ones before it do not.
func TestConn_ConsumeEventsRecreatesALostConsumer(t *testing.T) {
	var logs syncbuf.Buffer
	c, err := bus.Start(context.Background(), bus.Config{Listen: "off", DataDir: t.TempDir()}, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	seen, stop := consumeConversations(t, c, "lost")
	next := func(want string) {
		t.Helper()
		select {
		case got := <-seen:
			if got != want {
				t.Fatalf("consumed %s, want %s", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s not consumed within 5s", want)
		}
	}
	waitFor(t, 5*time.Second, pulling(c, "lost"))
	publishEvent(t, c, "conv-older")
	next("conv-older")
	publishEvent(t, c, "conv-newest")
	next("conv-newest")

	if err := c.JetStream().DeleteConsumer(context.Background(), c.StreamName(), "lost"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return strings.Contains(logs.String(), "the resolver's consumer was lost") })
	waitFor(t, 5*time.Second, pulling(c, "lost"))
	publishEvent(t, c, "conv-after")
	nextSet(t, seen, "conv-newest", "conv-after")
	select {
	case got := <-seen:
		t.Fatalf("consumed %s again", got)
	case <-time.After(200 * time.Millisecond):
	}
	stop()
}

// nextSet reads len(want) conversation ids from seen, in any order (handlers
// run at once), and fails unless they are want.
func nextSet(t *testing.T, seen <-chan string, want ...string) {
	t.Helper()
	var got []string
	for range want {
		select {
		case g := <-seen:
			got = append(got, g)
		case <-time.After(10 * time.Second):
			t.Fatalf("consumed %q, want %q: the rest did not come", got, want)
		}
	}
	slices.Sort(got)
	w := slices.Sorted(slices.Values(want))
	if !slices.Equal(got, w) {
		t.Fatalf("consumed %q, want %q", got, w)
	}
}

// consumeConversations runs ConsumeEvents on durable with a handler that
// sends each event's conversation id; stop ends it and checks its error. A
// durable made anew starts a minute back, as the resolver's does with its
// max event age.
func consumeConversations(t *testing.T, c *bus.Conn, durable string) (seen <-chan string, stop func()) {
	ch := make(chan string, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- c.ConsumeEvents(ctx, bus.ConsumeConfig{Durable: durable, Since: time.Minute}, func(_ context.Context, data []byte) error {
			e, err := bridge.DecodeEvent(data)
			if err != nil {
				return err
			}
			ch <- string(e.ConversationID)
			return nil
		})
	}()
	return ch, func() {
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// pulling reports whether durable exists and has a pull waiting.
func pulling(c *bus.Conn, durable string) func() bool {
	return func() bool {
		cons, err := c.JetStream().Consumer(context.Background(), c.StreamName(), durable)
		return err == nil && cons.CachedInfo().NumWaiting > 0
	}
}

// behindCutProxy starts an embedded server and a second connection to it
// through a proxy whose Cut drops the connection.
func behindCutProxy(t *testing.T) (server, client *bus.Conn, px *bustest.Proxy) {
	server = MustStart(t, bus.Config{})
	u, err := url.Parse(server.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	px = bustest.StartProxy(t, u.Host, nil, nil)
	client, err = bus.Start(context.Background(), bus.Config{URL: px.URL()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	return server, client, px
}

// A pop stored by another instance while this one's connection was down
// is still followed once it is back, even before it has followed any pop:
// the client rebuilds the follow consumer after the reconnect, and a
// consumer of "new" pops would start after it.
func TestConn_FollowPopsAcrossAReconnect(t *testing.T) {
	server, follower, px := behindCutProxy(t)
	got := make(chan string, 8)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	live := make(chan struct{})
	go func() {
		_ = follower.FollowPops(ctx, func(p bridge.StoredPop) { got <- string(p.Agent) }, func() { close(live) })
	}()
	<-live
	px.Cut()
	waitFor(t, 5*time.Second, func() bool { return !follower.NATS().IsConnected() })
	if err := server.Publish(context.Background(), pop("agent-gap", "conv-gap")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { return follower.NATS().IsConnected() })
	select {
	case a := <-got:
		if a != "agent-gap" {
			t.Fatalf("followed a pop of %s first, want agent-gap's", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the pop stored during the gap was not followed")
	}
}

// A follow consumer deleted under FollowPops (by an admin tidying up, or a
// server that lost it) is made again after the last pop it delivered: the
// pops stored after it went are followed, in order, none twice, and
// FollowPops goes on.
func TestConn_FollowPopsAfterItsConsumerIsDeleted(t *testing.T) {
	c := MustStart(t, bus.Config{Listen: "off"})
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan string, 10)
	done := make(chan error, 1)
	live := make(chan struct{})
	go func() {
		done <- c.FollowPops(ctx, func(p bridge.StoredPop) {
			d, err := bridge.DecodePop(p.Data)
			if err != nil {
				t.Error(err)
				return
			}
			got <- string(d.ConversationID)
		}, func() { close(live) })
	}()
	<-live
	next := func(want string) {
		t.Helper()
		select {
		case conv := <-got:
			if conv != want {
				t.Fatalf("followed the pop of %s, want %s", conv, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the pop of %s was not followed within 10s", want)
		}
	}
	if err := c.Publish(context.Background(), pop("agent-d", "conv-1")); err != nil {
		t.Fatal(err)
	}
	next("conv-1")
	st, err := c.JetStream().Stream(context.Background(), c.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	deleted := 0
	for name := range st.ConsumerNames(context.Background()).Name() {
		if err := c.JetStream().DeleteConsumer(context.Background(), c.StreamName(), name); err != nil {
			t.Fatal(err)
		}
		deleted++
	}
	if deleted != 1 {
		t.Fatalf("deleted %d consumers, want FollowPops' one", deleted)
	}
	for _, conv := range []string{"conv-2", "conv-3"} {
		if err := c.Publish(context.Background(), pop("agent-d", conv)); err != nil {
			t.Fatal(err)
		}
	}
	next("conv-2")
	next("conv-3")
	select {
	case conv := <-got:
		t.Fatalf("followed the pop of %s once more", conv)
	case err := <-done:
		t.Fatalf("FollowPops ended: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// The embedded server's own lines carry component=nats-server once: a JSON
// object with a key twice is refused by some log pipelines.
func TestStart_ServerLinesHaveOneComponent(t *testing.T) {
	var logs syncbuf.Buffer
	c, err := bus.Start(context.Background(), bus.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir()}, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	n := 0
	for _, l := range strings.Split(logs.String(), "\n") {
		if !strings.Contains(l, `"nats-server"`) {
			continue
		}
		n++
		if strings.Count(l, `"component"`) != 1 {
			t.Errorf("log line with component twice: %s", l)
		}
	}
	if n == 0 {
		t.Fatal("no nats-server line logged: the test checks nothing")
	}
}

// An admin whose NATS port is taken (a second daemon, a nats-server left
// running) is told so by the start-up error itself, with the OS's reason.
func TestStart_NATSAddressInUseIsNamed(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	c, err := bus.Start(context.Background(), bus.Config{Listen: taken.Addr().String(), DataDir: t.TempDir()}, zerolog.Nop())
	if err == nil {
		c.Close()
		t.Fatal("started on an address in use")
	}
	for _, want := range []string{"address already in use", "SCREENPOP_NATS_LISTEN"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// The same when the consumer goes while this instance is cut off from
// NATS: its pulls then find no responder, and nothing says "deleted". An
// event stored while no consumer existed still pops: the consumer made
// again starts at the newest event this instance was given (which comes
// once more), not at new ones.
func TestConn_ConsumeEventsRecreatesAConsumerLostWhileDisconnected(t *testing.T) {
	server, c, px := behindCutProxy(t)
	seen, stop := consumeConversations(t, c, "cutoff")
	next := func(want, why string) {
		t.Helper()
		select {
		case got := <-seen:
			if got != want {
				t.Fatalf("consumed %s, want %s", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s was not consumed: %s", want, why)
		}
	}
	waitFor(t, 5*time.Second, pulling(server, "cutoff"))
	publishEvent(t, server, "conv-before")
	next("conv-before", "the consumer does not work")
	px.Cut()
	waitFor(t, 5*time.Second, func() bool { return !c.NATS().IsConnected() })
	if err := server.JetStream().DeleteConsumer(context.Background(), server.StreamName(), "cutoff"); err != nil {
		t.Fatal(err)
	}
	publishEvent(t, server, "conv-gap")
	waitFor(t, 10*time.Second, func() bool { return c.NATS().IsConnected() })
	// The two may be handled at once, in either order.
	nextSet(t, seen, "conv-before", "conv-gap")
	publishEvent(t, server, "conv-cutoff")
	next("conv-cutoff", "an event published after the reconnect was not consumed: the lost consumer was not made again")
	stop()
}

// A durable missing at the start (deleted while no instance ran) starts
// Since back: an event stored meanwhile that is young enough still pops.
// With Since 0 it starts at new events, as before Since existed.
func TestConn_ConsumeEventsNewDurableStartsSinceBack(t *testing.T) {
	c := MustStart(t, bus.Config{Listen: "off"})
	publishEvent(t, c, "conv-while-down")
	seen, stop := consumeConversations(t, c, "since")
	select {
	case got := <-seen:
		if got != "conv-while-down" {
			t.Fatalf("consumed %s, want conv-while-down", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an event stored a moment before the durable was made was not consumed")
	}
	stop()

	// Since 0: the event already stored is not consumed; one published
	// once the durable exists is.
	ch := make(chan string, 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- c.ConsumeEvents(ctx, bus.ConsumeConfig{Durable: "new-only"}, func(_ context.Context, data []byte) error {
			e, err := bridge.DecodeEvent(data)
			if err != nil {
				return err
			}
			ch <- string(e.ConversationID)
			return nil
		})
	}()
	waitFor(t, 5*time.Second, pulling(c, "new-only"))
	publishEvent(t, c, "conv-new")
	if got := <-ch; got != "conv-new" {
		t.Fatalf("with Since 0 consumed %s first, want conv-new", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A durable made anew starts no later than the stream's last message:
// Since back is this host's clock, the stored times the NATS server's, and
// with the server's clock behind by more than Since every new event would
// otherwise come before the start and be skipped. A Since shorter than the
// time since the last event stands for such a skew here.
func TestConn_ConsumeEventsNewDurableStartsNoLaterThanTheLastMessage(t *testing.T) {
	c := MustStart(t, bus.Config{Listen: "off"})
	publishEvent(t, c, "conv-last")
	time.Sleep(20 * time.Millisecond)
	ch := make(chan string, 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- c.ConsumeEvents(ctx, bus.ConsumeConfig{Durable: "skewed", Since: time.Millisecond}, func(_ context.Context, data []byte) error {
			e, err := bridge.DecodeEvent(data)
			if err != nil {
				return err
			}
			ch <- string(e.ConversationID)
			return nil
		})
	}()
	select {
	case got := <-ch:
		if got != "conv-last" {
			t.Fatalf("consumed %s, want conv-last", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream's last message, stored before the start by this host's clock, was not consumed")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// JetStream refuses to change where a durable starts. An existing one
// (made by an earlier version at new events, or by this one Since back)
// keeps its start, so that a restart does not fail on it, and resumes
// where it stopped.
func TestConn_ConsumeEventsKeepsAnExistingDurablesStart(t *testing.T) {
	c := MustStart(t, bus.Config{Listen: "off"})
	if _, err := c.JetStream().CreateConsumer(context.Background(), c.StreamName(), jetstream.ConsumerConfig{
		Durable: "older", DeliverPolicy: jetstream.DeliverNewPolicy, AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatal(err)
	}
	// run stores an event (one the stream's duplicate window does not
	// drop), starts the resolver's consumer on durable and wants the events
	// it has not handled yet, then checks where the durable starts.
	n := 0
	run := func(durable string, policy jetstream.DeliverPolicy, earlier ...string) {
		t.Helper()
		conv := fmt.Sprintf("conv-%s-%d", durable, n)
		n++
		publishEvent(t, c, conv)
		seen, stop := consumeConversations(t, c, durable)
		nextSet(t, seen, append(earlier, conv)...)
		stop()
		cons, err := c.JetStream().Consumer(context.Background(), c.StreamName(), durable)
		if err != nil {
			t.Fatal(err)
		}
		if got := cons.CachedInfo().Config.DeliverPolicy; got != policy {
			t.Fatalf("%s: deliver policy %v, want %v", durable, got, policy)
		}
	}
	run("older", jetstream.DeliverNewPolicy)
	run("older", jetstream.DeliverNewPolicy)
	// Made anew a minute back: it gets the events stored before it, too.
	run("since", jetstream.DeliverByStartTimePolicy, "conv-older-0", "conv-older-1")
	run("since", jetstream.DeliverByStartTimePolicy)
}

// After the consumer is lost, a shutdown still waits for the handlers in
// flight and gives them DrainWithin, as it does otherwise.
func TestConn_ConsumeEventsDrainsAfterALostConsumer(t *testing.T) {
	c := MustStart(t, bus.Config{Listen: "off"})
	started, release := make(chan struct{}), make(chan struct{})
	var cutShort atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- c.ConsumeEvents(ctx, bus.ConsumeConfig{Durable: "drained", DrainWithin: 5 * time.Second}, func(hctx context.Context, _ []byte) error {
			close(started)
			select {
			case <-release:
			case <-hctx.Done():
				cutShort.Store(true)
			}
			return nil
		})
	}()
	waitFor(t, 5*time.Second, pulling(c, "drained"))
	publishEvent(t, c, "conv-drained")
	<-started
	// The stream goes, and the consumer with it: it cannot be made again.
	if err := c.JetStream().DeleteStream(context.Background(), c.StreamName()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // let the loss be seen
	cancel()
	select {
	case <-done:
		t.Fatal("ConsumeEvents returned with a handler in flight")
	case <-time.After(500 * time.Millisecond):
	}
	if cutShort.Load() {
		t.Fatal("the handler's context ended before DrainWithin")
	}
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ConsumeEvents did not return once the handler was done")
	}
}

// TestConn_ReplayPopsLeavesNoConsumer: every agent's hello replays, so a
// replay's consumer must go with it: left for the server's inactivity
// threshold, each costs the server its goroutines and state, and a day of
// reconnecting tabs keeps thousands of them alive at once.
func TestConn_ReplayPopsLeavesNoConsumer(t *testing.T) {
	c := MustStart(t, bus.Config{Listen: "off"})
	ctx := context.Background()
	const agents = 20
	for i := range agents {
		agent := bridge.AgentID(fmt.Sprintf("agent-%d", i))
		if err := c.Publish(ctx, pop(agent, fmt.Sprintf("conv-%d", i))); err != nil {
			t.Fatal(err)
		}
		n := 0
		if err := c.ReplayPops(ctx, agent, 0, time.Now().Add(-time.Minute), func(bridge.StoredPop) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("%s: replayed %d pops, want 1", agent, n)
		}
		// A fresh hello of an agent whose pops are older than its window.
		if err := c.ReplayPops(ctx, agent, 0, time.Now().Add(time.Minute), func(bridge.StoredPop) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	consumers := func() int {
		st, err := c.JetStream().Stream(ctx, c.StreamName())
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo().State.Consumers
	}
	left := -1
	defer func() {
		if left != 0 {
			t.Logf("%d consumers left on the stream after %d replays, want 0", left, 2*agents)
		}
	}()
	waitFor(t, 5*time.Second, func() bool { left = consumers(); return left == 0 })
}

// While NATS is down, the reads of an agent's hello fail at once with
// ErrDisconnected, so the page gets its 1013 and retries (docs/operations.md
// 7.4), instead of waiting out the whole hello's timeout for a reconnect;
// once NATS is back they work again.
func TestConn_HelloReadsFailAtOnceWhileDisconnected(t *testing.T) {
	server, c, px := behindCutProxy(t)
	ctx := context.Background()
	if err := server.Publish(ctx, pop("agent-down", "conv-down")); err != nil {
		t.Fatal(err)
	}
	px.Down()
	waitFor(t, 5*time.Second, func() bool { return !c.Connected() })
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := c.LatestPop(rctx, "agent-down"); !errors.Is(err, bus.ErrDisconnected) {
		t.Fatalf("LatestPop while NATS is down: %v, want ErrDisconnected", err)
	}
	if err := c.ReplayPops(rctx, "agent-down", 0, time.Time{}, func(bridge.StoredPop) error { return nil }); !errors.Is(err, bus.ErrDisconnected) {
		t.Fatalf("ReplayPops while NATS is down: %v, want ErrDisconnected", err)
	}
	px.Up()
	waitFor(t, 10*time.Second, c.Connected)
	if seq, err := c.LatestPop(rctx, "agent-down"); err != nil || seq == 0 {
		t.Fatalf("LatestPop after the reconnect: %d, %v; want the pop's sequence", seq, err)
	}
}

// NATS away at the moment the resolver's consumer is first made (a blip
// just after the stream was made at start-up): the first attempt finds
// no answer, which is no refusal. ConsumeEvents keeps trying, says when
// it consumes (the daemon's /readyz waits for that), and then handles
// events; it does not end the daemon over a moment's outage.
func TestConn_ConsumeEventsStartsWhileNATSIsAway(t *testing.T) {
	server, client, px := behindCutProxy(t)
	px.Down()
	waitFor(t, 5*time.Second, func() bool { return !client.NATS().IsConnected() })
	s := startConsuming(t, client, bus.ConsumeConfig{Durable: "away-at-start"})
	// The first attempt waits out the JetStream API's 5 s for an answer.
	s.keepsTrying(t, 6*time.Second, "NATS was away")
	px.Up()
	waitFor(t, 20*time.Second, s.consuming.Load)
	publishEvent(t, server, "conv-after-the-blip")
	s.handles(t, "conv-after-the-blip", 10*time.Second)
	s.stop(t)
}

// starting is a ConsumeEvents run by startConsuming: whether it consumes
// (ConsumeConfig.Consuming), the conversations of the events it handled,
// and its end.
type starting struct {
	consuming atomic.Bool
	handled   chan string
	done      chan error
	cancel    context.CancelFunc
}

// startConsuming runs c.ConsumeEvents(cc) until stop or the test's end.
func startConsuming(t *testing.T, c *bus.Conn, cc bus.ConsumeConfig) *starting {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := &starting{handled: make(chan string, 4), done: make(chan error, 1), cancel: cancel}
	cc.Consuming = s.consuming.Store
	go func() {
		s.done <- c.ConsumeEvents(ctx, cc, func(_ context.Context, data []byte) error {
			e, err := bridge.DecodeEvent(data)
			if err != nil {
				return err
			}
			s.handled <- string(e.ConversationID)
			return nil
		})
	}()
	return s
}

// keepsTrying fails the test if ConsumeEvents ends or says it consumes
// within d, while why.
func (s *starting) keepsTrying(t *testing.T, d time.Duration, why string) {
	t.Helper()
	select {
	case err := <-s.done:
		t.Fatalf("ConsumeEvents ended while %s: %v", why, err)
	case <-time.After(d):
	}
	if s.consuming.Load() {
		t.Fatalf("Consuming(true) while %s: no consumer exists", why)
	}
}

// handles fails the test unless the next event handled, within d, is conv's.
func (s *starting) handles(t *testing.T, conv string, d time.Duration) {
	t.Helper()
	select {
	case got := <-s.handled:
		if got != conv {
			t.Fatalf("handled %s, want %s", got, conv)
		}
	case err := <-s.done:
		t.Fatalf("ConsumeEvents ended: %v", err)
	case <-time.After(d):
		t.Fatalf("the event of %s was not handled within %v", conv, d)
	}
}

// stop ends ConsumeEvents and fails the test if it returned an error.
func (s *starting) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	if err := <-s.done; err != nil {
		t.Fatal(err)
	}
}
