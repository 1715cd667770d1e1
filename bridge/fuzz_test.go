package bridge

import (
	"bytes"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// FuzzNormalize_Contract feeds two arbitrary snapshot bodies in turn
// (seeded with consecutive fixture frames, and a call with its times, ids
// and numbers edited) of a real agent (a UUID, as the agents file holds)
// to the normalizer, and checks each event against what docs/events.md
// promises a consumer: the message validates against
// docs/schema/event.schema.json, a consumer (the resolver) can decode it
// back to the same event, its subject is the documented one, one event
// per (leg, media, state), and a leg never goes backwards.
func FuzzNormalize_Contract(f *testing.F) {
	for _, dir := range []string{"snapshots", "handwritten"} {
		files, _ := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
		for _, file := range files {
			var prev []byte
			for _, s := range MustLoadFrames(f, file) {
				if s.Agent != fxAgentA {
					continue
				}
				if prev != nil {
					f.Add(prev, s.Body)
				}
				prev = s.Body
			}
		}
	}
	// One inbound call leg of agent A, its state and times edited.
	call := func(conv, part, custAddr, agentComm string) []byte {
		return []byte(`{"id":"` + conv + `","participants":[` +
			`{"id":"p-cust","purpose":"customer","address":"` + custAddr + `","calls":[{"id":"k-cust","state":"connected","direction":"inbound","self":{"addressNormalized":"` + custAddr + `"},"other":{"addressNormalized":"tel:+18005551000"}}]},` +
			`{"id":"` + part + `","userId":"` + fxAgentA + `","purpose":"agent","calls":[{"id":"k-agent","direction":"inbound",` + agentComm + `}]}]}`)
	}
	const conv, part = "c0c0c0c0-0000-4000-8000-000000000001", "00000010-0000-4000-8000-000000000001"
	for _, s := range [][]string{
		{conv, part, "tel:+16175550123", `"state":"alerting"`},
		{conv, part, "tel:+16175550123", `"state":"connected","connectedTime":"2025-03-04T15:00:40.000Z"`},
		{conv, part, "tel:+16175550123", `"state":"connected","connectedTime":"9999-12-31T23:30:00-01:00"`},
		{conv, part, "tel:+16175550123", `"state":"connected","connectedTime":"0000-01-01T00:30:00+01:00"`},
		{conv, part, "tel:+16175550123", `"state":"connected","connectedTime":"2025-03-04T15:00:40.123456789+14:00"`},
		{"c0:c0", part, "tel:+16175550123", `"state":"alerting"`},
		{conv, "00:10", "tel:+16175550123", `"state":"alerting"`},
		{conv, part, "tel:+٩٦٦٥٠١٢٣٤٥٦٧", `"state":"alerting"`},
		{conv, part, "sip:+4930123456789012@h;user=phone", `"state":"alerting"`},
	} {
		f.Add(call(s[0], s[1], s[2], `"state":"alerting"`), call(s[0], s[1], s[2], s[3]))
	}
	schema := MustSchema(f, "event")
	subject := regexp.MustCompile(`^screenpop\.events\.(voice|callback|chat|message|email)\.(alerting|dialing|connected|disconnected)\.` + fxAgentA + `$`)
	f.Fuzz(func(t *testing.T, first, second []byte) {
		n := MustNormalizer(t, NormalizerConfig{})
		rank := map[string]int{} // conversation:participant:media
		seen := map[string]bool{}
		for i, body := range [][]byte{first, second} {
			at := fixtureEpoch.Add(time.Duration(i) * time.Second)
			for _, e := range n.Normalize(Snapshot{Agent: fxAgentA, Body: body, ReceivedAt: at}) {
				m, err := EncodeEvent(&e, at)
				if err != nil {
					t.Fatalf("encode %+v: %v", e, err)
				}
				v, err := jsonschema.UnmarshalJSON(bytes.NewReader(m.Data))
				if err != nil {
					t.Fatalf("event is not JSON: %v\n%s", err, m.Data)
				}
				if err := schema.Validate(v); err != nil {
					t.Fatalf("event invalid against event.schema.json: %v\n%s", err, m.Data)
				}
				if !subject.MatchString(m.Subject) {
					t.Fatalf("subject %q", m.Subject)
				}
				back, err := DecodeEvent(m.Data)
				if err != nil {
					t.Fatalf("the published event does not decode: %v\n%s", err, m.Data)
				}
				if back.ID() != e.ID() || back.Customer.Phone != e.Customer.Phone || back.Customer.Email != e.Customer.Email ||
					!back.OccurredAt.Equal(e.OccurredAt.Truncate(time.Millisecond)) || !back.ReceivedAt.Equal(e.ReceivedAt.Truncate(time.Millisecond)) {
					t.Fatalf("decoded %+v\nfrom      %+v", back, e)
				}
				if seen[e.ID()] {
					t.Fatalf("event %s twice", e.ID())
				}
				seen[e.ID()] = true
				leg := string(e.ConversationID) + ":" + string(e.Agent.ParticipantID) + ":" + string(e.Media)
				if r := e.State.Rank(); r <= rank[leg] {
					t.Fatalf("leg %s went back to %s", leg, e.State)
				}
				rank[leg] = e.State.Rank()
			}
		}
	})
}
