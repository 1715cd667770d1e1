package main

import (
	"strings"
	"testing"
	"time"

	"github.com/screenpop/screenpop/internal/syncbuf"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// infoLinesWith are the lines at info or above that mention conv as text:
// what docs/operations.md 7.9 has the on-call engineer search every
// instance's log for ("info level is enough").
func infoLinesWith(logs *syncbuf.Buffer, conv string) []string {
	var out []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, conv) && !strings.Contains(l, `"level":"debug"`) {
			out = append(out, l)
		}
	}
	return out
}

// TestRunbook79_PopOnConnectedCallThatOnlyRang: with SCREENPOP_POP_ON=
// connected, a call that rang at a watched agent (page open) and was never
// answered makes no pop, by design. The agent says "that call did not pop";
// docs/operations.md 7.9 has the on-call engineer search the info log for
// the conversation id. Its table's only row for finding nothing is "screenpopd
// never heard of the call for that agent: the agent is not in
// GENESYS_AGENTS…, past the channel limit, refused by Genesys, a gap, a lost
// event, a supervisor": every one of them wrong here. The daemon heard the
// call and decided not to pop it (no pop, reason before_pop_state, at debug
// only), so the engineer goes looking at the agent list, the Genesys role
// and the bus for nothing. Like stale, internal and ended, a leg that would
// pop under the other setting and ends without popping needs its info line.
func TestRunbook79_PopOnConnectedCallThatOnlyRang(t *testing.T) {
	vars := testEnv(t)
	vars["SCREENPOP_POP_ON"] = "connected"
	logs := &syncbuf.Buffer{}
	d := mustStartDemoWith(t, vars, NewLogger("debug", "json", logs))
	agent := demoAgents[0].ID
	ws := dialAgent(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))

	// The daemon pops at connected: an answered call pops (sanity).
	answered := d.Genesys.InboundCall(agent, "+13175550140", notificationstest.Options{})
	answered.Alert()
	answered.Connect()
	if p := readPop(t, ws); p.ConversationID != answered.ID() {
		t.Fatalf("pop of %s, want %s", p.ConversationID, answered.ID())
	}

	// The agent lets this one ring out.
	rang := d.Genesys.InboundCall(agent, "+13175550141", notificationstest.Options{})
	rang.Alert()
	waitFor(t, 10*time.Second, "the alerting event handled", func() bool {
		return noPopAnyLevel(t, logs, rang.ID(), "before_pop_state")
	})
	rang.Disconnect()
	waitFor(t, 10*time.Second, "the disconnected event handled", func() bool {
		return noPopAnyLevel(t, logs, rang.ID(), "disconnected")
	})
	if ls := infoLinesWith(logs, rang.ID()); len(ls) == 0 {
		t.Errorf("a watched agent's call that rang and was not answered under SCREENPOP_POP_ON=connected has no line at info with its conversation id: " +
			"docs/operations.md 7.9 reads that as \"screenpopd never heard of the call for that agent\" (agent not watched, topic refused, event lost); " +
			"the daemon heard it and did not pop it by setting (no pop reason before_pop_state, at debug only)")
	}
}

// noPopAnyLevel reports whether logs has a "no pop" line of conv with
// reason, at any level.
func noPopAnyLevel(t *testing.T, logs *syncbuf.Buffer, conv, reason string) bool {
	t.Helper()
	for _, m := range logLinesJSON(t, logs) {
		if m["message"] == "no pop" && m["conversation_id"] == conv && m["reason"] == reason {
			return true
		}
	}
	return false
}
