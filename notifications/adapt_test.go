package notifications

import (
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
)

// TestAdaptConversation_SupervisorListening: after a gap the reconciliation
// reads a conversation a supervisor is monitoring through GET
// /api/v2/conversations/{id}. The supervisor's participant carries
// monitoredParticipantId there as on the topic; without it the normalizer
// takes the supervisor's listening leg for an offer and pops the agent's
// customer on the supervisor's screen.
func TestAdaptConversation_SupervisorListening(t *testing.T) {
	const supervisor = "5e5e5e5e-3333-4333-8333-5e5e5e5e5e5e"
	rest := []byte(`{"id":"c0c0c0c0-0000-4000-8000-000000000700","participants":[
 {"id":"00000001-0000-4000-8000-000000000700","purpose":"customer","name":"BOSTON MA","address":"tel:+16175550123","ani":"tel:+16175550123",
  "calls":[{"id":"k1","state":"connected","direction":"inbound","self":{"addressNormalized":"tel:+16175550123"}}]},
 {"id":"00000010-0000-4000-8000-000000000700","purpose":"agent","userId":"aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa",
  "calls":[{"id":"k10","state":"connected","direction":"inbound"}]},
 {"id":"00000050-0000-4000-8000-000000000700","purpose":"user","userId":"` + supervisor + `","monitoredParticipantId":"00000010-0000-4000-8000-000000000700",
  "calls":[{"id":"k50","state":"connected","direction":"outbound"}]}]}`)
	if ev := reconciledEvents(t, rest, supervisor); len(ev) != 0 {
		t.Fatalf("the monitoring supervisor got %d events (%s %s for customer %s): it would pop the agent's caller", len(ev), ev[0].Media, ev[0].State, ev[0].Customer.Phone)
	}
}

// TestAdaptConversation_SupervisorBarging: the REST Participant carries
// bargedParticipantId too (platformclientv2 participant.go: "If this
// participant barged in a participant's call"); the adapter must keep it,
// or a conversation reconciled after a gap pops the agent's customer on
// the screen of the supervisor who barged in.
func TestAdaptConversation_SupervisorBarging(t *testing.T) {
	const supervisor = "5e5e5e5e-3333-4333-8333-5e5e5e5e5e5e"
	rest := []byte(`{"id":"c0c0c0c0-0000-4000-8000-000000000701","participants":[
 {"id":"00000001-0000-4000-8000-000000000701","purpose":"customer","name":"BOSTON MA","address":"tel:+16175550123",
  "calls":[{"id":"k1","state":"connected","direction":"inbound","self":{"addressNormalized":"tel:+16175550123"}}]},
 {"id":"00000010-0000-4000-8000-000000000701","purpose":"agent","userId":"aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa",
  "calls":[{"id":"k10","state":"connected","direction":"inbound"}]},
 {"id":"00000050-0000-4000-8000-000000000701","purpose":"user","userId":"` + supervisor + `","bargedParticipantId":"00000010-0000-4000-8000-000000000701",
  "mediaRoles":["barge"],"calls":[{"id":"k50","state":"connected","direction":"outbound"}]}]}`)
	if ev := reconciledEvents(t, rest, supervisor); len(ev) != 0 {
		t.Fatalf("the barging supervisor got %d events (%s %s for customer %s): it would pop the agent's caller", len(ev), ev[0].Media, ev[0].State, ev[0].Customer.Phone)
	}
}

// reconciledEvents adapts rest, a conversation as GET
// /api/v2/conversations/{id} answers it, and returns the events the
// normalizer makes of it for agent.
func reconciledEvents(t *testing.T, rest []byte, agent bridge.AgentID) []bridge.Event {
	t.Helper()
	body, err := AdaptConversation(rest)
	if err != nil {
		t.Fatal(err)
	}
	n, err := bridge.NewNormalizer(bridge.NormalizerConfig{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return n.Normalize(bridge.Snapshot{Agent: agent, Body: body, ReceivedAt: time.Now(), Reconciled: true})
}
