package push

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
)

// A message on screenpop.pops.<agent> that the push server cannot read as
// that agent's pop (another service publishing there; a pop stored under
// another agent's subject; not JSON) reaches no page, live or replayed:
// it is skipped, counted in pops_invalid_total (which the alert
// ScreenpopPopsUnreadable watches) and logged without its content, and
// the agent's next pop arrives as usual.
func TestServer_UnreadablePopsAreSkippedCountedAndLogged(t *testing.T) {
	var logs logBuffer
	e := startEnvLog(t, Config{}, nil, nil, zerolog.New(&logs))
	waitFor(t, 10*time.Second, "server ready", e.srv.Ready)
	invalid := func() float64 { return testutil.ToFloat64(e.srv.m.popsInvalid) }

	c, _ := e.connect(e.token("agent-1"), nil, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	other, err := bridge.EncodePop(testPop("agent-2", "conv-of-agent-2"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []bridge.Message{
		{Subject: bridge.PopSubject("agent-1"), ID: "misrouted", Data: other.Data},
		{Subject: bridge.PopSubject("agent-1"), ID: "not-json", Data: []byte("+13175550123 rang")},
	} {
		if err := e.bus.Publish(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	seq := e.publish("agent-1", "conv-1")

	got := c.next()
	if got.Type != "pop" || got.Seq != seq || got.AgentID != "agent-1" {
		t.Fatalf("the page got %+v, want agent-1's pop of seq %d and nothing of the two it cannot read", got, seq)
	}
	waitFor(t, 5*time.Second, "two unreadable pops counted", func() bool { return invalid() == 2 })

	// A page that connects afresh replays the agent's pops: the same two
	// are skipped again, and counted again.
	c2, _ := e.connect(e.token("agent-1"), nil, "")
	if got := c2.next(); got.Type != "pop" || got.Seq != seq {
		t.Fatalf("the replay sent %+v first, want agent-1's pop of seq %d", got, seq)
	}
	waitFor(t, 5*time.Second, "the replay's two counted", func() bool { return invalid() == 4 })

	var warned int
	for _, l := range logs.lines() {
		if l["message"] != "skip stored pop" {
			continue
		}
		warned++
		if l["level"] != "warn" || l["error"] == nil || l["seq"] == nil {
			t.Errorf("skip line %v: want a warn with the error and the seq", l)
		}
	}
	if warned == 0 {
		t.Error("no skip stored pop line")
	}
	for _, secret := range []string{"+13175550123", "Test Caller", "conv-of-agent-2"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds %q of a pop's content:\n%s", secret, logs.String())
		}
	}
}
