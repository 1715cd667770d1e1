package bridge

import (
	"fmt"
	"testing"
)

// TestNormalizer_Participants runs participant lists of real conversation
// kinds beyond the generated fixtures (testdata/participants, written from
// the Conversationeventtopic* models): flows and bots before the agent,
// dialer calls, voicemail, third parties, transfers, supervisors. For each
// it pins which legs make events for the watched user and which participant
// is the customer the pop looks up.
func TestNormalizer_Participants(t *testing.T) {
	const (
		in   = DirectionInbound
		out  = DirectionOutbound
		A    = AgentID(fxAgentA)
		boss = AgentID("5e5e5e5e-3333-4333-8333-5e5e5e5e5e5e")
	)
	type ev struct {
		agent    AgentID
		role     int
		media    Media
		state    State
		dir      string
		internal bool
		phone    string
		address  string
		email    string
		name     string
		dnis     string
	}
	boston := func(e ev) ev {
		e.phone, e.address, e.name = "+16175550123", "tel:+16175550123", "BOSTON MA"
		return e
	}
	for _, tt := range []struct {
		file   string
		caseNo int
		want   []ev
	}{
		// The IVR's address is the number dialled, not the caller.
		{"ivr_acd", 101, []ev{boston(ev{agent: A, role: 10, media: MediaVoice, state: StateAlerting, dir: in, dnis: "+18005551000"})}},
		// Neither the message flow nor the bot (each with an address of
		// its own) is the customer; a web messaging id is no phone.
		{"bot_handoff", 102, []ev{{agent: A, role: 10, media: MediaMessage, state: StateAlerting, dir: in, address: "3175550177", email: "jane@example.com", name: "Jane"}}},
		{"dialer_progressive", 103, []ev{{agent: A, role: 10, media: MediaVoice, state: StateConnected, dir: out, phone: "+13175550142", address: "tel:+13175550142", name: "Jane Doe"}}},
		// Preview: the first of the contact's numbers.
		{"dialer_preview", 104, []ev{{agent: A, role: 10, media: MediaCallback, state: StateAlerting, dir: out, phone: "+13175550142", address: "+13175550142", name: "Jane Doe"}}},
		// The caller has hung up; the voicemail leg is no customer.
		{"acd_voicemail", 105, []ev{boston(ev{agent: A, role: 10, media: MediaCallback, state: StateAlerting, dir: in})}},
		{"conference_external", 106, []ev{
			boston(ev{agent: A, role: 10, media: MediaVoice, state: StateConnected, dir: in, dnis: "+18005551000"}),
			boston(ev{agent: A, role: 10, media: MediaVoice, state: StateDisconnected, dir: in, dnis: "+18005551000"}),
		}},
		{"consult_external", 107, []ev{boston(ev{agent: A, role: 10, media: MediaVoice, state: StateConnected, dir: in, dnis: "+18005551000"})}},
		{"chat_attributes", 108, []ev{{agent: A, role: 10, media: MediaChat, state: StateAlerting, dir: in, phone: "+16175550123", email: "jane@example.com", name: "Jane Doe"}}},
		// The sender, not the colleague in copy nor the forward's recipient.
		{"email_several", 109, []ev{{agent: A, role: 10, media: MediaEmail, state: StateAlerting, dir: in, address: "jane@example.com", email: "jane@example.com", name: "Jane Doe"}}},
		{"callback_numbers", 110, []ev{{agent: A, role: 10, media: MediaCallback, state: StateAlerting, dir: out, phone: "+13175550142", address: "(317) 555-0142", name: "Jane Doe"}}},
		{"internal_user", 111, []ev{{agent: A, role: 10, media: MediaVoice, state: StateAlerting, dir: in, internal: true}}},
		// Transferred to A by B: the caller, not B, whose leg ended with transfer.
		{"blind_transfer_target", 112, []ev{boston(ev{agent: A, role: 10, media: MediaVoice, state: StateAlerting, dir: in, dnis: "+18005551000"})}},
		// The platform dialled the customer and offers the answered call to
		// the agent as inbound: the customer dialled nothing, so no dnis
		// (the call's far end is the caller id the platform used).
		{"customer_first_callback", 113, []ev{{agent: A, role: 10, media: MediaVoice, state: StateAlerting, dir: in, phone: "+13175550142", address: "tel:+13175550142", name: "Jane Doe"}}},
		// A supervisor listening to or coaching A's call is offered
		// nothing: no leg, no pop of A's customer on the supervisor's screen.
		{"monitor", 114, nil},
		// Nor is one barging in on A's call (POST /api/v2/conversations/
		// calls/{id}/participants/{pid}/barge): its participant carries
		// bargedParticipantId (Conversationeventtopicparticipant, "If this
		// participant created a barge in conference") and no monitored or
		// coached id. Its call rings the supervisor's phone and connects:
		// without this it popped A's customer on the supervisor's screen.
		{"barge", 116, nil},
		// A direct call A does not answer goes to A's own voicemail, whose
		// participant may carry A's user id: the caller leaving a message
		// is no call of A's to pop.
		{"personal_voicemail", 115, []ev{
			boston(ev{agent: A, role: 10, media: MediaVoice, state: StateAlerting, dir: in, dnis: "+13175550100"}),
			boston(ev{agent: A, role: 10, media: MediaVoice, state: StateDisconnected, dir: in, dnis: "+13175550100"}),
		}},
	} {
		t.Run(tt.file, func(t *testing.T) {
			n := MustNormalizer(t, NormalizerConfig{})
			got := normalizeAll(n, MustLoadFrames(t, fixturePath("participants", tt.file)))
			if len(got) != len(tt.want) {
				t.Fatalf("got %d events, want %d:\n%s", len(got), len(tt.want), dumpEvents(got))
			}
			for i, w := range tt.want {
				e := got[i]
				part := ParticipantID(fmt.Sprintf("%08d-0000-4000-8000-%012d", w.role, tt.caseNo))
				if e.Agent.UserID != w.agent || e.Agent.ParticipantID != part || e.Media != w.media || e.State != w.state ||
					e.Direction != w.dir || e.Internal != w.internal || e.DNIS != w.dnis ||
					e.Customer.Phone != w.phone || e.Customer.Address != w.address || e.Customer.Email != w.email || e.Customer.Name != w.name {
					t.Errorf("event %d:\n got %s\nwant %+v (participant %s)", i, dumpEvents(got[i:i+1]), w, part)
				}
			}
		})
	}
}
