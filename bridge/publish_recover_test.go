package bridge_test

import (
	"context"
	"fmt"
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

// TestEventPublisher_ACallAfterTheStoreIsBackDoesNotWaitOutItsLanesBackoff:
// the account's JetStream store full, one call's event is refused and
// retried, its backoff grown to its 5 s maximum. The store is freed and a
// new call rings whose event falls in the same lane (one lane in 16 by
// conversation; here the only lane). The new call's event must be stored
// at once: it has no reason to wait for the old event's timer. Waiting out
// up to 5 s made its pop late, past SCREENPOP_POP_DEADLINE (2 s from the
// frame: a `search` pop, not the record) and, with a max event age below
// the backoff, made no pop at all (the failure of
// TestMetricsDoc_AlertsFireWhenTheStoreIsFull, its max age 2 s).
func TestEventPublisher_ACallAfterTheStoreIsBackDoesNotWaitOutItsLanesBackoff(t *testing.T) {
	x, conn := fullAccount(t)
	reg := prometheus.NewRegistry()
	// The defaults (backoff 100 ms doubling to 5 s), in one lane.
	pub, err := bridge.NewEventPublisher(bridge.EventPublisherConfig{MaxInFlight: 1, Registerer: reg}, conn, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer runPublisher(t, pub)()
	pub.Enqueue(event("conv-during"))
	// The 7th retry waits 2.5 to 5 s (backoff at its maximum).
	deadline := time.Now().Add(20 * time.Second)
	for retries(t, reg) < 7 {
		if time.Now().After(deadline) {
			t.Fatalf("%v retries, want 7: the full store did not refuse the event", retries(t, reg))
		}
		time.Sleep(10 * time.Millisecond) // polling a deadline
	}

	x.SetLimits("max_file: 8M, max_mem: 1M")
	rang := time.Now()
	pub.Enqueue(event("conv-after"))
	for streamMsgs(t, conn) < 2 {
		if time.Since(rang) > 10*time.Second {
			t.Fatal("the events were not stored within 10 s of the store coming back")
		}
		time.Sleep(5 * time.Millisecond) // polling a deadline
	}
	if took := time.Since(rang); took > time.Second {
		t.Fatalf("the call that rang after the store came back was stored %v later, behind the lane's old event's backoff; want at once", took.Round(10*time.Millisecond))
	}
}

// TestEventPublisher_AnOutageInABusyCentreIsLoggedOnce: while the store is
// full, every call enqueued behind a refused event has that event tried
// again at once (above), so its attempts come as fast as calls ring. On-call
// tailing the log must get one warning for it, then one every half minute,
// not one for every tenth of hundreds of attempts.
func TestEventPublisher_AnOutageInABusyCentreIsLoggedOnce(t *testing.T) {
	_, conn := fullAccount(t)
	reg := prometheus.NewRegistry()
	logs := &syncbuf.Buffer{}
	pub, err := bridge.NewEventPublisher(bridge.EventPublisherConfig{MaxInFlight: 1, Registerer: reg}, conn, zerolog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	defer runPublisher(t, pub)()
	for i := range 300 {
		pub.Enqueue(event(fmt.Sprintf("conv-%d", i)))
		time.Sleep(2 * time.Millisecond) // calls ringing, not one burst
	}
	if n := retries(t, reg); n < 30 {
		t.Fatalf("%v retries of the refused event; the calls behind it should have had it tried again at least 30 times", n)
	}
	if n := strings.Count(logs.String(), "publish failed, retrying"); n != 1 {
		t.Fatalf("%d `publish failed, retrying` lines in %v retries of one event; want 1 (then one a half minute)", n, retries(t, reg))
	}
}

// fullAccount serves a NATS account whose JetStream store another stream
// has filled to its limit (max_file 2M) and connects a bus.Conn to it.
func fullAccount(t *testing.T) (*bustest.LimitedServer, *bus.Conn) {
	t.Helper()
	x := bustest.StartLimitedServer(t, "max_file: 2M, max_mem: 1M")
	conn, err := bus.Start(context.Background(), bus.Config{URL: x.URL(), DataDir: t.TempDir()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	x.FillStore()
	return x, conn
}

func event(conv string) bridge.Event {
	return bridge.Event{ConversationID: bridge.ConversationID(conv), Agent: bridge.AgentLeg{UserID: "agent-1", ParticipantID: bridge.ParticipantID("P-" + conv)},
		Media: bridge.MediaVoice, State: bridge.StateAlerting, ReceivedAt: bridge.Time{Time: time.Now()},
		Customer: bridge.Customer{Phone: "+13175550123"}}
}

func retries(t *testing.T, g prometheus.Gatherer) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "screenpop_bridge_publisher_retries_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}
