package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/internal/syncbuf"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// demoEmulators starts the demo's emulators and a configuration of vars
// pointed at them, for tests that run their own daemons on it (runDaemon):
// the demo's own daemon is closed at once. logs is for those daemons.
func demoEmulators(t *testing.T, vars map[string]string) (*Demo, *Config, *syncbuf.Buffer) {
	t.Helper()
	cfg, _, err := ParseConfig("demo", nil, env(vars), Requirements{}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	d, err := StartDemo(context.Background(), cfg, zerolog.New(logs), false)
	if err != nil {
		t.Fatal(err)
	}
	d.Main.Close()
	t.Cleanup(d.Close)
	return d, cfg, logs
}

// runDaemon runs a daemon for cfg (pointed at the emulators already) until
// the returned stop is called; stop waits for Run to return.
func runDaemon(t *testing.T, cfg *Config, logs *syncbuf.Buffer) (*Main, func()) {
	t.Helper()
	return runDaemonLog(t, cfg, zerolog.New(logs).Level(zerolog.DebugLevel))
}

// runDaemonLog is runDaemon logging to log (a load test's debug lines
// would be most of its work).
func runDaemonLog(t *testing.T, cfg *Config, log zerolog.Logger) (*Main, func()) {
	t.Helper()
	m, stop := startDaemon(t, cfg, log)
	waitFor(t, 20*time.Second, "daemon ready", m.Ready)
	return m, stop
}

// startDaemon is runDaemonLog without the wait for readiness: the test
// watches start-up.
func startDaemon(t *testing.T, cfg *Config, log zerolog.Logger) (*Main, func()) {
	t.Helper()
	m := NewMain(cfg, log)
	ctx, cancel := context.WithCancel(context.Background())
	if err := m.Open(ctx); err != nil {
		m.Close()
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("the daemon did not stop within 15s")
		}
	}
	t.Cleanup(stop)
	return m, stop
}

// resumeAgent opens an agent socket whose hello carries a cursor.
func resumeAgent(t *testing.T, base, token string, lastSeq uint64, epoch, agent string) (*websocket.Conn, string) {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(strings.Replace(base, "http", "ws", 1)+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	hello := map[string]any{"type": "hello", "token": token}
	if epoch != "" {
		hello["lastSeq"], hello["epoch"], hello["agentId"] = lastSeq, epoch, agent
	}
	if err := ws.WriteJSON(hello); err != nil {
		t.Fatal(err)
	}
	var ready struct{ Type, AgentID, Epoch string }
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := ws.ReadJSON(&ready); err != nil || ready.Type != "ready" {
		t.Fatalf("ready: %+v %v", ready, err)
	}
	return ws, ready.Epoch
}

// A restart on the same data directory: a call popped before the stop
// and answered while the daemon is down pops no second time, a call that
// alerts while it is down pops once after it, and the agent's tab resumes
// from its cursor.
func TestDaemon_RestartPopsOnce(t *testing.T) {
	d, cfg, logs := demoEmulators(t, testEnv(t)) // each run opens its own daemon
	agent := demoAgents[0].ID
	token := d.Genesys.AgentToken(agent)

	m1, stop1 := runDaemon(t, cfg, logs)
	ws, epoch := resumeAgent(t, m1.AgentURL(), token, 0, "", "")
	first := d.Genesys.InboundCall(agent, "+13175550101", notificationstest.Options{})
	first.Alert()
	p1 := readPop(t, ws)
	if p1.ConversationID != first.ID() {
		t.Fatalf("pop for %s, want %s", p1.ConversationID, first.ID())
	}
	stop1()

	first.Connect()
	second := d.Genesys.InboundCall(agent, "+13175550102", notificationstest.Options{})
	second.Alert()

	m2, _ := runDaemon(t, cfg, logs)
	ws2, epoch2 := resumeAgent(t, m2.AgentURL(), token, p1.Seq, epoch, agent)
	if epoch2 != epoch {
		t.Fatalf("epoch %q after the restart, want %q", epoch2, epoch)
	}
	p2 := readPop(t, ws2)
	if p2.ConversationID != second.ID() {
		t.Fatalf("first pop after the restart for %s, want the call that alerted meanwhile %s", p2.ConversationID, second.ID())
	}
	third := d.Genesys.InboundCall(agent, "+13175550103", notificationstest.Options{})
	third.Alert()
	if p3 := readPop(t, ws2); p3.ConversationID != third.ID() {
		t.Fatalf("next pop for %s, want %s (a second pop of an earlier call?)", p3.ConversationID, third.ID())
	}
}
