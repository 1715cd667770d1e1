package bus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/bridge/bus/bustest"
	"github.com/screenpop/screenpop/internal/syncbuf"
)

// warnings counts the warnings in logs whose message contains msg.
func warnings(logs *syncbuf.Buffer, msg string) int {
	n := 0
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `"level":"warn"`) && strings.Contains(line, msg) {
			n++
		}
	}
	return n
}

const noPerKeyTTLs = "the NATS server takes no per-key TTLs (it is older than 2.11)"

// startOnOldServer starts a Conn against the old server at url, with its
// own log.
func startOnOldServer(t *testing.T, url string, cfg bus.Config) *bus.Conn {
	t.Helper()
	cfg.URL = url
	logs := &syncbuf.Buffer{}
	c, err := bus.Start(context.Background(), cfg, zerolog.New(logs))
	if err != nil {
		t.Fatalf("Start against NATS before 2.11: %v", err)
	}
	t.Cleanup(c.Close)
	if n := warnings(logs, noPerKeyTTLs); n != 1 {
		t.Errorf("%d warnings %q at start, want 1:\n%s", n, noPerKeyTTLs, logs)
	}
	return c
}

// A NATS server older than 2.11 has no per-key TTLs. The daemon starts on a
// bucket without them and says so once; claims work as on a newer server,
// and a marker keeps the bucket's TTL: its leg's end (EndPop) does not
// shorten it.
func TestConn_OnNATSBefore2_11(t *testing.T) {
	url := bustest.MustStartOldServer(t)
	ctx := context.Background()
	c := startOnOldServer(t, url, bus.Config{})
	mark := func(t *testing.T, c *bus.Conn, popID, claim string, want bool) {
		t.Helper()
		if got, err := c.MarkPop(ctx, popID, claim); err != nil || got != want {
			t.Fatalf("MarkPop(%s, %s) = %v, %v; want %v, nil", popID, claim, got, err, want)
		}
	}
	bucket, err := c.JetStream().KeyValue(ctx, bus.DefaultMarkerBucket)
	if err != nil {
		t.Fatal(err)
	}
	marker := func(t *testing.T, popID string) jetstream.KeyValueEntry {
		t.Helper()
		e, err := bucket.Get(ctx, strings.ReplaceAll(popID, ":", ".")) // the key of a plain pop id
		if err != nil {
			t.Fatalf("marker of %s: %v", popID, err)
		}
		return e
	}

	t.Run("BucketHasNoPerKeyTTLs", func(t *testing.T) {
		st, err := bucket.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.LimitMarkerTTL() != 0 || st.TTL() != 24*time.Hour {
			t.Errorf("bucket limit marker TTL %v, TTL %v; want 0 (none) and 24h", st.LimitMarkerTTL(), st.TTL())
		}
	})

	t.Run("ClaimsAsOnANewServer", func(t *testing.T) {
		mark(t, c, "pop:c1:p1", "evt:c1:p1:voice:alerting", true)
		mark(t, c, "pop:c1:p1", "evt:c1:p1:voice:alerting", true) // the same event, redelivered
		// Another event of the leg may publish within the duplicate
		// window (JetStream drops the pop's second copy); the marker keeps
		// the first claim.
		mark(t, c, "pop:c1:p1", "evt:c1:p1:voice:connected", true)
		if v := string(marker(t, "pop:c1:p1").Value()); v != "evt:c1:p1:voice:alerting" {
			t.Fatalf("marker holds %q, want the first claim", v)
		}
	})

	t.Run("EndPopLeavesTheMarker", func(t *testing.T) {
		before := marker(t, "pop:c1:p1")
		if err := c.EndPop(ctx, "pop:c1:p1"); err != nil {
			t.Fatalf("EndPop: %v, want nil (nothing to do)", err)
		}
		if after := marker(t, "pop:c1:p1"); after.Revision() != before.Revision() || string(after.Value()) != string(before.Value()) {
			t.Fatalf("marker after EndPop: revision %d %q, want it untouched (%d %q)", after.Revision(), after.Value(), before.Revision(), before.Value())
		}
		mark(t, c, "pop:c1:p1", "evt:c1:p1:voice:connected", true) // still held, not ErrLegEnded
		if err := c.EndPop(ctx, "pop:never:p1"); err != nil {
			t.Fatalf("EndPop of a leg that never popped: %v", err)
		}
		if _, err := bucket.Get(ctx, "pop.never.p1"); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatalf("EndPop of a leg that never popped wrote a marker (%v)", err)
		}
	})

	t.Run("RestartKeepsTheBucket", func(t *testing.T) {
		// A second daemon (or a restart) updates the bucket it finds.
		c2 := startOnOldServer(t, url, bus.Config{})
		if v := string(marker(t, "pop:c1:p1").Value()); v != "evt:c1:p1:voice:alerting" {
			t.Fatalf("marker after a second start holds %q, want the first claim", v)
		}
		mark(t, c2, "pop:c1:p1", "evt:c1:p1:voice:connected", true) // not ErrLegEnded
	})

	t.Run("UnmarkPop", func(t *testing.T) {
		mark(t, c, "pop:c2:p1", "evt:c2:p1:voice:alerting", true)
		if err := c.UnmarkPop(ctx, "pop:c2:p1", "evt:c2:p1:voice:connected"); err != nil {
			t.Fatal(err)
		}
		marker(t, "pop:c2:p1") // not the marker's claim: left alone
		// The holding claim purges it. (Whether the purge carries a TTL
		// cannot be seen here: 2.10 ignores a Nats-TTL header.)
		if err := c.UnmarkPop(ctx, "pop:c2:p1", "evt:c2:p1:voice:alerting"); err != nil {
			t.Fatalf("UnmarkPop with the holding claim: %v", err)
		}
		if _, err := bucket.Get(ctx, "pop.c2.p1"); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatalf("marker after UnmarkPop with its claim: %v, want none", err)
		}
		mark(t, c, "pop:c2:p1", "evt:c2:p1:voice:connected", true) // the pop may be tried again
	})

	t.Run("EndedMarkerLivesTheBucketTTL", func(t *testing.T) {
		short := startOnOldServer(t, url, bus.Config{MarkerBucket: "short-pops", MarkerTTL: time.Second})
		mark(t, short, "pop:c3:p1", "evt:c3:p1:voice:alerting", true)
		if err := short.EndPop(ctx, "pop:c3:p1"); err != nil {
			t.Fatal(err)
		}
		mark(t, short, "pop:c3:p1", "evt:c3:p1:voice:connected", true) // not ErrLegEnded
		waitFor(t, 10*time.Second, func() bool {
			st := short.Status(ctx)
			return st.Error == "" && st.Markers == 0
		})
		mark(t, short, "pop:c3:p1", "evt:c3:p1:voice:connected", true) // expired: the key is free again
	})
}
