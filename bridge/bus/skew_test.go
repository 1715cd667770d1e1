package bus_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/bridge/bus/bustest"
	"github.com/screenpop/screenpop/internal/syncbuf"
)

// behindSkewedServer starts an embedded server and a second connection to
// it through bustest.StartSkewProxy: to that connection the server's clock is skew
// ahead of this host's.
func behindSkewedServer(t *testing.T, skew time.Duration, cfg bus.Config) (server, client *bus.Conn) {
	t.Helper()
	return behindSkewedServerLog(t, skew, cfg, zerolog.Nop())
}

func behindSkewedServerLog(t *testing.T, skew time.Duration, cfg bus.Config, log zerolog.Logger) (server, client *bus.Conn) {
	t.Helper()
	scfg := cfg
	scfg.Registerer = nil
	server = MustStart(t, scfg)
	u, err := url.Parse(server.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.URL = bustest.StartSkewProxy(t, u.Host, skew)
	cfg.Listen, cfg.DataDir = "", ""
	client, err = bus.Start(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	return server, client
}

// A NATS server whose clock differs from this host's must not change which
// pops a page replays: the windows are this host's (push computes since
// from time.Now), the stored times the server's. Behind by more than the
// fresh window, a page loaded just after its call alerted replays nothing
// (the pop is lost to the agent); ahead, a page replays pops older than the
// window (an old call's record opens again).
func TestConn_ReplayPopsAgainstASkewedServer(t *testing.T) {
	ctx := context.Background()
	replay := func(t *testing.T, c *bus.Conn, since time.Time) int {
		t.Helper()
		n := 0
		if err := c.ReplayPops(ctx, "agent-a", 0, since, func(bridge.StoredPop) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	t.Run("ServerBehind", func(t *testing.T) {
		_, c := behindSkewedServer(t, -40*time.Second, bus.Config{Listen: "127.0.0.1:0"})
		if err := c.Publish(ctx, pop("agent-a", "conv-1")); err != nil {
			t.Fatal(err)
		}
		if n := replay(t, c, time.Now().Add(-30*time.Second)); n != 1 {
			t.Fatalf("a pop stored a moment ago, the fresh window 30s, a server 40s behind: %d replayed, want 1", n)
		}
	})
	t.Run("ServerAhead", func(t *testing.T) {
		_, c := behindSkewedServer(t, 5*time.Second, bus.Config{Listen: "127.0.0.1:0"})
		if err := c.Publish(ctx, pop("agent-a", "conv-1")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if n := replay(t, c, time.Now().Add(-100*time.Millisecond)); n != 0 {
			t.Fatalf("a pop stored 300ms ago, a window of 100ms, a server 5s ahead: %d replayed, want 0", n)
		}
	})
}

// A durable made anew starts Since back by the server's clock: with the
// server behind this host's by more than Since, starting at the stream's
// last message keeps only that one, and the events stored just before it
// (while no consumer existed) never pop.
func TestConn_ConsumeEventsNewDurableAgainstASkewedServer(t *testing.T) {
	_, c := behindSkewedServer(t, -40*time.Second, bus.Config{Listen: "127.0.0.1:0"})
	publishEvent(t, c, "conv-1")
	publishEvent(t, c, "conv-2")
	ch := make(chan string, 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- c.ConsumeEvents(ctx, bus.ConsumeConfig{Durable: "skewed", Since: 30 * time.Second}, func(_ context.Context, data []byte) error {
			e, err := bridge.DecodeEvent(data)
			if err != nil {
				return err
			}
			ch <- string(e.ConversationID)
			return nil
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}()
	var got []string
	for len(got) < 2 {
		select {
		case g := <-ch:
			got = append(got, g)
		case <-time.After(2 * time.Second):
			t.Fatalf("consumed %q of two events stored a moment before the durable was made (server 40s behind), want both", got)
		}
	}
}

// A marker's age is the server's clock against this host's. Behind by more
// than the duplicate window, a marker written a moment ago reads as old: the
// redelivery of an event whose marker was written but whose handler failed
// after (a lost acknowledgement, a crash) is refused, and the leg never
// pops. Ahead, an old marker reads as young past the duplicate window: a
// later event of the leg may publish, JetStream no longer drops the pop id,
// and the agent gets the pop twice.
func TestConn_MarkPopAgainstASkewedServer(t *testing.T) {
	ctx := context.Background()
	t.Run("ServerBehind", func(t *testing.T) {
		_, c := behindSkewedServer(t, -3*time.Minute, bus.Config{Listen: "127.0.0.1:0"})
		if ok, err := c.MarkPop(ctx, "pop:conv-1:P1", "evt-1"); err != nil || !ok {
			t.Fatalf("first MarkPop = %v, %v", ok, err)
		}
		if ok, err := c.MarkPop(ctx, "pop:conv-1:P1", "evt-1"); err != nil || !ok {
			t.Fatalf("MarkPop of a marker written a moment ago (server 3m behind) = %v, %v; want true: the redelivered event must still publish", ok, err)
		}
	})
	t.Run("ServerAhead", func(t *testing.T) {
		window := time.Second
		_, c := behindSkewedServer(t, 3*time.Minute, bus.Config{Listen: "127.0.0.1:0", DuplicateWindow: window})
		if ok, err := c.MarkPop(ctx, "pop:conv-1:P1", "evt-1"); err != nil || !ok {
			t.Fatalf("first MarkPop = %v, %v", ok, err)
		}
		msg := bridge.Message{Subject: bridge.PopSubject("agent-1"), ID: "pop:conv-1:P1", Data: []byte("{}")}
		if _, err := c.PublishDedup(ctx, msg); err != nil {
			t.Fatal(err)
		}
		time.Sleep(window + 500*time.Millisecond)
		ok, err := c.MarkPop(ctx, "pop:conv-1:P1", "evt-2")
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			dup, _ := c.PublishDedup(ctx, msg)
			t.Fatalf("MarkPop past the duplicate window (server 3m ahead) = true; want false (the second publish was stored as a new pop: dup=%v)", dup)
		}
	})
}

// On-call is told: a warning that names the clocks and NTP, and the offset
// as a gauge.
func TestConn_WarnsOfASkewedServerClock(t *testing.T) {
	var logs syncbuf.Buffer
	reg := prometheus.NewRegistry()
	_, _ = behindSkewedServerLog(t, -40*time.Second, bus.Config{Listen: "127.0.0.1:0", Registerer: reg}, zerolog.New(&logs))
	if !strings.Contains(logs.String(), "clock differs") || !strings.Contains(logs.String(), "NTP") {
		t.Fatalf("no warning naming the clock and NTP; log:\n%s", logs.String())
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "screenpop_bus_clock_offset_seconds" {
			if v := mf.GetMetric()[0].GetGauge().GetValue(); v > -39 || v < -41 {
				t.Fatalf("screenpop_bus_clock_offset_seconds = %v, want about -40", v)
			}
			return
		}
	}
	t.Fatal("no screenpop_bus_clock_offset_seconds")
}
