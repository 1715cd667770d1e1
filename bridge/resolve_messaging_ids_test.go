package bridge_test

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// TestResolver_OpenMessagingFromEmulator: an open messaging conversation as
// the Genesys emulator scripts it (notificationstest.NewMessage, from the
// SDK's Conversationeventtopicmessage model), whose sender's address is a
// number in international form written as a tel URI (tel:+16175550123),
// opens the contact holding that number. docs/events.md reads open
// messaging addresses as a phone "when the address starts with +": an
// E.164 number in a tel URI is the same international form, and the same
// form is read as a number on SMS and WhatsApp conversations.
func TestResolver_OpenMessagingFromEmulator(t *testing.T) {
	defer goleak.VerifyNone(t)
	dv := dataversetest.New(dataversetest.Config{})
	jane := dv.AddContact(dataversetest.Contact{FirstName: "Jane", LastName: "Doe", MobilePhone: "(617) 555-0123"})
	if err := dv.Start(); err != nil {
		t.Fatal(err)
	}
	defer dv.Close()
	for _, typ := range []string{"sms", "whatsapp", "open"} {
		t.Run(typ, func(t *testing.T) {
			c := notificationstest.NewMessage(channelAgent, "+16175550123", notificationstest.Options{
				MessageType: typ, Name: "Jane", QueueID: "c4a70000-0000-4000-8000-000000000002"})
			c.Alert()
			s := bridge.Snapshot{Topic: "v2.users." + channelAgent + ".conversations", Agent: channelAgent, Body: c.Snapshot(), ReceivedAt: time.Now()}
			e, p := channelPop(t, dv, "US", s)
			if e.Customer.Phone != "+16175550123" {
				t.Errorf("%s from %q: customer phone %q, want +16175550123", typ, e.Customer.Address, e.Customer.Phone)
			}
			if p.Target.Action != bridge.ActionOpen || p.Target.ID != jane {
				t.Errorf("%s from %q: pop %s %s (prefill %v), want open %s", typ, e.Customer.Address, p.Target.Action, p.Target.ID, p.Prefill, jane)
			}
		})
	}
}

// TestResolver_WhatsAppPrefixedAddress: a WhatsApp sender written with the
// "whatsapp:" scheme prefix (how Twilio names WhatsApp senders, and so what
// an open messaging integration bridging Twilio's WhatsApp hands Genesys as
// the sender id) is the number after the prefix: the pop opens the contact
// holding it, not a create form for a known customer.
func TestResolver_WhatsAppPrefixedAddress(t *testing.T) {
	defer goleak.VerifyNone(t)
	dv := dataversetest.New(dataversetest.Config{})
	jane := dv.AddContact(dataversetest.Contact{FirstName: "Jane", LastName: "Doe", MobilePhone: "(617) 555-0123"})
	if err := dv.Start(); err != nil {
		t.Fatal(err)
	}
	defer dv.Close()
	for _, tt := range []struct{ typ, addr string }{
		{"whatsapp", "whatsapp:+16175550123"},
		{"open", "whatsapp:+16175550123"},
	} {
		t.Run(tt.typ, func(t *testing.T) {
			s := fixtureSnapshot(t, "sms_message", func(parts []any) {
				cust := byPurpose(t, parts, "customer")
				cust["address"], cust["name"] = tt.addr, "Jane"
				cm := cust["messages"].([]any)[0].(map[string]any)
				cm["type"] = tt.typ
				cm["fromAddress"] = map[string]any{"addressNormalized": tt.addr, "addressRaw": tt.addr}
				byPurpose(t, parts, "agent")["messages"].([]any)[0].(map[string]any)["type"] = tt.typ
			})
			e, p := channelPop(t, dv, "US", s)
			if e.Customer.Phone != "+16175550123" {
				t.Errorf("%s from %q: customer phone %q, want +16175550123", tt.typ, tt.addr, e.Customer.Phone)
			}
			if p.Target.Action != bridge.ActionOpen || p.Target.ID != jane {
				t.Errorf("%s from %q: pop %s %s (prefill %v), want open %s", tt.typ, tt.addr, p.Target.Action, p.Target.ID, p.Prefill, jane)
			}
		})
	}
}

// TestResolver_OpenMessagingEmailSender: an open messaging integration may
// name its sender by email address (Open Messaging's idType Email). That
// address is the customer's email: the pop opens the contact holding it,
// as an email conversation from the same address does, rather than a
// create form without the address for a known customer.
func TestResolver_OpenMessagingEmailSender(t *testing.T) {
	defer goleak.VerifyNone(t)
	dv := dataversetest.New(dataversetest.Config{})
	jane := dv.AddContact(dataversetest.Contact{FirstName: "Jane", LastName: "Doe", EMailAddress1: "jane.doe@example.com"})
	if err := dv.Start(); err != nil {
		t.Fatal(err)
	}
	defer dv.Close()
	const addr = "Jane.Doe@example.com"
	s := fixtureSnapshot(t, "sms_message", func(parts []any) {
		cust := byPurpose(t, parts, "customer")
		cust["address"], cust["name"] = addr, "Jane Doe"
		cm := cust["messages"].([]any)[0].(map[string]any)
		cm["type"] = "open"
		cm["fromAddress"] = map[string]any{"addressNormalized": addr, "addressRaw": addr}
		byPurpose(t, parts, "agent")["messages"].([]any)[0].(map[string]any)["type"] = "open"
	})
	e, p := channelPop(t, dv, "US", s)
	if e.Customer.Email != addr {
		t.Errorf("open message from %q: customer email %q, want %q", addr, e.Customer.Email, addr)
	}
	if p.Target.Action != bridge.ActionOpen || p.Target.ID != jane {
		t.Errorf("open message from %q: pop %s %s (prefill %v), want open %s", addr, p.Target.Action, p.Target.ID, p.Prefill, jane)
	}
}
