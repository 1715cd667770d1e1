package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// SCREENPOP_POP_ON switched across a restart on the same data dir, with a
// call alerting across it: the leg pops once, not twice, not never.
func TestDaemon_PopOnSwitchedAcrossRestart(t *testing.T) {
	for _, tc := range []struct{ name, before, after string }{
		{"AlertingToConnected", "alerting", "connected"},
		{"ConnectedToAlerting", "connected", "alerting"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, cfg, logs := demoEmulators(t, testEnv(t))
			agent := demoAgents[0].ID
			token := d.Genesys.AgentToken(agent)

			cfg.PopOn = tc.before
			m1, stop1 := runDaemon(t, cfg, logs)
			ws, epoch := resumeAgent(t, m1.AgentURL(), token, 0, "", "")
			call := d.Genesys.InboundCall(agent, "+13175550101", notificationstest.Options{})
			call.Alert()
			var last uint64
			if tc.before == "alerting" {
				p := readPop(t, ws)
				if p.ConversationID != call.ID() {
					t.Fatalf("pop for %s, want %s", p.ConversationID, call.ID())
				}
				last = p.Seq
			} else {
				waitFor(t, 10*time.Second, "the alerting event handled", func() bool { return noPopAnyLevel(t, logs, call.ID(), "before_pop_state") })
			}
			stop1()

			after := *cfg
			after.PopOn = tc.after
			m2, _ := runDaemon(t, &after, logs)
			ws2, _ := resumeAgent(t, m2.AgentURL(), token, last, epoch, agent)
			call.Connect()
			if tc.before == "connected" {
				if p := readPop(t, ws2); p.ConversationID != call.ID() {
					t.Fatalf("pop for %s, want the call answered after the restart %s", p.ConversationID, call.ID())
				}
			}
			next := d.Genesys.InboundCall(agent, "+13175550102", notificationstest.Options{})
			next.Alert().Connect()
			if p := readPop(t, ws2); p.ConversationID != next.ID() {
				t.Fatalf("pop for %s, want %s (a second pop of the call across the restart?)", p.ConversationID, next.ID())
			}
			// The resolver writes a pop's line after publishing the pop:
			// the call's line can follow the next call's pop to the page.
			waitFor(t, 10*time.Second, "the call's pop line", func() bool { return len(popLinesOf(t, logs, call.ID())) >= 1 })
			if n := len(popLinesOf(t, logs, call.ID())); n != 1 {
				t.Fatalf("%d pop lines for the call across the restart, want 1", n)
			}
		})
	}
}

// NATS_URL set on a deployment that ran the built-in server (a second
// instance on the way): the daemon starts on the external NATS, and says
// what it leaves behind under SCREENPOP_DATA_DIR/jetstream: the old stream
// (callers' numbers, names, participant data), which no server ages out
// any more, where operations.md section 8 promises SCREENPOP_STREAM_MAX_AGE.
func TestDaemon_EmbeddedToExternalNATSWarnsOfTheOldStore(t *testing.T) {
	d, cfg, logs := demoEmulators(t, testEnv(t))
	agent := demoAgents[0].ID
	token := d.Genesys.AgentToken(agent)

	m1, stop1 := runDaemon(t, cfg, logs)
	ws, _ := resumeAgent(t, m1.AgentURL(), token, 0, "", "")
	call := d.Genesys.InboundCall(agent, "+13175550101", notificationstest.Options{})
	call.Alert()
	if p := readPop(t, ws); p.ConversationID != call.ID() {
		t.Fatalf("pop for %s, want %s", p.ConversationID, call.ID())
	}
	stop1()
	store := filepath.Join(cfg.DataDir, "jetstream")
	if _, err := os.Stat(store); err != nil {
		t.Fatalf("the built-in store: %v", err)
	}

	after := *cfg
	after.NatsURL = startNATS(t, true).ClientURL()
	runDaemon(t, &after, logs)
	for _, m := range logLinesJSON(t, logs) {
		if m["level"] == "warn" && strings.Contains(fmt.Sprint(m["message"]), "built-in NATS store of a run without NATS_URL") && m["store_dir"] == store {
			return
		}
	}
	t.Fatalf("no warning that the built-in store %s is left behind with NATS_URL set: its customer data stays on disk for good, unknown to the admin", store)
}
