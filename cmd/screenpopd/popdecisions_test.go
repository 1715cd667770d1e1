package main

import (
	"strings"
	"testing"

	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// TestDaemon_WebMessagingGuestIsNoName: Genesys names every web messaging
// customer participant "Web Messaging Guest" (docs/events.md's example,
// the research capture in shared/reference/genesys.md (e)). An unknown
// guest's create pop must not offer a new contact called "Web" "Messaging
// Guest": the agent would have to notice and clear both fields, or
// Dynamics fills up with contacts of that name.
func TestDaemon_WebMessagingGuestIsNoName(t *testing.T) {
	d, _ := MustStartDemo(t, testEnv(t))
	agent := demoAgents[0].ID
	ws := dialAgent(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))

	// The emulator's web messaging customer is named "Web Messaging
	// Guest", as on Genesys; the guest's email is in no record.
	msg := d.Genesys.Message(agent, "Jane", notificationstest.Options{QueueID: "q-chat",
		Attributes: map[string]string{"email": "jane.new@example.com"}})
	msg.Alert()
	p := readPop(t, ws)
	if p.ConversationID != msg.ID() || p.Target.Action != "create" {
		t.Fatalf("pop %+v, want create for the web messaging conversation", p)
	}
	if p.Prefill["emailaddress1"] != "jane.new@example.com" {
		t.Errorf("prefill %v lacks the guest's email", p.Prefill)
	}
	for _, col := range []string{"firstname", "lastname"} {
		if v := p.Prefill[col]; strings.Contains(strings.ToLower(v), "guest") || v == "Web" {
			t.Errorf("prefill %s=%q: Genesys' placeholder for a web messaging customer offered as the contact's name", col, v)
		}
	}
}
