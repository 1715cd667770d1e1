package bridge

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestNormalizer_GenesysTimeOutsideRFC3339: a connectedTime (or
// disconnectedTime, endTime) that parses but lies, in UTC, outside the
// years RFC 3339 can write (9999-12-31T23:30:00-01:00 is 10000-01-01 in
// UTC) must not make an event that its consumers cannot read: occurredAt
// is written in UTC, as "10000-01-01T00:30:00.000Z", which is no
// date-time of docs/schema/event.schema.json and which the resolver's
// DecodeEvent refuses, so the leg's event is skipped as malformed and,
// with SCREENPOP_POP_ON=connected, the agent gets no pop (a disconnected
// event so written never ends the leg's pop marker). An unreadable time is
// "" (docs/events.md: occurredAt "" when unknown).
func TestNormalizer_GenesysTimeOutsideRFC3339(t *testing.T) {
	schema := MustSchema(t, "event")
	for _, connected := range []string{"9999-12-31T23:30:00-01:00", "0000-01-01T00:30:00+01:00"} {
		t.Run(connected, func(t *testing.T) {
			body := []byte(`{"id":"c0c0c0c0-0000-4000-8000-000000000001","participants":[` +
				`{"id":"p-cust","purpose":"customer","address":"tel:+16175550123","calls":[{"id":"k-cust","state":"connected","direction":"inbound"}]},` +
				`{"id":"00000010-0000-4000-8000-000000000001","userId":"` + fxAgentA + `","purpose":"agent","calls":[{"id":"k-agent","state":"connected","direction":"inbound","connectedTime":"` + connected + `"}]}]}`)
			n := MustNormalizer(t, NormalizerConfig{})
			evs := n.Normalize(Snapshot{Agent: fxAgentA, Body: body, ReceivedAt: fixtureEpoch})
			if len(evs) != 1 || evs[0].State != StateConnected {
				t.Fatalf("events %+v", evs)
			}
			m, err := EncodeEvent(&evs[0], fixtureEpoch)
			if err != nil {
				t.Fatal(err)
			}
			MustValidate(t, schema, m.Data)

			now := fixtureEpoch.Add(time.Second)
			d := &fakeDir{lookup: func(context.Context, Key) ([]Record, error) { return []Record{resRec("contact", resGUIDA, "A")}, nil }}
			pub := &fakePub{}
			r, err := NewResolver(ResolverConfig{PopOn: StateConnected, Now: func() time.Time { return now }}, d, &fakeStore{}, pub, NewHasher([]byte("0123456789abcdef0123")), zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			if err := r.HandleMessage(context.Background(), m.Data); err != nil {
				t.Fatal(err)
			}
			if pops := pub.pops(t); len(pops) != 1 {
				t.Fatalf("%d pops for the connected leg (SCREENPOP_POP_ON=connected); its event:\n%s", len(pops), m.Data)
			}
		})
	}
}
