package bridge_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// TestResolver_NoStrangersRecord drives caller addresses that are not the
// number of anyone on file through the normalizer and the resolver, against
// a Dataverse (region US) holding domestic customers whose stored digits
// those addresses resemble: each must pop a create form, never a
// stranger's record. The controls show the strangers are findable by their
// own numbers.
func TestResolver_NoStrangersRecord(t *testing.T) {
	defer goleak.VerifyNone(t)
	dv := dataversetest.New(dataversetest.Config{})
	// A New York customer whose number reads like the IPv4 address
	// 212.58.244.20; a Connecticut one stored as ten bare digits, the way
	// US records usually are, which are also Bergen's +47 55 12 34 56
	// written with its country code and no '+'; a Corpus Christi one whose
	// digits are Budapest's +36 1 234 5678 the same way.
	nyc := dv.AddContact(dataversetest.Contact{FirstName: "New", LastName: "Yorker", Telephone1: "(212) 582-4420"})
	ct := dv.AddContact(dataversetest.Contact{FirstName: "Connecticut", LastName: "Customer", Telephone1: "4755123456"})
	tx := dv.AddContact(dataversetest.Contact{FirstName: "Texas", LastName: "Customer", MobilePhone: "3612345678"})
	// A Maine customer whose ten digits are a London number's national
	// significant digits.
	me := dv.AddContact(dataversetest.Contact{FirstName: "Maine", LastName: "Customer", Telephone1: "207-946-0018"})
	london := dv.AddContact(dataversetest.Contact{FirstName: "London", LastName: "Customer", Telephone1: "+44 20 7946 0018"})
	if err := dv.Start(); err != nil {
		t.Fatal(err)
	}
	defer dv.Close()

	call := func(addr string) map[string]any {
		return map[string]any{"address": addr, "calls": []any{map[string]any{"id": "cust-comm", "state": "connected", "direction": "inbound",
			"self": map[string]any{"addressNormalized": addr}, "other": map[string]any{"addressNormalized": "tel:+18005551000"}}}}
	}
	for i, tt := range []struct {
		name   string
		addr   string
		action bridge.Action
		id     string
	}{
		// A SIP caller with no user part: the URI names a host, not a
		// number.
		{"SIPHostOnly", "sip:212.58.244.20", bridge.ActionCreate, ""},
		{"SIPHostPortParams", "sip:212.58.244.20:5060;transport=udp", bridge.ActionCreate, ""},
		// Foreign callers: their country code and digits without the '+'
		// are, stored so in a US deployment, a domestic stranger's number.
		{"NorwayCaller", "tel:+4755123456", bridge.ActionCreate, ""},
		{"HungaryCaller", "tel:+3612345678", bridge.ActionCreate, ""},
		// A local number in RFC 3966 form (tel URI, or a SIP URI's
		// telephone-subscriber user part) with a global phone-context
		// is the number within that context (+44 20 7946 0018), not a
		// national number of the deployment's region (Maine's
		// (207) 946-0018).
		{"TelPhoneContext", "tel:2079460018;phone-context=+44", bridge.ActionOpen, london},
		{"SIPPhoneContext", "sip:2079460018;phone-context=+44@gw.example.com;user=phone", bridge.ActionOpen, london},
		// Controls: the customers themselves.
		{"Maine", "tel:+12079460018", bridge.ActionOpen, me},
		{"NewYorker", "tel:+12125824420", bridge.ActionOpen, nyc},
		{"Connecticut", "tel:+14755123456", bridge.ActionOpen, ct},
		{"Texas", "sip:+13612345678@gw.example.com;user=phone", bridge.ActionOpen, tx},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, p := channelPop(t, dv, "US", channelSnapshot(t, 600+i, "calls", bridge.DirectionInbound, call(tt.addr)))
			if p.Target.Action != tt.action || p.Target.ID != tt.id {
				t.Fatalf("caller %q (phone %q): pop %s %s %s %s, want %s %s", tt.addr, e.Customer.Phone,
					p.Target.Action, p.Target.Entity, p.Target.ID, p.Target.Name, tt.action, tt.id)
			}
		})
	}
}
