package bridge_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// TestResolver_OutboundMessageWithParticipantAddress is
// TestResolver_OutboundMessage with the customer participant's address and
// name left in place, as docs/events.md describes a messaging participant:
// its address repeats its fromAddress. For a message the agent started the
// sender is the organization's number, so the participant's address is
// that number too; the customer is still the recipient.
func TestResolver_OutboundMessageWithParticipantAddress(t *testing.T) {
	defer goleak.VerifyNone(t)
	dv := dataversetest.New(dataversetest.Config{})
	jane := dv.AddContact(dataversetest.Contact{FirstName: "Jane", LastName: "Doe", MobilePhone: "(317) 555-0177"})
	dv.AddAccount("Contoso Contact Centre", "+1 800-555-1000", "")
	if err := dv.Start(); err != nil {
		t.Fatal(err)
	}
	defer dv.Close()
	const org, customer = "+18005551000", "+13175550177"
	for _, typ := range []string{"sms", "whatsapp"} {
		t.Run(typ, func(t *testing.T) {
			s := fixtureSnapshot(t, "sms_message", func(parts []any) {
				cust := byPurpose(t, parts, "customer")
				cust["address"] = org // repeats fromAddress (docs/events.md)
				delete(cust, "name")
				cm := cust["messages"].([]any)[0].(map[string]any)
				cm["type"], cm["direction"] = typ, "outbound"
				cm["fromAddress"] = map[string]any{"addressNormalized": org, "addressRaw": org, "nameRaw": "Contoso"}
				cm["toAddress"] = map[string]any{"addressNormalized": customer, "addressRaw": customer}
				am := byPurpose(t, parts, "agent")["messages"].([]any)[0].(map[string]any)
				am["type"], am["direction"], am["state"], am["initialState"] = typ, "outbound", "connected", "connected"
			})
			e, p := channelPop(t, dv, "US", s)
			if e.Customer.Phone != customer {
				t.Errorf("customer phone %q, want the recipient %s (%s is the organization's number)", e.Customer.Phone, customer, org)
			}
			if e.Customer.Address == org {
				t.Errorf("customer address %q is the organization's number", e.Customer.Address)
			}
			if p.Target.Action != bridge.ActionOpen || p.Target.ID != jane {
				t.Errorf("pop %s %s %s (%s), want open contact %s", p.Target.Action, p.Target.Entity, p.Target.ID, p.Target.Name, jane)
			}
		})
	}
}
