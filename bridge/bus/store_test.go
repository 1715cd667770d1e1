package bus_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/bridge/bus/bustest"
)

// A day of traffic that fills the account's store must not stop the pops:
// the stream keeps to its share of the store and lets its oldest messages
// go, where without a limit of its own JetStream refused every new event,
// marker and pop until old ones aged out.
func TestConn_StreamKeepsToItsShareOfTheStore(t *testing.T) {
	c, err := bus.Start(context.Background(), bus.Config{URL: bustest.StartLimitedServer(t, "max_file: 2M, max_mem: 1M").URL()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := c.JetStream().Stream(ctx, c.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.CachedInfo().Config.MaxBytes, int64(2_000_000)/100*80; got != want {
		t.Fatalf("stream max_bytes %d, want %d (80%% of the account's 2 MB)", got, want)
	}
	// 3 MB of older traffic: more than the account holds.
	chunk := make([]byte, 16<<10)
	for i := range 192 {
		if err := c.Publish(ctx, bridge.Message{Subject: "screenpop.events.voice.alerting", ID: fmt.Sprintf("old-%d", i), Data: chunk}); err != nil {
			t.Fatalf("publish %d of the older traffic: %v", i, err)
		}
	}
	if err := c.Publish(ctx, pop("agent-1", "conv-after")); err != nil {
		t.Fatalf("a pop after the store filled: %v", err)
	}
	if created, err := c.MarkPop(ctx, "pop:conv-after:P1", "claim"); err != nil || !created {
		t.Fatalf("a marker after the store filled: %v, %v", created, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.FirstSeq == 1 || info.State.Bytes > uint64(info.Config.MaxBytes) {
		t.Fatalf("stream state %+v: the oldest messages should have gone to keep it under %d bytes", info.State, info.Config.MaxBytes)
	}
}

// The embedded server's store has a limit too (75% of the disk's free
// space at its start): the stream takes its share of it.
func TestConn_EmbeddedStreamHasAByteLimit(t *testing.T) {
	c := MustStart(t, bus.Config{Listen: "off"})
	st, err := c.JetStream().Stream(context.Background(), c.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	if st.CachedInfo().Config.MaxBytes <= 0 {
		t.Fatalf("stream max_bytes %d: the embedded stream has no byte limit, so a full disk would refuse new events rather than drop old ones", st.CachedInfo().Config.MaxBytes)
	}
}

// An account whose operator caps each stream's bytes (disk_max_stream_bytes,
// storage_max_stream_bytes in an account JWT) took the stream before it had
// a byte limit of its own: the daemon must still start, its stream within
// the cap, not be refused with "maximum bytes exceeded".
func TestConn_StreamShareKeepsToTheAccountsPerStreamCap(t *testing.T) {
	url := bustest.StartLimitedServer(t, "max_file: 10M, max_mem: 1M, disk_max_stream_bytes: 2M").URL()
	c, err := bus.Start(context.Background(), bus.Config{URL: url}, zerolog.Nop())
	if err != nil {
		t.Fatalf("bus.Start under an account that caps a stream at 2 MB: %v", err)
	}
	defer c.Close()
	st, err := c.JetStream().Stream(context.Background(), c.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxBytes; got <= 0 || got > 2<<20 {
		t.Fatalf("stream max_bytes %d, want within the account's 2 MB cap", got)
	}
}

// Another stream of the account that reserves its own byte limit took
// none of the room the stream needed before: the daemon must still start
// beside it, not be refused with "insufficient storage resources".
func TestConn_StreamShareLeavesOtherStreamsReservations(t *testing.T) {
	url := bustest.StartLimitedServer(t, "max_file: 10M, max_mem: 1M").URL()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "AUDIT", Subjects: []string{"audit.>"}, MaxBytes: 3_000_000}); err != nil {
		t.Fatal(err)
	}
	c, err := bus.Start(ctx, bus.Config{URL: url}, zerolog.Nop())
	if err != nil {
		t.Fatalf("bus.Start beside a stream that reserves 3 of the account's 10 MB: %v", err)
	}
	defer c.Close()
	if err := c.Publish(ctx, pop("agent-1", "conv-1")); err != nil {
		t.Fatalf("a pop: %v", err)
	}
}

// A NATS whose store was lost comes back with other limits (an operator
// restoring it with a smaller max_file; a server sizing its store from a
// fuller disk): the stream is made again with its share of the store as it
// is now. Made with the share of the daemon's start, NATS refused it at
// every try and no event or pop could be stored until a restart.
func TestConn_StreamLostUnderSmallerLimitsIsMadeAgain(t *testing.T) {
	x := bustest.StartLimitedServer(t, "max_file: 10M, max_mem: 1M")
	c, err := bus.Start(context.Background(), bus.Config{URL: x.URL()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	live := make(chan struct{})
	followed := make(chan error, 1)
	go func() { followed <- c.FollowPops(ctx, func(bridge.StoredPop) {}, func() { close(live) }) }()
	<-live
	x.SetLimits("max_file: 5M, max_mem: 1M")
	js := c.JetStream()
	if err := js.DeleteStream(ctx, c.StreamName()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, err := js.Stream(ctx, c.StreamName())
		if err == nil {
			if mb := st.CachedInfo().Config.MaxBytes; mb <= 0 || mb > 5_000_000 {
				t.Fatalf("stream made again with max_bytes %d, want its share of the 5 MB store", mb)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stream was not made again under the smaller limits: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := c.Publish(ctx, bridge.Message{Subject: "screenpop.events.voice.alerting.agent-1", ID: "evt:c-lost:p:voice:alerting", Data: []byte(`{}`)}); err != nil {
		t.Fatalf("publish after the stream was made again: %v", err)
	}
	cancel()
	<-followed
}

// PopStored tells a leg whose marker has its pop stored from one whose
// handler died before publishing, also when the agent has popped since
// (a newer pop is the agent's last: the read goes through the agent's
// pops since the marker).
// The resolver's check of a marker left without its pop is not queued
// behind the pages' replays: an instance that dies leaves such markers
// and sends all its agents' tabs to this one at once, each with a replay,
// and the check's 2 s (bridge's orphaned) must still be enough, or the
// leg does not pop. Here every replay slot is held by a page whose replay
// is being written to its socket.
func TestConn_PopStoredNotQueuedBehindReplays(t *testing.T) {
	c := MustStart(t, bus.Config{Listen: "off"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const agent = bridge.AgentID("agent-psq")
	earlier, orphan := pop(agent, "conv-earlier"), pop(agent, "conv-orphan")
	if err := c.Publish(ctx, earlier); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.MarkPop(ctx, orphan.ID, "evt:"+orphan.ID); err != nil || !ok {
		t.Fatalf("MarkPop = %v, %v", ok, err)
	}
	holdReplaySlots(t, ctx, c, agent)
	cctx, ccancel := context.WithTimeout(ctx, 2*time.Second) // the resolver's budget
	defer ccancel()
	stored, err := c.PopStored(cctx, agent, orphan.ID)
	if err != nil {
		t.Fatalf("PopStored during a storm of replays: %v (the leg of a dead instance's handler would not pop)", err)
	}
	if stored {
		t.Fatal("a marker without its pop reported as stored")
	}
}

// The resolver's findStored (which instance logs a pop JetStream already
// held) reads through ReadPop, which does not wait behind the replays
// either: when an instance dies both come at once, and behind them its
// 500 ms ran out and the handler took another instance's pop for its own.
func TestConn_ReadPopNotQueuedBehindReplays(t *testing.T) {
	c := MustStart(t, bus.Config{Listen: "off"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const agent = bridge.AgentID("agent-rpq")
	stored, other := pop(agent, "conv-stored"), pop(agent, "conv-other")
	if err := c.Publish(ctx, stored); err != nil {
		t.Fatal(err)
	}
	holdReplaySlots(t, ctx, c, agent)
	rctx, rcancel := context.WithTimeout(ctx, 500*time.Millisecond) // findStored's budget
	defer rcancel()
	data, err := c.ReadPop(rctx, agent, stored.ID, time.Now().Add(-time.Minute))
	if err != nil {
		t.Fatalf("ReadPop during a storm of replays: %v", err)
	}
	if !bytes.Equal(data, stored.Data) {
		t.Fatalf("ReadPop = %q, want the stored pop %q", data, stored.Data)
	}
	if data, err := c.ReadPop(rctx, agent, other.ID, time.Now().Add(-time.Minute)); err != nil || data != nil {
		t.Fatalf("ReadPop of a pop never stored = %q, %v; want nil, nil", data, err)
	}
}

// holdReplaySlots has a storm of resuming pages hold every replay
// consumer the instance allows (64) and then some, until the test ends.
func holdReplaySlots(t *testing.T, ctx context.Context, c *bus.Conn, agent bridge.AgentID) {
	t.Helper()
	const pages = 80
	release := make(chan struct{})
	var wg sync.WaitGroup
	var holding atomic.Int64
	for range pages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.ReplayPops(ctx, agent, 0, time.Now().Add(-time.Minute), func(bridge.StoredPop) error {
				holding.Add(1)
				<-release
				return nil
			})
		}()
	}
	t.Cleanup(func() { close(release); wg.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for holding.Load() < 64 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if holding.Load() < 64 {
		t.Fatalf("only %d replays holding their consumers", holding.Load())
	}
}

func TestConn_PopStored(t *testing.T) {
	c := MustStart(t, bus.Config{Listen: "off"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const agent = bridge.AgentID("agent-ps")
	popped, orphan, later := pop(agent, "conv-popped"), pop(agent, "conv-orphan"), pop(agent, "conv-later")
	stored := func(m bridge.Message) bool {
		t.Helper()
		ok, err := c.PopStored(ctx, agent, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	// No marker: nothing to check against.
	if !stored(orphan) {
		t.Fatal("a leg without a marker reported as not stored")
	}
	// The stream holds the events before their pops: it is not empty.
	if err := c.Publish(ctx, bridge.Message{Subject: "screenpop.events.voice.alerting." + string(agent), ID: "evt:conv-popped:P1:voice:alerting", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []bridge.Message{popped, orphan, later} {
		if ok, err := c.MarkPop(ctx, m.ID, "evt:"+m.ID); err != nil || !ok {
			t.Fatalf("MarkPop(%s) = %v, %v", m.ID, ok, err)
		}
	}
	if stored(orphan) || stored(popped) {
		t.Fatal("marked legs without any pop stored reported as stored")
	}
	if err := c.Publish(ctx, popped); err != nil {
		t.Fatal(err)
	}
	if !stored(popped) || stored(orphan) {
		t.Fatalf("after the first pop: popped %v, orphan %v; want true, false", stored(popped), stored(orphan))
	}
	if err := c.Publish(ctx, later); err != nil {
		t.Fatal(err)
	}
	if !stored(popped) || stored(orphan) || !stored(later) {
		t.Fatalf("with a newer pop last: popped %v, orphan %v, later %v; want true, false, true", stored(popped), stored(orphan), stored(later))
	}
	// An ended leg is not asked about.
	if err := c.EndPop(ctx, orphan.ID); err != nil {
		t.Fatal(err)
	}
	if !stored(orphan) {
		t.Fatal("an ended leg reported as not stored")
	}
}
