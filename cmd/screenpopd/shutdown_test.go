package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/internal/syncbuf"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// stopTimedDemo is MustStartDemo whose stop the test asks for, as SIGTERM
// does: stop cancels Run's context and returns Run's error and how long it
// took to return.
func stopTimedDemo(t *testing.T, vars map[string]string) (*Demo, *syncbuf.Buffer, func() (time.Duration, error)) {
	t.Helper()
	cfg, _, err := ParseConfig("demo", nil, env(vars), Requirements{}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	d, err := StartDemo(ctx, cfg, zerolog.New(logs).Level(zerolog.DebugLevel), false)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Main.Run(ctx) }()
	var (
		took    time.Duration
		runErr  error
		stopped bool
	)
	stop := func() (time.Duration, error) {
		if !stopped {
			stopped = true
			start := time.Now()
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(30 * time.Second):
				runErr = fmt.Errorf("Run did not return within 30s")
			}
			took = time.Since(start)
		}
		return took, runErr
	}
	t.Cleanup(func() { stop(); d.Close() })
	waitFor(t, 20*time.Second, "daemon ready", d.Main.Ready)
	return d, logs, stop
}

// awaitGoingAway reads ws until it closes and reports how.
func awaitGoingAway(t *testing.T, ws *websocket.Conn) {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, _, err := ws.ReadMessage()
		if err == nil {
			continue
		}
		if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
			t.Errorf("agent socket ended with %v, want close 1001", err)
		}
		return
	}
}

// SIGTERM while an external NATS is unreachable (the daemon reconnecting):
// there is nothing to flush or hand back, and the stop must still end
// within the budget, cleanly (exit 0), with the agents told 1001. It used
// to wait out nats.go's 10 s flush while draining the resolver's consumer,
// then give up with "shutdown took longer than 8s" (exit 1) without
// waiting for the agent listener's stop.
func TestShutdown_WhileNATSIsUnreachable(t *testing.T) {
	x := startExternalNATS(t)
	vars := testEnv(t)
	vars["NATS_URL"] = x.url()
	d, logs, stop := stopTimedDemo(t, vars)
	agent := demoAgents[0].ID
	ws := dialAgent(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))
	x.stop()
	waitFor(t, 10*time.Second, "the daemon disconnected", func() bool { return !d.Main.Bus.Connected() })
	took, err := stop()
	if err != nil || took > shutdownBudget {
		t.Fatalf("Run returned %v after %v, want nil within %v; logs:\n%s", err, took.Round(time.Millisecond), shutdownBudget,
			logLines(logs, `"level":"warn"`, `"level":"error"`, `"component":"main"`))
	}
	awaitGoingAway(t, ws)
	for _, want := range []string{"agent listener stopped", "screenpopd stopped"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no %q line", want)
		}
	}
	t.Logf("stopped in %v with NATS unreachable", took.Round(time.Millisecond))
}

// SIGTERM while JetStream does not answer (a cluster that lost its
// leader; here: publishes that NATS drops), with a pop's publish being
// retried and a conversation event waiting in the publisher: each stage
// keeps to its documented bound (the publisher 2 s, the resolver 3 s), so
// the stop ends within the budget, exit 0, agents told 1001, and the
// event whose pop was cut short is left for redelivery.
func TestShutdown_WhileJetStreamDoesNotAnswer(t *testing.T) {
	t.Parallel() // waits most of its time: see TestMain
	user := func(deny ...string) []*server.User {
		return []*server.User{{Username: "screenpop", Password: "pw", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: deny}}}}
	}
	o := &server.Options{JetStream: true, Users: user()}
	ns := startNATSWith(t, o)
	vars := testEnv(t)
	vars["NATS_URL"] = natsUserURL(ns)
	d, logs, stop := stopTimedDemo(t, vars)
	agent := demoAgents[0].ID
	ws := dialAgent(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))

	// The first call's lookup is slow; JetStream stops answering while it
	// runs, so its pop's publish, then the check and the unmark after it,
	// go unanswered. The second call's event waits in the publisher.
	d.Dataverse.SetLatency(time.Second)
	d.Dataverse.ResetLog()
	first := d.Genesys.InboundCall(agent, "+13175550170", notificationstest.Options{})
	first.Alert()
	// Reloading the server's options while it answers a direct get is a
	// data race inside nats-server (its opts are read unlocked there), so
	// the reload waits until the resolver is in the lookup, past its reads.
	waitFor(t, 10*time.Second, "the first call's lookup at Dataverse", func() bool {
		return d.Dataverse.MaxConcurrent() > 0
	})
	silent := *o
	silent.Port = ns.Addr().(*net.TCPAddr).Port
	silent.Users = user("screenpop.>", "$JS.API.DIRECT.GET.>", "$JS.API.STREAM.MSG.GET.>")
	if err := ns.ReloadOptions(&silent); err != nil {
		t.Fatal(err)
	}
	second := d.Genesys.InboundCall(demoAgents[1].ID, "+13175550171", notificationstest.Options{})
	second.Alert()
	waitFor(t, 10*time.Second, "the first call's pop publish and the second call's event unanswered", func() bool {
		l := logs.String()
		return strings.Contains(l, `Publish to \"screenpop.pops.`+agent) && strings.Contains(l, `Publish to \"screenpop.events.voice.alerting.`+demoAgents[1].ID)
	})
	took, err := stop()
	if err != nil || took > shutdownBudget {
		t.Fatalf("Run returned %v after %v, want nil within %v; logs:\n%s", err, took.Round(time.Millisecond), shutdownBudget,
			logLines(logs, `"level":"warn"`, `"level":"error"`, `"component":"main"`, "stopped"))
	}
	awaitGoingAway(t, ws)
	if strings.Contains(logs.String(), "given up") {
		t.Errorf("an event was given up at the stop:\n%s", logLines(logs, "given up"))
	}
	t.Logf("stopped in %v with JetStream silent", took.Round(time.Millisecond))
}
