package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/internal/syncbuf"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// A clean stop (systemctl stop, a restart for an upgrade) is not an
// outage: the on-call engineer tailing the log must not read a NATS
// disconnection into it (operations.md 3.1: the warning means /readyz went
// 503 because NATS is down).
func TestDaemon_CleanStopIsNotLoggedAsNATSDisconnected(t *testing.T) {
	vars := testEnv(t)
	cfg, _, err := ParseConfig("demo", nil, env(vars), Requirements{}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := StartDemo(ctx, cfg, zerolog.New(logs).Level(zerolog.DebugLevel), false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	done := make(chan error, 1)
	go func() { done <- d.Main.Run(ctx) }()
	waitFor(t, 20*time.Second, "screenpopd ready logged", func() bool { return strings.Contains(logs.String(), "screenpopd ready") })
	// An agent page open, as on any working day: push holds its socket for
	// the stop's grace.
	agent := demoAgents[0].ID
	dialAgent(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))
	// A call ringing at the moment of the stop, its lookup slow: the
	// resolver finishes it before push and the admin listener stop.
	d.Dataverse.SetLatency(time.Second)
	d.Genesys.InboundCall(agent, "+13175550142", notificationstest.Options{}).Alert()
	waitFor(t, 10*time.Second, "the call's lookup in flight", func() bool {
		return d.Main.Dataverse.Status().(dataverse.Status).LookupsInFlight > 0
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon did not stop")
	}
	out := logs.String()
	if !strings.Contains(out, "screenpopd stopped") {
		t.Fatalf("no clean stop line:\n%s", out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "NATS disconnected") {
			t.Errorf("a clean stop logged %s", l)
		}
	}
}
