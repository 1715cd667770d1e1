package bridge

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// eventSeeds are the encoded events of every fixture frame, as the bridge
// publishes them on screenpop.events.>.
func eventSeeds(f *testing.F) [][]byte {
	var out [][]byte
	for _, dir := range []string{"snapshots", "handwritten"} {
		files, _ := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
		for _, file := range files {
			n := MustNormalizer(f, NormalizerConfig{})
			for _, e := range normalizeAll(n, MustLoadFrames(f, file)) {
				m, err := EncodeEvent(&e, fixtureEpoch)
				if err != nil {
					f.Fatal(err)
				}
				out = append(out, m.Data)
			}
		}
	}
	return out
}

// FuzzResolver_HandleMessage feeds arbitrary messages on the events
// subjects (any service on the bus can publish there) to the resolver: it
// must never panic, acknowledge what it cannot decode, and every pop it
// publishes must decode and belong to the event's agent leg.
func FuzzResolver_HandleMessage(f *testing.F) {
	for _, b := range eventSeeds(f) {
		f.Add(b)
	}
	f.Add([]byte(`{"specversion":"1.0","type":"screenpop.conversation.alerting.v1","data":null}`))
	f.Add([]byte(`{"specversion":"1.0","type":"screenpop.conversation.alerting.v1","data":{"receivedAt":"9999-12-31T23:59:59.999Z"}}`))
	now := fixtureEpoch.Add(time.Second)
	f.Fuzz(func(t *testing.T, data []byte) {
		d := &fakeDir{lookup: func(_ context.Context, k Key) ([]Record, error) {
			if k.Kind == KeyPhone {
				return []Record{resRec("contact", resGUIDA, "A"), resRec("contact", resGUIDB, "B")}, nil
			}
			return []Record{resRec("account", resGUIDA, "A")}, nil
		}}
		pub := &fakePub{}
		r, err := NewResolver(ResolverConfig{Now: func() time.Time { return now }}, d, &fakeStore{}, pub, NewHasher([]byte("0123456789abcdef0123")), zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		if err := r.HandleMessage(context.Background(), data); err != nil {
			t.Fatalf("HandleMessage: %v (the fakes never fail)", err)
		}
		e, _ := DecodeEvent(data)
		for _, p := range pub.pops(t) {
			if e == nil || p.AgentID != e.Agent.UserID || p.ID != e.PopID() {
				t.Fatalf("pop %s for %s from event %+v", p.ID, p.AgentID, e)
			}
		}
	})
}

// FuzzDecodePop feeds arbitrary pop messages (as on screenpop.pops.>) to
// DecodePop: it must never panic.
func FuzzDecodePop(f *testing.F) {
	n := MustNormalizer(f, NormalizerConfig{})
	for _, e := range normalizeAll(n, MustLoadFrames(f, fixturePath("handwritten", "a_inbound_alerting"))) {
		p := &Pop{ID: e.PopID(), AgentID: e.Agent.UserID, ConversationID: e.ConversationID, Media: e.Media, State: e.State,
			Customer: PopCustomer{Phone: e.Customer.Phone, Name: e.Customer.Name}, Target: Target{Action: ActionOpen, Entity: "contact", ID: resGUIDA}, EventReceivedAt: e.ReceivedAt}
		m, err := EncodePop(p, fixtureEpoch)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(m.Data)
	}
	f.Add([]byte(`{"type":"screenpop.pop.v1","data":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := DecodePop(data)
		if (p == nil) == (err == nil) {
			t.Fatalf("DecodePop = %v, %v", p, err)
		}
	})
}
