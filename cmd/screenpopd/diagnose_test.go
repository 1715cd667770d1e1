package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/screenpop/screenpop/internal/syncbuf"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// An agent says "my screen did not pop for the call at 10:42". The on-call
// engineer has the production log (LOG_LEVEL=info, JSON) and must find the
// reason there, searching the conversation id (Genesys: Performance →
// Interactions) or the agent's user id, as docs/operations.md section 7.9
// says. Each case drives the daemon end to end (the Genesys and Dataverse
// emulators, NATS, a real agent websocket) and looks for a line at info or
// above that names the call or the agent and says what became of the pop.

// explained returns the first line at info or above whose field key is
// value and whose text holds every one of subs, or nil.
func explained(t *testing.T, logs *syncbuf.Buffer, key, value string, subs ...string) map[string]any {
	t.Helper()
	for _, m := range logLinesJSON(t, logs) {
		if m["level"] == "debug" || m[key] != value {
			continue
		}
		b, _ := json.Marshal(m)
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(string(b), s)
		}
		if ok {
			return m
		}
	}
	return nil
}

// requireExplained fails the test unless explained finds a line within d.
func requireExplained(t *testing.T, logs *syncbuf.Buffer, d time.Duration, what, key, value string, subs ...string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if m := explained(t, logs, key, value, subs...); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no line at info or above with %s=%s holding %q; the production log:\n%s", what, key, value, subs, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestDaemon_OnCallFindsWhyACallDidNotPop(t *testing.T) {
	t.Run("Internal", func(t *testing.T) {
		// SCREENPOP_POP_INTERNAL off (the default): an internal call makes no
		// pop, by design. The agent does not know it was internal.
		vars := testEnv(t)
		logs := &syncbuf.Buffer{}
		d := mustStartDemoWith(t, vars, NewLogger("info", "json", logs))
		c := d.Genesys.InternalCall(demoAgents[0].ID, demoAgents[1].ID, notificationstest.Options{})
		c.Alert()
		requireExplained(t, logs, 10*time.Second, "internal call", "conversation_id", c.ID(), `"reason":"internal"`, `"message":"no pop"`)
	})

	t.Run("TooOld", func(t *testing.T) {
		// NATS away for longer than SCREENPOP_MAX_EVENT_AGE: the call that
		// rang meanwhile is stored once NATS is back, too old to pop.
		x := startExternalNATS(t)
		vars := testEnv(t)
		vars["NATS_URL"] = x.url()
		vars["SCREENPOP_MAX_EVENT_AGE"] = "2s"
		logs := &syncbuf.Buffer{}
		d := mustStartDemoWith(t, vars, NewLogger("info", "json", logs))
		x.stop()
		c := alertCall(d, demoAgents[0].ID)
		time.Sleep(3 * time.Second) // the event ages past the max event age while NATS is away
		x.start()
		waitFor(t, 20*time.Second, "the late event handled", func() bool {
			v, _ := scrapeMetrics(t, d).sum("screenpop_bridge_resolver_skipped_total", map[string]string{"reason": "stale"})
			return v > 0
		})
		requireExplained(t, logs, 5*time.Second, "event too old", "conversation_id", c.ID(), `"reason":"stale"`, `"message":"no pop"`)
	})

	t.Run("PageOpenedAfterThePop", func(t *testing.T) {
		// No page open when the call popped; the agent opened Dynamics a few
		// seconds later and got the pop from the fresh window.
		logs := &syncbuf.Buffer{}
		d := mustStartDemoWith(t, testEnv(t), NewLogger("info", "json", logs))
		agent := demoAgents[2].ID
		c := alertCall(d, agent)
		waitFor(t, 10*time.Second, "the pop line", func() bool { return len(popLinesOf(t, logs, c.ID())) == 1 })
		ws := dialAgent(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))
		if p := readPop(t, ws); p.ConversationID != c.ID() {
			t.Fatalf("replayed pop of %s, want %s", p.ConversationID, c.ID())
		}
		// Without a line for the page's connect, the pop line alone does not
		// tell whether the agent had a page open at all, nor whether the pop
		// reached it later.
		requireExplained(t, logs, 5*time.Second, "page connected after the pop", "agent_id", agent, `"component":"push"`, `"replayed_pops"`, c.ID())
	})

	t.Run("DeliveredNotAcked", func(t *testing.T) {
		// The page got the pop and never acknowledged it (its handler failed
		// or hung, or the tab closed before the form opened).
		logs := &syncbuf.Buffer{}
		d := mustStartDemoWith(t, testEnv(t), NewLogger("info", "json", logs))
		agent := demoAgents[3].ID
		ws := dialAgent(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))
		c := alertCall(d, agent)
		if p := readPop(t, ws); p.ConversationID != c.ID() {
			t.Fatalf("pop of %s, want %s", p.ConversationID, c.ID())
		}
		ws.Close()
		requireExplained(t, logs, 5*time.Second, "pop delivered, never acked", "agent_id", agent, `"component":"push"`, `"unacked_pops"`, c.ID())
	})
}
