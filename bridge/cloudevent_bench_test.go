package bridge

import (
	"testing"
	"time"
)

// The CloudEvent envelope is on the hot path twice per event (encoded by
// the event publisher, decoded by the resolver) and once per pop (encoded
// by the resolver). These benchmarks fill the gap between BenchmarkNormalize
// and the resolver's.

func benchEvent() *Event {
	now := time.Date(2026, 11, 28, 11, 0, 0, 0, time.UTC)
	return &Event{
		ConversationID: "c0000000-0000-4000-8000-000000000001",
		Agent:          AgentLeg{UserID: "5e1f0a1c-0000-4000-8000-000000000001", ParticipantID: "d0000000-0000-4000-8000-000000000001"},
		Media:          MediaVoice, State: StateAlerting, Direction: "inbound",
		QueueID: "00000000-0000-4000-8000-0000000000a1", DNIS: "+18005551000",
		Customer:   Customer{Phone: "+13175550123", Address: "tel:+13175550123", Name: "Ada O'Brien", Attributes: map[string]string{"k": "v"}},
		ReceivedAt: NewTime(now), OccurredAt: NewTime(now.Add(-40 * time.Millisecond)),
	}
}

func BenchmarkEncodeEvent(b *testing.B) {
	e, now := benchEvent(), time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EncodeEvent(e, now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeEvent(b *testing.B) {
	m, err := EncodeEvent(benchEvent(), time.Now())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(m.Data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeEvent(m.Data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodePop(b *testing.B) {
	e := benchEvent()
	p := &Pop{
		ID: e.PopID(), ConversationID: e.ConversationID, AgentID: e.Agent.UserID, Media: e.Media, State: e.State,
		Customer: PopCustomer{Phone: e.Customer.Phone, Name: e.Customer.Name},
		Target: Target{Action: ActionOpen, Entity: "contact", ID: "00000000-0000-4000-8000-00000000c0de", Name: "Ada O'Brien",
			URL: "https://contoso.crm.dynamics.com/main.aspx?appid=00000000-0000-4000-8000-0000000000be&pagetype=entityrecord&etn=contact&id=00000000-0000-4000-8000-00000000c0de"},
		EventReceivedAt: e.ReceivedAt,
	}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		p.IssuedAt = NewTime(now)
		if _, err := EncodePop(p, now); err != nil {
			b.Fatal(err)
		}
	}
}
