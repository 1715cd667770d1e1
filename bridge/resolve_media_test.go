package bridge_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// fixtureSnapshot loads the first frame of testdata/snapshots/<name>.json
// (generated from the SDK's Conversationeventtopic* models), lets edit
// change its eventBody's participants, and returns it as a snapshot
// received now.
func fixtureSnapshot(t *testing.T, name string, edit func(parts []any)) bridge.Snapshot {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "snapshots", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var frames []struct {
		TopicName string         `json:"topicName"`
		EventBody map[string]any `json:"eventBody"`
	}
	if err := json.Unmarshal(raw, &frames); err != nil {
		t.Fatal(err)
	}
	body := frames[0].EventBody
	edit(body["participants"].([]any))
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	return bridge.Snapshot{Topic: frames[0].TopicName, Agent: channelAgent, Body: b, ReceivedAt: time.Now()}
}

// byPurpose returns the participant of parts with purpose p.
func byPurpose(t *testing.T, parts []any, p string) map[string]any {
	t.Helper()
	for _, x := range parts {
		if m := x.(map[string]any); m["purpose"] == p {
			return m
		}
	}
	t.Fatalf("no %s participant", p)
	return nil
}

// TestResolver_EmailDisplayName: an email sender's address written with
// its display name, as mail headers carry it ("Jane Doe"
// <jane.doe@example.com>), is still the sender's email: the pop opens
// the contact holding it, not an empty create form.
func TestResolver_EmailDisplayName(t *testing.T) {
	defer goleak.VerifyNone(t)
	dv := dataversetest.New(dataversetest.Config{})
	jane := dv.AddContact(dataversetest.Contact{FirstName: "Jane", LastName: "Doe", EMailAddress1: "jane.doe@example.com"})
	if err := dv.Start(); err != nil {
		t.Fatal(err)
	}
	defer dv.Close()
	for _, addr := range []string{
		`"Jane Doe" <jane.doe@example.com>`,
		`Jane Doe <jane.doe@example.com>`,
		`"Doe, Jane" <jane.doe@example.com>`,
		`<jane.doe@example.com>`,
	} {
		t.Run(addr, func(t *testing.T) {
			s := fixtureSnapshot(t, "email_inbound", func(parts []any) {
				byPurpose(t, parts, "customer")["address"] = addr
			})
			e, p := channelPop(t, dv, "US", s)
			if e.Customer.Email != "jane.doe@example.com" {
				t.Errorf("customer email %q, want jane.doe@example.com", e.Customer.Email)
			}
			if p.Target.Action != bridge.ActionOpen || p.Target.ID != jane {
				t.Errorf("pop %s %s (prefill %v), want open %s", p.Target.Action, p.Target.ID, p.Prefill, jane)
			}
		})
	}
}

// TestResolver_OutboundMessage: a message the agent starts (an outbound
// SMS or WhatsApp) goes from the organization's number to the customer's.
// The customer is the message's recipient (toAddress), not its sender: the
// sender is the contact centre's own number, which would open the
// company's own account (or offer a contact prefilled with the company's
// number). The customer participant carries no address of its own (as in
// the emulator's messaging conversations), or one that repeats its
// fromAddress (as docs/events.md describes a messaging participant): the
// organization's number too.
func TestResolver_OutboundMessage(t *testing.T) {
	defer goleak.VerifyNone(t)
	dv := dataversetest.New(dataversetest.Config{})
	jane := dv.AddContact(dataversetest.Contact{FirstName: "Jane", LastName: "Doe", MobilePhone: "(317) 555-0177"})
	dv.AddAccount("Contoso Contact Centre", "+1 800-555-1000", "")
	if err := dv.Start(); err != nil {
		t.Fatal(err)
	}
	defer dv.Close()
	const org, customer = "+18005551000", "+13175550177"
	for _, address := range []string{"", org} {
		for _, typ := range []string{"sms", "whatsapp"} {
			t.Run(fmt.Sprintf("%s/address=%q", typ, address), func(t *testing.T) {
				s := fixtureSnapshot(t, "sms_message", func(parts []any) {
					cust := byPurpose(t, parts, "customer")
					delete(cust, "address")
					if address != "" {
						cust["address"] = address
					}
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
}

// TestResolver_OutboundEmail: an email the agent starts pops the
// recipient (the external participant's address).
func TestResolver_OutboundEmail(t *testing.T) {
	defer goleak.VerifyNone(t)
	dv := dataversetest.New(dataversetest.Config{})
	jane := dv.AddContact(dataversetest.Contact{FirstName: "Jane", LastName: "Doe", EMailAddress1: "jane@example.com"})
	if err := dv.Start(); err != nil {
		t.Fatal(err)
	}
	defer dv.Close()
	for _, purpose := range []string{"customer", "external"} {
		t.Run(purpose, func(t *testing.T) {
			s := fixtureSnapshot(t, "email_inbound", func(parts []any) {
				cust := byPurpose(t, parts, "customer")
				cust["purpose"] = purpose
				cust["emails"].([]any)[0].(map[string]any)["direction"] = "outbound"
				am := byPurpose(t, parts, "agent")["emails"].([]any)[0].(map[string]any)
				am["direction"], am["state"], am["initialState"] = "outbound", "connected", "connected"
			})
			_, p := channelPop(t, dv, "US", s)
			if p.Target.Action != bridge.ActionOpen || p.Target.ID != jane {
				t.Errorf("pop %s %s, want open %s", p.Target.Action, p.Target.ID, jane)
			}
		})
	}
}
