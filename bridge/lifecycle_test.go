package bridge

// Legs over long stretches of time (idle messaging, late wrap-ups) and
// the pops of legs without a customer to look up.

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"
)

// testClock is a settable clock for the normalizer and the resolver.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// otherConversation is a snapshot of an unrelated conversation of the same
// agent: in production other traffic is what runs the normalizer's sweep.
func otherConversation(t *testing.T, no int, at time.Time) Snapshot {
	t.Helper()
	body := fmt.Sprintf(`{"id":"other-%d","participants":[{"id":"o-cust-%d","purpose":"customer","address":"tel:+13175550100",
	 "calls":[{"id":"k-%d","state":"connected","direction":"inbound"}]},
	 {"id":"o-ag-%d","userId":%q,"purpose":"agent","calls":[{"id":"ka-%d","state":"alerting","direction":"inbound"}]}]}`,
		no, no, no, no, fxAgentA, no)
	return Snapshot{Agent: fxAgentA, Body: []byte(body), ReceivedAt: at}
}

// webMessagingLeg is a web messaging conversation whose agent leg is
// connected; msgs is how many messages the customer has written (each one
// re-sends the snapshot).
func webMessagingLeg(t *testing.T, msgs int, at time.Time) Snapshot {
	t.Helper()
	var list []map[string]any
	for i := range msgs {
		list = append(list, map[string]any{"messageId": fmt.Sprintf("msg-%d", i), "messageStatus": "received"})
	}
	body, err := json.Marshal(map[string]any{"id": "c-idle-msg", "participants": []any{
		map[string]any{"id": "cust", "purpose": "customer", "name": "Web Messaging Guest",
			"attributes": map[string]string{"context.email": "jane@example.com"},
			"messages": []any{map[string]any{"id": "m-cust", "state": "connected", "direction": "inbound", "type": "webmessaging",
				"messages": list}}},
		map[string]any{"id": "leg-1", "userId": fxAgentA, "purpose": "agent", "queueId": fxQueueC,
			"messages": []any{map[string]any{"id": "m-ag", "state": "connected", "direction": "inbound", "type": "webmessaging",
				"connectedTime": "2025-03-04T15:00:10.000Z", "peerId": "m-cust"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return Snapshot{Agent: fxAgentA, Body: body, ReceivedAt: at}
}

// TestResolver_AnIdleMessagingLegPopsOnce: Genesys leaves an idle messaging
// conversation with its agent until the agent disconnects it (inactivity
// handling is off by default), and the customer may write again days later
// on the same agent leg. The normalizer forgets the unfinished conversation
// after IdleTTL (12 h) and reports the same leg connected again; by then the
// leg's pop marker (MarkerTTL, 24 h by default) is gone too, and the
// resolver pops the same leg a second time.
func TestResolver_AnIdleMessagingLegPopsOnce(t *testing.T) {
	clk := &testClock{t: fixtureEpoch}
	n := MustNormalizer(t, NormalizerConfig{Now: clk.Now})
	store := &fakeStore{}
	e := newResEnv(t, ResolverConfig{Now: clk.Now}, nil, nil, store, store)

	feed := func(s Snapshot) []Event {
		evs := n.Normalize(s)
		for i := range evs {
			e.handle(t, &evs[i])
		}
		return evs
	}
	if evs := feed(webMessagingLeg(t, 1, clk.Now())); len(evs) != 1 || evs[0].State != StateConnected {
		t.Fatalf("first sight: %s", dumpEvents(evs))
	}
	if n := len(e.pub.pops(t)); n != 1 {
		t.Fatalf("%d pops at first sight, want 1", n)
	}
	// Three days of silence; other conversations keep the normalizer busy
	// (and sweeping), and the pop marker expires (MarkerTTL 24 h).
	for i := range 4 {
		clk.Add(18 * time.Hour)
		feed(otherConversation(t, i, clk.Now()))
	}
	store.mu.Lock()
	delete(store.marks, "pop:c-idle-msg:leg-1") // the marker's TTL has passed
	store.mu.Unlock()
	e.pub.mu.Lock()
	e.pub.ids = nil // and so has JetStream's duplicate window (2 min)
	e.pub.mu.Unlock()

	// The customer writes again: the same leg, still connected.
	evs := feed(webMessagingLeg(t, 2, clk.Now()))
	// The normalizer has forgotten the leg (IdleTTL) and reports it
	// connected again, as after a restart; the resolver must not pop it.
	t.Logf("events for the new message: %d", len(evs))
	var legPops int
	for _, p := range e.pub.pops(t) {
		if p.ID == "pop:c-idle-msg:leg-1" {
			legPops++
		}
	}
	if legPops != 1 {
		t.Errorf("leg-1 popped %d times, want once", legPops)
	}
}

// TestNormalizer_ALateWrapUpReportsNoEndedLegAgain: an agent's wrap-up (or any later
// snapshot of a finished conversation: a message conversation threaded back
// within Genesys' 72 h threading timeline) that comes more than
// TombstoneTTL (10 min) after the last snapshot finds the tombstone swept
// and reports every ended leg disconnected again.
func TestNormalizer_ALateWrapUpReportsNoEndedLegAgain(t *testing.T) {
	// The clock runs with the fixture: the last frame before the wrap-up
	// (the hang-up, at second 200) arrives at 15:03:20.
	clk := &testClock{t: fixtureEpoch.Add(200 * time.Second)}
	n := MustNormalizer(t, NormalizerConfig{Now: clk.Now})
	frames := MustLoadFrames(t, fixturePath("snapshots", "inbound_call"))
	got := normalizeAll(n, frames[:6])
	if len(got) != 3 {
		t.Fatalf("got %d events before the wrap-up, want 3", len(got))
	}
	// Wrap-up takes 12 minutes; the agent's other calls run the sweep.
	clk.Add(6 * time.Minute)
	n.Normalize(otherConversation(t, 1, clk.Now()))
	clk.Add(6 * time.Minute)
	n.Normalize(otherConversation(t, 2, clk.Now()))
	wrap := frames[6]
	wrap.ReceivedAt = clk.Now()
	if evs := n.Normalize(wrap); len(evs) != 0 {
		t.Errorf("the wrap-up snapshot of a leg that ended 12 minutes ago: %s", dumpEvents(evs))
	}
}

// TestResolver_PopInternalIsANoneTarget: DESIGN.md's configuration table says
// SCREENPOP_POP_INTERNAL "also pop[s] internal calls (a `none` target)". The
// resolver instead offers to create a contact, with nothing to prefill, for
// a colleague's call, and also pops the caller's own dialing leg.
func TestResolver_PopInternalIsANoneTarget(t *testing.T) {
	e := newResEnv(t, ResolverConfig{PopInternal: true}, nil, nil, nil, nil)
	ev := resEvent("c1", "agentB", "pB", StateAlerting)
	ev.Internal, ev.Customer = true, Customer{}
	e.handle(t, ev)
	p := e.one(t)
	if p.Target.Action != ActionNone {
		t.Errorf("internal pop target %+v, want action none (DESIGN.md, SCREENPOP_POP_INTERNAL)", p.Target)
	}
	if len(e.dir.calls) != 0 {
		t.Errorf("looked up %v for an internal call", e.dir.calls)
	}
}

// TestResolver_AnSMSAddressIsNoName: on SMS (and WhatsApp, open messaging)
// Genesys names the customer participant by its address, so the event's
// customer.name is the phone number, and a create pop prefills the contact's
// last name with it.
func TestResolver_AnSMSAddressIsNoName(t *testing.T) {
	n := MustNormalizer(t, NormalizerConfig{})
	evs := n.Normalize(MustLoadFrames(t, fixturePath("snapshots", "sms_message"))[0])
	if len(evs) != 1 {
		t.Fatalf("got %s", dumpEvents(evs))
	}
	e := newResEnv(t, ResolverConfig{}, nil, nil, nil, nil)
	evs[0].ReceivedAt = NewTime(time.Now())
	e.handle(t, &evs[0])
	p := e.one(t)
	if p.Target.Action != ActionCreate {
		t.Fatalf("target %+v", p.Target)
	}
	if ln := p.Prefill["lastname"]; ln == evs[0].Customer.Phone || ln == evs[0].Customer.Address {
		t.Errorf("prefill %v: the last name is the customer's phone number", p.Prefill)
	}
}
