package bridge_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
)

// TestMetrics_AnEventStoredWithoutItsLargeAttributesIsNoPublishError: an
// event over NATS' max payload is stored again at once without its largest
// participant attributes (TestEventPublisher_TooLargeForTheBus). Every
// event is stored, nothing is lost: screenpop_bus_publish_errors_total
// ("any rise: publishes without acknowledgement", alert
// ScreenpopEventsNotStored: "calls meanwhile pop late or not at all")
// must not rise, nor publisher_dropped_total.
func TestMetrics_AnEventStoredWithoutItsLargeAttributesIsNoPublishError(t *testing.T) {
	reg := prometheus.NewRegistry()
	conn, err := bus.Start(context.Background(), bus.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Registerer: reg}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pub, err := bridge.NewEventPublisher(bridge.EventPublisherConfig{MaxInFlight: 1, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Registerer: reg}, conn, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer runPublisher(t, pub)()
	pub.Enqueue(bridge.Event{ConversationID: "conv-big", Agent: bridge.AgentLeg{UserID: "agent-big", ParticipantID: "P1"},
		Media: bridge.MediaVoice, State: bridge.StateAlerting, ReceivedAt: bridge.Time{Time: time.Now()},
		Customer: bridge.Customer{Phone: "+13175550123", Attributes: map[string]string{"crm_id": "a15531c3", "notes": strings.Repeat("x", 1_100_000)}}})
	// Stored, and counted: the publisher counts it once the store's
	// acknowledgement is back, a moment after the stream holds it.
	published := func() float64 { return counterSum(t, reg, "screenpop_bridge_publisher_published_total") }
	deadline := time.Now().Add(10 * time.Second)
	for streamMsgs(t, conn) != 1 || published() < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the large event was not stored and counted: %d messages in the stream, publisher_published_total = %v", streamMsgs(t, conn), published())
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, name := range []string{"screenpop_bus_publish_errors_total", "screenpop_bridge_publisher_dropped_total"} {
		if v := counterSum(t, reg, name); v != 0 {
			t.Errorf("%s = %v after the event was stored (without its largest attributes): the alert on it fires for an event that was stored", name, v)
		}
	}
	if v := published(); v != 1 {
		t.Errorf("publisher_published_total = %v, want 1", v)
	}
}
