package main

import (
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// Genesys' clock (the times in its frames and REST answers: startTime,
// connectedTime, disconnectedTime) minutes off this host's changes nothing:
// the age and deadline of a pop are measured from the frame's receipt here,
// and the only Genesys times read (connectedTime for the 12 h old_leg rule,
// disconnectedTime for the 10-minute tombstone) have hours or minutes of
// room. Each call pops once, at connected too.
func TestDaemon_GenesysClockSkewPopsOnce(t *testing.T) {
	vars := testEnv(t)
	vars["SCREENPOP_POP_ON"] = "connected"
	d, _ := MustStartDemo(t, vars)
	agent := demoAgents[0].ID
	ws := dialAgent(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))
	for _, skew := range []time.Duration{9 * time.Minute, -9 * time.Minute} {
		call := d.Genesys.InboundCall(agent, "+13175550144", notificationstest.Options{Now: func() time.Time { return time.Now().Add(skew) }})
		call.Alert()
		call.Connect()
		if p := readPop(t, ws); p.ConversationID != call.ID() || p.State != "connected" {
			t.Fatalf("Genesys %v off: pop %s %s, want %s connected", skew, p.ConversationID, p.State, call.ID())
		}
		call.Disconnect()
	}
	sentinel := d.Genesys.InboundCall(agent, "+13175550145", notificationstest.Options{})
	sentinel.Alert()
	sentinel.Connect()
	if p := readPop(t, ws); p.ConversationID != sentinel.ID() {
		t.Fatalf("pop for %s, want the sentinel %s (a second pop of a skewed call?)", p.ConversationID, sentinel.ID())
	}
}
