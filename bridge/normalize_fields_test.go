package bridge

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// Participants of a hand-built snapshot, written as the topic schema
// (Conversationeventtopicparticipant) names their fields.
type snapPart map[string]any

func snapCustomer(addr string) snapPart {
	return snapPart{"id": "00000001-0000-4000-8000-000000000900", "purpose": "customer", "name": "BOSTON MA", "address": addr,
		"calls": []any{map[string]any{"id": "k-cust", "state": "connected", "direction": "inbound",
			"self": map[string]any{"addressNormalized": addr}, "other": map[string]any{"addressNormalized": "tel:+18005551000"}}}}
}

func snapACD(id, queue string) snapPart {
	return snapPart{"id": id, "purpose": "acd", "queueId": queue, "endTime": "2025-03-04T15:00:10.000Z",
		"calls": []any{map[string]any{"id": "k-" + id, "state": "disconnected", "direction": "inbound", "disconnectType": "transfer"}}}
}

// snapAgent is agent A's participant with one communication of media
// (calls, chats, ...).
func snapAgent(media string, comm map[string]any, extra snapPart) snapPart {
	p := snapPart{"id": "00000010-0000-4000-8000-000000000900", "userId": fxAgentA, "purpose": "agent", media: []any{comm}}
	for k, v := range extra {
		p[k] = v
	}
	return p
}

func snapshotOf(t *testing.T, sec int, parts ...snapPart) Snapshot {
	t.Helper()
	b, err := json.Marshal(map[string]any{"id": "c0c0c0c0-0000-4000-8000-000000000900", "participants": parts})
	if err != nil {
		t.Fatal(err)
	}
	return Snapshot{Topic: fmt.Sprintf("v2.users.%s.conversations", fxAgentA), Agent: fxAgentA, Body: b,
		ReceivedAt: fixtureEpoch.Add(time.Duration(sec) * time.Second)}
}

// TestNormalizer_QueueIdIsWhereTheLegCameFrom: events.md's queueId is
// "the agent participant's queue, else its routing data, else the ACD leg's
// queue; "" for direct calls", and queueOf's doc adds that an ACD
// participant listed after the agent's (the agent transferred the call to
// a queue) is where the call went, not where the leg came from.
func TestNormalizer_QueueIdIsWhereTheLegCameFrom(t *testing.T) {
	t.Run("DirectCallTransferredToAQueueKeepsNoQueue", func(t *testing.T) {
		n := MustNormalizer(t, NormalizerConfig{})
		cust := snapCustomer("tel:+16175550123")
		talking := map[string]any{"id": "k-a", "state": "connected", "direction": "inbound", "connectedTime": "2025-03-04T15:00:05.000Z"}
		gone := map[string]any{"id": "k-a", "state": "disconnected", "direction": "inbound", "disconnectType": "transfer",
			"connectedTime": "2025-03-04T15:00:05.000Z", "disconnectedTime": "2025-03-04T15:00:30.000Z"}
		got := n.Normalize(snapshotOf(t, 5, cust, snapAgent("calls", talking, nil)))
		// The agent blind-transfers the direct call to the sales queue: the
		// queue's ACD participant joins after the agent's.
		got = append(got, n.Normalize(snapshotOf(t, 30, cust,
			snapAgent("calls", gone, snapPart{"endTime": "2025-03-04T15:00:30.000Z"}),
			snapPart{"id": "00000003-0000-4000-8000-000000000900", "purpose": "acd", "queueId": fxQueueS,
				"calls": []any{map[string]any{"id": "k-acd", "state": "connected", "direction": "inbound"}}}))...)
		if len(got) != 2 || got[0].State != StateConnected || got[1].State != StateDisconnected {
			t.Fatalf("want connected then disconnected, got\n%s", dumpEvents(got))
		}
		for _, e := range got {
			if e.QueueID != "" {
				t.Errorf("%s event of a direct call has queueId %q (the queue it was transferred to), want \"\"", e.State, e.QueueID)
			}
		}
	})
	t.Run("RoutingDataBeforeTheACDLeg", func(t *testing.T) {
		// The call waited in the service queue, whose flow moved it to the
		// sales queue, which offered it to the agent: the agent
		// participant's routing data names sales.
		n := MustNormalizer(t, NormalizerConfig{})
		ringing := map[string]any{"id": "k-a", "state": "alerting", "direction": "inbound"}
		got := n.Normalize(snapshotOf(t, 5, snapCustomer("tel:+16175550123"),
			snapACD("00000002-0000-4000-8000-000000000900", fxQueueC),
			snapAgent("calls", ringing, snapPart{"conversationRoutingData": map[string]any{"queue": map[string]any{"id": fxQueueS}}})))
		if len(got) != 1 || got[0].QueueID != fxQueueS {
			t.Fatalf("want one event with the agent's routing queue %s, got\n%s", fxQueueS, dumpEvents(got))
		}
	})
}

// TestNormalizer_CustomerPurposeWinsOverAnEarlierExternal: "The customer
// is the conversation's participant with purpose customer, else the first
// with purpose external" (events.md), whatever order Genesys lists them in.
func TestNormalizer_CustomerPurposeWinsOverAnEarlierExternal(t *testing.T) {
	n := MustNormalizer(t, NormalizerConfig{})
	external := snapPart{"id": "00000004-0000-4000-8000-000000000900", "purpose": "external", "name": "ACME SUPPLIER", "address": "tel:+14155550100",
		"calls": []any{map[string]any{"id": "k-ext", "state": "connected", "direction": "outbound",
			"self": map[string]any{"addressNormalized": "tel:+14155550100"}}}}
	ringing := map[string]any{"id": "k-a", "state": "alerting", "direction": "inbound"}
	got := n.Normalize(snapshotOf(t, 5, external, snapCustomer("tel:+16175550123"), snapAgent("calls", ringing, nil)))
	if len(got) != 1 {
		t.Fatalf("want one event, got\n%s", dumpEvents(got))
	}
	if c := got[0].Customer; c.Phone != "+16175550123" || c.Address != "tel:+16175550123" {
		t.Fatalf("customer %+v, want the customer participant (+16175550123), not the external one listed first", c)
	}
}

// TestNormalizer_StateAndDirectionOfLegsNotYetRinging: dialing is "the
// agent's own outbound leg before the far end answers" (events.md); an
// inbound call the platform is still reaching the agent's station with
// (contacting) is alerting, and a chat, which carries no direction in
// Genesys, is outbound when the agent started it (its initialState).
func TestNormalizer_StateAndDirectionOfLegsNotYetRinging(t *testing.T) {
	for _, tt := range []struct {
		name, media string
		comm        map[string]any
		state       State
		dir         string
	}{
		{"InboundCallContactingIsAlerting", "calls",
			map[string]any{"id": "k-a", "state": "contacting", "direction": "inbound"}, StateAlerting, DirectionInbound},
		{"ChatTheAgentStartedIsOutbound", "chats",
			map[string]any{"id": "k-a", "state": "contacting", "initialState": "contacting"}, StateDialing, DirectionOutbound},
		{"ChatOfferedToTheAgentIsInbound", "chats",
			map[string]any{"id": "k-a", "state": "alerting", "initialState": "alerting"}, StateAlerting, DirectionInbound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := MustNormalizer(t, NormalizerConfig{})
			got := n.Normalize(snapshotOf(t, 5, snapCustomer("tel:+16175550123"), snapAgent(tt.media, tt.comm, nil)))
			if len(got) != 1 || got[0].State != tt.state || got[0].Direction != tt.dir {
				t.Fatalf("want one %s %s event, got\n%s", tt.dir, tt.state, dumpEvents(got))
			}
		})
	}
}

// TestNormalizer_AnOpenLegIsRememberedForTwelveHours: events.md promises
// one event per leg and state, and that the bridge forgets a leg only after
// "no snapshot for 12 hours" (IdleTTL): a leg with no snapshot for six
// hours (a web messaging conversation whose customer writes again; a long
// call here) makes no second connected event.
func TestNormalizer_AnOpenLegIsRememberedForTwelveHours(t *testing.T) {
	clk := &testClock{t: fixtureEpoch}
	n := MustNormalizer(t, NormalizerConfig{Now: clk.Now})
	talking := map[string]any{"id": "k-a", "state": "connected", "direction": "inbound", "connectedTime": "2025-03-04T15:00:00.000Z"}
	snap := func() Snapshot {
		s := snapshotOf(t, 0, snapCustomer("tel:+16175550123"), snapAgent("calls", talking, nil))
		s.ReceivedAt = clk.Now()
		return s
	}
	if got := n.Normalize(snap()); len(got) != 1 || got[0].State != StateConnected {
		t.Fatalf("first sight: %s", dumpEvents(got))
	}
	// Six quiet hours; the agent's other conversations run the sweep.
	for i := range 12 {
		clk.Add(30 * time.Minute)
		n.Normalize(otherConversation(t, i, clk.Now()))
	}
	if got := n.Normalize(snap()); len(got) != 0 {
		t.Fatalf("the same connected leg after 6 quiet hours was reported again:\n%s", dumpEvents(got))
	}
}

// TestNormalizer_CustomerEmailFromTheEmailAttribute: customer.email is "the
// email address of an email conversation, else the context.email (or
// email) attribute" (events.md), the address alone when written with a
// display name or as mailto:. A flow that sets email rather than
// context.email still gets the caller looked up by it.
func TestNormalizer_CustomerEmailFromTheEmailAttribute(t *testing.T) {
	for _, tt := range []struct {
		name  string
		attrs map[string]string
		want  string
	}{
		{"EmailAttribute", map[string]string{"email": "jane.doe@example.com"}, "jane.doe@example.com"},
		{"EmailAttributeAsMailto", map[string]string{"email": "mailto:jane.doe@example.com"}, "jane.doe@example.com"},
		{"ContextEmailFirst", map[string]string{"context.email": "jane@example.com", "email": "other@example.com"}, "jane@example.com"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := MustNormalizer(t, NormalizerConfig{})
			cust := snapPart{"id": "00000001-0000-4000-8000-000000000900", "purpose": "customer", "name": "Jane Doe",
				"address": "guest-7f3a", "attributes": tt.attrs,
				"chats": []any{map[string]any{"id": "k-cust", "state": "connected", "direction": "inbound"}}}
			ringing := map[string]any{"id": "k-a", "state": "alerting", "initialState": "alerting"}
			got := n.Normalize(snapshotOf(t, 5, cust, snapAgent("chats", ringing, nil)))
			if len(got) != 1 || got[0].Customer.Email != tt.want {
				t.Fatalf("want one event with customer.email %q, got\n%s", tt.want, dumpEvents(got))
			}
		})
	}
}

// TestNormalizer_AddressesAreReadNormalizedFirst: a communication's address
// is its addressNormalized, else its addressRaw (addressOf): the raw form is
// what the carrier or the customer's phone sent, often national digits of
// another country, which read in SCREENPOP_PHONE_REGION are another number
// or none. A US deployment's UK service number is the dnis the caller
// dialled.
func TestNormalizer_AddressesAreReadNormalizedFirst(t *testing.T) {
	n := MustNormalizer(t, NormalizerConfig{PhoneRegion: "US"})
	cust := snapPart{"id": "00000001-0000-4000-8000-000000000900", "purpose": "customer", "name": "Jane Doe",
		"calls": []any{map[string]any{"id": "k-cust", "state": "connected", "direction": "inbound",
			"self":  map[string]any{"addressRaw": "07700900123", "addressNormalized": "tel:+447700900123"},
			"other": map[string]any{"addressRaw": "02079460018", "addressNormalized": "tel:+442079460018"}}}}
	ringing := map[string]any{"id": "k-a", "state": "alerting", "direction": "inbound"}
	got := n.Normalize(snapshotOf(t, 5, cust, snapAgent("calls", ringing, nil)))
	if len(got) != 1 || got[0].DNIS != "+442079460018" || got[0].Customer.Phone != "+447700900123" {
		t.Fatalf("want one event with dnis +442079460018 and customer.phone +447700900123, got\n%s", dumpEvents(got))
	}
}
