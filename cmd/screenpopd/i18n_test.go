package main

import (
	"strings"
	"testing"

	"github.com/screenpop/screenpop/dataverse/dataversetest"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// TestDaemon_IndiaContactCentre: a deployment in India
// (SCREENPOP_PHONE_REGION=IN), end to end through both emulators and the
// agent's websocket. Indian CRMs hold mobile numbers as ten digits
// without the trunk 0 ("98765 43210"), which the daemon itself reads in
// region IN as +91 98765 43210: a call from that number opens the
// contact. A chat customer whose input method is in full-width mode
// types the email as ｐｒｉｙａ＠ｅｘａｍｐｌｅ．ｉｎ: that is her address.
// A new chat customer's form fields ("Ana Paula", "de Souza") fill the
// new contact's first and last name as typed. No log line carries any of
// it.
func TestDaemon_IndiaContactCentre(t *testing.T) {
	vars := testEnv(t)
	vars["SCREENPOP_PHONE_REGION"] = "IN"
	d, logs := MustStartDemo(t, vars)
	agent := demoAgents[0].ID
	priya := d.Dataverse.AddContact(dataversetest.Contact{FirstName: "प्रिया", LastName: "Sharma", MobilePhone: "98765 43210", EMailAddress1: "priya@example.in"})
	ws := dialAgent(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))

	call := d.Genesys.InboundCall(agent, "+919876543210", notificationstest.Options{QueueID: "q-1"})
	call.Alert()
	if p := readPop(t, ws); p.ConversationID != call.ID() || p.Target.Action != "open" || p.Target.ID != priya {
		t.Errorf("call from +91 98765 43210: pop %s %s (prefill %v), want open %s, the contact holding 98765 43210", p.Target.Action, p.Target.ID, p.Prefill, priya)
	}

	chat := d.Genesys.Chat(agent, notificationstest.Options{QueueID: "q-chat", Name: "Priya",
		Attributes: map[string]string{"context.email": "ｐｒｉｙａ＠ｅｘａｍｐｌｅ．ｉｎ"}})
	chat.Alert()
	if p := readPop(t, ws); p.ConversationID != chat.ID() || p.Target.Action != "open" || p.Target.ID != priya {
		t.Errorf("chat from ｐｒｉｙａ＠ｅｘａｍｐｌｅ．ｉｎ: pop %s %s (prefill %v), want open %s", p.Target.Action, p.Target.ID, p.Prefill, priya)
	}

	chat2 := d.Genesys.Chat(agent, notificationstest.Options{QueueID: "q-chat",
		Attributes: map[string]string{"context.firstName": "Ana Paula", "context.lastName": "de Souza", "context.email": "ana.paula@example.com.br"}})
	chat2.Alert()
	p := readPop(t, ws)
	if p.ConversationID != chat2.ID() || p.Target.Action != "create" || p.Prefill["firstname"] != "Ana Paula" || p.Prefill["lastname"] != "de Souza" {
		t.Errorf("new chat customer Ana Paula de Souza: pop %s, prefill %v; want create with firstname \"Ana Paula\", lastname \"de Souza\"", p.Target.Action, p.Prefill)
	}
	for _, pii := range []string{"98765", "9876543210", "priya", "ｐｒｉｙａ", "Ana Paula", "Souza", "प्रिया"} {
		if strings.Contains(logs.String(), pii) {
			t.Errorf("the log carries %q", pii)
		}
	}
}
