package bus_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/internal/syncbuf"
)

// An operator narrows the stream's subjects by hand (`nats stream edit
// SCREENPOP --subjects 'screenpop.events.>'`) while the daemon runs: no
// pop can be stored (no stream answers screenpop.pops.*), and before, none
// was until a restart, each failure saying only "no response from stream".
// The daemon puts the stream's subjects back at the first such failure and
// says so; the pop's retry (its event's redelivery) is stored.
func TestConn_PublishPutsBackAStreamsSubjectsNarrowedByHand(t *testing.T) {
	var logs syncbuf.Buffer
	c, err := bus.Start(context.Background(), bus.Config{Listen: "off", DataDir: t.TempDir()}, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx := context.Background()
	if err := c.Publish(ctx, pop("agent-s", "conv-before")); err != nil {
		t.Fatal(err)
	}
	st, err := c.JetStream().Stream(ctx, c.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.Subjects = []string{"screenpop.events.>"}
	if _, err := c.JetStream().UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	var perr error
	for range 3 { // the resolver's retries: its event's redeliveries
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		perr = c.Publish(pctx, pop("agent-s", "conv-after"))
		cancel()
		if perr == nil {
			break
		}
	}
	if perr != nil {
		t.Fatalf("a pop after the stream's subjects were narrowed by hand is not stored after 3 tries: %v", perr)
	}
	if !strings.Contains(logs.String(), "the stream's settings were changed by hand") {
		t.Fatalf("no line says the stream was edited:\n%s", logs.String())
	}
}
