package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/dataverse"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// capturePub keeps the pops the resolver publishes.
type capturePub struct {
	mu   sync.Mutex
	msgs []bridge.Message
}

func (p *capturePub) Publish(_ context.Context, m bridge.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, m)
	return nil
}

// channelAgent is the watched agent of the channel snapshots.
const channelAgent = "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa"

// channelSnapshot is a v2.users.{id}.conversations eventBody in the shape
// of testdata/participants: the customer participant cust (its media
// array under key), an ACD leg, and the agent's leg alerting (dialing for
// outbound) in the same media.
func channelSnapshot(t *testing.T, caseNo int, key, dir string, cust map[string]any) bridge.Snapshot {
	t.Helper()
	conv := fmt.Sprintf("c0c0c0c0-0000-4000-8000-%012d", caseNo)
	cust = maps.Clone(cust)
	cust["id"] = fmt.Sprintf("00000001-0000-4000-8000-%012d", caseNo)
	if cust["purpose"] == nil {
		cust["purpose"] = "customer"
	}
	state := "alerting"
	if dir == bridge.DirectionOutbound {
		state = "dialing"
	}
	comm := map[string]any{"id": fmt.Sprintf("00000010-0001-4000-9000-%012d", caseNo), "state": state, "initialState": state,
		"direction": dir, "peerId": "cust-comm"}
	if key == "messages" {
		comm["type"] = cust[key].([]any)[0].(map[string]any)["type"]
	}
	body, err := json.Marshal(map[string]any{"id": conv, "participants": []any{
		cust,
		map[string]any{"id": fmt.Sprintf("00000003-0000-4000-8000-%012d", caseNo), "purpose": "acd", "queueId": "c4a70000-0000-4000-8000-000000000002",
			"endTime": "2025-03-04T15:00:05.000Z", key: []any{map[string]any{"id": "acd-comm", "state": "disconnected", "disconnectType": "transfer"}}},
		map[string]any{"id": fmt.Sprintf("00000010-0000-4000-8000-%012d", caseNo), "userId": channelAgent, "purpose": "agent",
			"queueId": "c4a70000-0000-4000-8000-000000000002", key: []any{comm}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return bridge.Snapshot{Topic: "v2.users." + channelAgent + ".conversations", Agent: channelAgent, Body: body, ReceivedAt: time.Now()}
}

// channelPop runs snapshot through a normalizer and a resolver backed by
// the Dataverse emulator dv (its client reading numbers in region) and
// returns the event and the pop.
func channelPop(t *testing.T, dv *dataversetest.Server, region string, s bridge.Snapshot) (bridge.Event, *bridge.Pop) {
	t.Helper()
	n, err := bridge.NewNormalizer(bridge.NormalizerConfig{PhoneRegion: region}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ec := dv.Config()
	dir, err := dataverse.New(dataverse.Config{URL: dv.URL(), ClientID: ec.ClientID, ClientSecret: ec.ClientSecret, TokenURL: dv.TokenURL(),
		AppID: "11111111-2222-3333-4444-555555555555", PhoneRegion: region}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	pub := &capturePub{}
	r, err := bridge.NewResolver(bridge.ResolverConfig{Deadline: 20 * time.Second}, dir, nopStore{}, pub, bridge.NewHasher([]byte("channels-test-key")), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	events := n.Normalize(s)
	if len(events) != 1 {
		t.Fatalf("%d events, want 1", len(events))
	}
	if err := r.Handle(context.Background(), &events[0]); err != nil {
		t.Fatal(err)
	}
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if len(pub.msgs) != 1 {
		t.Fatalf("%d pops published, want 1", len(pub.msgs))
	}
	p, err := bridge.DecodePop(pub.msgs[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	return events[0], p
}

// TestResolver_Channels drives one real-shaped snapshot of each kind of
// interaction Genesys delivers to an agent through the normalizer and the
// resolver, against a Dataverse holding the customer and strangers whose
// numbers share the digits of the customer's platform ids: each must open
// the customer's record, or offer a create form, never a stranger's.
func TestResolver_Channels(t *testing.T) {
	defer goleak.VerifyNone(t)
	dv := dataversetest.New(dataversetest.Config{})
	jane := dv.AddContact(dataversetest.Contact{FirstName: "Jane", LastName: "Doe", Telephone1: "(617) 555-0123", EMailAddress1: "jane.doe@example.com"})
	ola := dv.AddContact(dataversetest.Contact{FirstName: "Ola", LastName: "Nordmann", MobilePhone: "+44 7700 900123"})
	cal := dv.AddContact(dataversetest.Contact{FirstName: "Cal", LastName: "Back", Telephone2: "317.555.0142"})
	mai := dv.AddContact(dataversetest.Contact{FirstName: "Mai", LastName: "Ling", EMailAddress2: "Mai.Ling@Example.com"})
	// Strangers holding a social id's digits as a US number.
	for _, id := range []string{"3175550177", "2244994945", "4155550100"} {
		dv.AddContact(dataversetest.Contact{FirstName: "Some", LastName: "Stranger", MobilePhone: id})
	}
	if err := dv.Start(); err != nil {
		t.Fatal(err)
	}
	defer dv.Close()

	const in, out = bridge.DirectionInbound, bridge.DirectionOutbound
	call := func(addr, name string) map[string]any {
		return map[string]any{"name": name, "address": addr, "calls": []any{map[string]any{"id": "cust-comm", "state": "connected", "direction": "inbound",
			"self": map[string]any{"nameRaw": name, "addressNormalized": addr}, "other": map[string]any{"addressNormalized": "tel:+18005551000"}}}}
	}
	message := func(typ, from, name string, attrs map[string]any) map[string]any {
		p := map[string]any{"name": name, "messages": []any{map[string]any{"id": "cust-comm", "state": "connected", "direction": "inbound", "type": typ,
			"fromAddress": map[string]any{"addressNormalized": from, "nameRaw": name}, "toAddress": map[string]any{"addressNormalized": "+18005551000"}}}}
		if from != "" {
			p["address"] = from
		}
		if attrs != nil {
			p["attributes"] = attrs
		}
		return p
	}
	email := func(addr, name string) map[string]any {
		return map[string]any{"name": name, "address": addr, "emails": []any{map[string]any{"id": "cust-comm", "state": "connected", "direction": "inbound", "subject": "Invoice"}}}
	}
	for i, tt := range []struct {
		name    string
		key     string // media array
		dir     string
		cust    map[string]any
		action  bridge.Action
		id      string            // the record opened
		prefill map[string]string // for create
	}{
		{"VoiceTel", "calls", in, call("tel:+16175550123", "BOSTON MA"), bridge.ActionOpen, jane, nil},
		{"VoiceSIPURI", "calls", in, call("sip:+16175550123@10.0.0.1:5060;user=phone", "BOSTON MA"), bridge.ActionOpen, jane, nil},
		{"VoiceSIPNational", "calls", in, call("sip:6175550123@gw.example.com", ""), bridge.ActionOpen, jane, nil},
		{"VoiceTelExtension", "calls", in, call("tel:+16175550123;ext=12", ""), bridge.ActionOpen, jane, nil},
		{"VoiceWithheld", "calls", in, call("sip:anonymous@anonymous.invalid", "Anonymous"), bridge.ActionCreate, "", nil},
		{"VoiceOutbound", "calls", out, func() map[string]any { c := call("tel:+16175550123", "Jane Doe"); c["purpose"] = "external"; return c }(), bridge.ActionOpen, jane, nil},
		{"Callback", "callbacks", out, map[string]any{"name": "Cal Back", "callbacks": []any{map[string]any{"id": "cust-comm", "state": "connected", "direction": "outbound",
			"callbackNumbers": []any{"", "(317) 555-0142", "+13175550199"}, "callbackUserName": "Cal Back"}}}, bridge.ActionOpen, cal, nil},
		{"LegacyChat", "chats", in, map[string]any{"name": "Jane", "address": "5ee38185000014b95f962c5b@guest.orgspan.com",
			"attributes": map[string]any{"context.firstName": "Jane", "context.lastName": "Doe", "context.email": "JANE.DOE@example.com"},
			"chats":      []any{map[string]any{"id": "cust-comm", "state": "connected"}}}, bridge.ActionOpen, jane, nil},
		{"WebMessagingEmail", "messages", in, message("webmessaging", "", "Web Messaging Guest", map[string]any{"context.email": "jane.doe@example.com"}), bridge.ActionOpen, jane, nil},
		{"WebMessagingAnonymous", "messages", in, message("webmessaging", "", "Web Messaging Guest", nil), bridge.ActionCreate, "", nil},
		{"SMS", "messages", in, message("sms", "+16175550123", "+16175550123", nil), bridge.ActionOpen, jane, nil},
		{"WhatsApp", "messages", in, message("whatsapp", "447700900123", "Ola", nil), bridge.ActionOpen, ola, nil},
		{"OpenInternational", "messages", in, message("open", "+16175550123", "Jane", nil), bridge.ActionOpen, jane, nil},
		{"Facebook", "messages", in, message("facebook", "3175550177", "Jane Doe", nil), bridge.ActionCreate, "", map[string]string{"firstname": "Jane", "lastname": "Doe"}},
		{"Instagram", "messages", in, message("instagram", "3175550177", "jd", nil), bridge.ActionCreate, "", map[string]string{"lastname": "jd"}},
		{"Twitter", "messages", in, message("twitter", "2244994945", "Jane", nil), bridge.ActionCreate, "", map[string]string{"lastname": "Jane"}},
		{"Line", "messages", in, message("line", "4155550100", "Jane", nil), bridge.ActionCreate, "", map[string]string{"lastname": "Jane"}},
		{"Apple", "messages", in, message("apple", "urn:mbid:AQAAY", "Jane", nil), bridge.ActionCreate, "", map[string]string{"lastname": "Jane"}},
		{"OpenPlatformID", "messages", in, message("open", "3175550177", "Jane", nil), bridge.ActionCreate, "", map[string]string{"lastname": "Jane"}},
		{"FacebookWithFormPhone", "messages", in, message("facebook", "3175550177", "Jane", map[string]any{"context.phoneNumber": "617-555-0123"}), bridge.ActionOpen, jane, nil},
		{"EmailCase", "emails", in, email("MAI.LING@example.COM", "Mai Ling"), bridge.ActionOpen, mai, nil},
		{"EmailUnknown", "emails", in, email("new.customer@example.net", "New Customer"), bridge.ActionCreate, "",
			map[string]string{"emailaddress1": "new.customer@example.net", "firstname": "New", "lastname": "Customer"}},
		// Exchange and Outlook directories name senders "Last, First".
		{"EmailLastCommaFirst", "emails", in, email("new.customer@example.net", "Customer, New"), bridge.ActionCreate, "",
			map[string]string{"emailaddress1": "new.customer@example.net", "firstname": "New", "lastname": "Customer"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, p := channelPop(t, dv, "US", channelSnapshot(t, 500+i, tt.key, tt.dir, tt.cust))
			if p.Target.Action != tt.action || p.Target.ID != tt.id {
				t.Fatalf("customer phone %q email %q: pop %s %s %s (%s), want %s %s", e.Customer.Phone, e.Customer.Email,
					p.Target.Action, p.Target.Entity, p.Target.ID, p.Target.Name, tt.action, tt.id)
			}
			if tt.action == bridge.ActionCreate && tt.prefill != nil && !maps.Equal(p.Prefill, tt.prefill) {
				t.Errorf("prefill %v, want %v", p.Prefill, tt.prefill)
			}
		})
	}
}

// TestResolver_ChannelsAbroad: a caller or WhatsApp sender from a
// neighbouring country writes to a deployment whose contacts are stored
// in national form. The sender's own national digits are a valid domestic
// number of someone else: that stranger must not pop.
func TestResolver_ChannelsAbroad(t *testing.T) {
	defer goleak.VerifyNone(t)
	for i, tt := range []struct {
		name, region, key string
		cust              map[string]any
		stranger          dataversetest.Contact
	}{
		// A Belgian mobile (+32 470 12 34 56) and a Clermont-Ferrand
		// landline (+33 4 70 12 34 56) share the digits 0470123456.
		{"WhatsAppBelgiumToFrance", "FR", "messages", map[string]any{"name": "Lotte", "address": "32470123456", "messages": []any{map[string]any{
			"id": "cust-comm", "state": "connected", "direction": "inbound", "type": "whatsapp", "fromAddress": map[string]any{"addressNormalized": "32470123456"}}}},
			dataversetest.Contact{FirstName: "Marie", LastName: "Dupont", Telephone1: "0470123456"}},
		// A Swiss mobile (+41 79 123 45 67) and a French mobile (+33 7 91 23 45 67).
		{"CallSwitzerlandToFrance", "FR", "calls", map[string]any{"name": "Urs", "address": "tel:+41791234567", "calls": []any{map[string]any{
			"id": "cust-comm", "state": "connected", "direction": "inbound", "self": map[string]any{"addressNormalized": "tel:+41791234567"}}}},
			dataversetest.Contact{FirstName: "Luc", LastName: "Martin", MobilePhone: "0791234567"}},
		// An Austrian mobile (+43 664 1234567) and a Lauterbach landline (+49 6641 234567).
		{"SMSAustriaToGermany", "DE", "messages", map[string]any{"name": "+436641234567", "address": "+436641234567", "messages": []any{map[string]any{
			"id": "cust-comm", "state": "connected", "direction": "inbound", "type": "sms", "fromAddress": map[string]any{"addressNormalized": "+436641234567"}}}},
			dataversetest.Contact{FirstName: "Klaus", LastName: "Becker", Telephone1: "06641234567"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dv := dataversetest.New(dataversetest.Config{})
			dv.AddContact(tt.stranger)
			if err := dv.Start(); err != nil {
				t.Fatal(err)
			}
			defer dv.Close()
			e, p := channelPop(t, dv, tt.region, channelSnapshot(t, 600+i, tt.key, bridge.DirectionInbound, tt.cust))
			if p.Target.Action != bridge.ActionCreate {
				t.Fatalf("customer %s in a %s deployment: pop %s %s (%s), want create: %s %s is another person", e.Customer.Phone, tt.region,
					p.Target.Action, p.Target.ID, p.Target.Name, tt.stranger.FirstName, tt.stranger.LastName)
			}
		})
	}
}
