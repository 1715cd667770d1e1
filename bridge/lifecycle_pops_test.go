package bridge_test

// Lifecycles of emails, chats and messages from Genesys frames to pops:
// the normalizer in front of the resolver wired as in screenpopd (the
// Dataverse emulator, an embedded NATS as pop store and publisher).

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/dataverse/dataversetest"
)

// wireComm is one communication of a participant in the topic's wire
// shape (Conversationeventtopic{Email,Chat,Message,...}).
type wireComm = map[string]any

// wireSnapshot builds a v2.users.{agent}.conversations eventBody of
// conversation conv: the customer participant (its one communication
// under key) and the given agent participants.
func wireSnapshot(t *testing.T, agent bridge.AgentID, conv, key string, cust wireComm, custExtra map[string]any, agents ...map[string]any) bridge.Snapshot {
	t.Helper()
	c := map[string]any{"id": conv + "-cust", "purpose": "customer", key: []any{cust}}
	for k, v := range custExtra {
		c[k] = v
	}
	parts := []any{c}
	for _, a := range agents {
		parts = append(parts, a)
	}
	body, err := json.Marshal(map[string]any{"id": conv, "participants": parts, "recordingState": "none"})
	if err != nil {
		t.Fatal(err)
	}
	return bridge.Snapshot{Topic: "v2.users." + string(agent) + ".conversations", Agent: agent, Body: body, ReceivedAt: time.Now()}
}

// wireAgentLeg is an agent participant of user agent with communications
// comms under key; endTime "" while the participant has not ended.
func wireAgentLeg(id string, agent bridge.AgentID, key, endTime string, comms ...wireComm) map[string]any {
	cs := make([]any, len(comms))
	for i, c := range comms {
		cs[i] = c
	}
	p := map[string]any{"id": id, "userId": string(agent), "purpose": "agent", "queueId": "c4a70000-0000-4000-8000-000000000002",
		"wrapupRequired": true, key: cs}
	if endTime != "" {
		p["endTime"] = endTime
	}
	return p
}

func wireTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// feeder normalizes snapshots on a clock of its own and publishes their
// events to the stack, as the bridge does.
type feeder struct {
	mu  sync.Mutex
	now time.Time
	n   *bridge.Normalizer
	s   *resolverStack
}

func newFeeder(t *testing.T, s *resolverStack) *feeder {
	t.Helper()
	f := &feeder{now: time.Now(), s: s}
	var err error
	f.n, err = bridge.NewNormalizer(bridge.NormalizerConfig{Now: f.clock}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *feeder) clock() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }

// advance moves the normalizer's clock on by d (the resolver and the bus
// keep real time).
func (f *feeder) advance(d time.Duration) { f.mu.Lock(); f.now = f.now.Add(d); f.mu.Unlock() }

func (f *feeder) feed(t *testing.T, snap bridge.Snapshot) []bridge.Event {
	t.Helper()
	evs := f.n.Normalize(snap)
	for i := range evs {
		f.s.publish(t, &evs[i])
	}
	return evs
}

// marker reads a pop's marker from the bucket ("" when there is none).
func (s *resolverStack) marker(t *testing.T, popID string) string {
	t.Helper()
	ctx := context.Background()
	kv, err := s.conn.JetStream().KeyValue(ctx, bus.DefaultMarkerBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, strings.ReplaceAll(popID, ":", "."))
	if err != nil {
		return ""
	}
	return string(e.Value())
}

// settle waits until the resolver has handled every event published so
// far, and the pops it made have reached the test.
func (s *resolverStack) settle(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	waitUntil(t, 10*time.Second, func() bool {
		c, err := s.conn.JetStream().Consumer(ctx, s.conn.StreamName(), "screenpop-resolver")
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	waitUntil(t, 10*time.Second, func() bool {
		st, err := s.conn.JetStream().Stream(ctx, s.conn.StreamName())
		if err != nil {
			return false
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(bridge.SubjectPops))
		if err != nil {
			return false
		}
		var stored uint64
		for _, n := range info.State.Subjects {
			stored += n
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return uint64(len(s.pops)) == stored
	})
}

func (s *resolverStack) popsOf(popID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range s.pops {
		if p.ID == popID {
			n++
		}
	}
	return n
}

// TestResolver_ParkedEmailWithAReplyPopsOnce: the agent replies to an email
// (a second, outbound email communication in the agent's participant,
// sent: disconnected) and parks it until the customer answers. A parked
// email alone is a live leg (a state the normalizer does not map: no
// event), but next to the sent reply the normalizer reports the leg
// disconnected, with legEnded: the resolver ends its marker and the
// normalizer forgets the finished conversation. When the email comes back
// to the agent on the same participant, the leg is reported connected again
// as a leg first seen, and pops a second time.
func TestResolver_ParkedEmailWithAReplyPopsOnce(t *testing.T) {
	defer goleak.VerifyNone(t)
	s := startResolverStack(t, bridge.ResolverConfig{}, func(dv *dataversetest.Server) {
		dv.AddContact(dataversetest.Contact{FirstName: "Jane", LastName: "Doe", EMailAddress1: "jane@example.com"})
		dv.AddContact(dataversetest.Contact{FirstName: "Ola", LastName: "Nordmann", EMailAddress1: "ola@example.com"})
	}, func(o *stackOptions) {
		// The marker grace of an ended leg (15 min) and the duplicate
		// window (2 min), shortened: the email stays parked for longer.
		o.markerGrace, o.dupWindow = time.Second, time.Second
	})
	defer s.stop()
	f := newFeeder(t, s)
	agent := s.agent
	const conv, leg = "c-parked-mail", "leg-mail"
	popID := "pop:" + conv + ":" + leg
	connected := wireTime(time.Now().Add(-time.Minute))
	e1 := func(state string) wireComm { // the customer's email, offered to the agent
		c := wireComm{"id": "e1", "state": state, "direction": "inbound", "subject": "Invoice", "peerId": "e-cust"}
		if state != "alerting" {
			c["connectedTime"] = connected
		}
		return c
	}
	reply := func(state string) wireComm { // the agent's reply
		c := wireComm{"id": "e2", "state": state, "initialState": "connected", "direction": "outbound", "subject": "RE: Invoice", "connectedTime": connected}
		if state == "disconnected" {
			c["disconnectedTime"] = wireTime(time.Now())
		}
		return c
	}
	mail := func(comms ...wireComm) bridge.Snapshot {
		return wireSnapshot(t, agent, conv, "emails", wireComm{"id": "e-cust", "state": "connected", "direction": "inbound", "subject": "Invoice"},
			map[string]any{"address": "jane@example.com", "name": "Jane Doe"}, wireAgentLeg(leg, agent, "emails", "", comms...))
	}

	f.feed(t, mail(e1("alerting")))
	waitUntil(t, 10*time.Second, func() bool { return s.popsOf(popID) == 1 })
	f.feed(t, mail(e1("connected")))
	f.feed(t, mail(e1("connected"), reply("connected")))
	f.feed(t, mail(e1("connected"), reply("disconnected")))
	// Parked: the leg goes on.
	if evs := f.feed(t, mail(e1("parked"), reply("disconnected"))); len(evs) != 0 {
		t.Errorf("parking the email after the reply was sent: %s", eventKeys(evs))
	}
	// The agent's next email pops, and time passes: the marker grace, and
	// the normalizer's tombstone of a finished conversation (10 min).
	other := wireSnapshot(t, agent, "c-other-mail", "emails", wireComm{"id": "o-cust", "state": "connected", "direction": "inbound"},
		map[string]any{"address": "ola@example.com"}, wireAgentLeg("leg-other", agent, "emails", "", wireComm{"id": "o1", "state": "alerting", "direction": "inbound"}))
	f.feed(t, other)
	waitUntil(t, 10*time.Second, func() bool { return s.popsOf("pop:c-other-mail:leg-other") == 1 })
	time.Sleep(1500 * time.Millisecond)
	f.advance(11 * time.Minute)
	f.feed(t, other)
	f.advance(time.Minute)

	// The customer answers: the email comes back to the agent.
	if evs := f.feed(t, mail(e1("connected"), reply("disconnected"))); len(evs) != 0 {
		t.Errorf("the email back from parking: %s", eventKeys(evs))
	}
	s.settle(t)
	if n := s.popsOf(popID); n != 1 {
		t.Errorf("the parked email's leg popped %d times, want once", n)
	}
	// The agent closes it: now the leg ends.
	closed := e1("disconnected")
	closed["disconnectedTime"] = wireTime(time.Now())
	end := mail(closed, reply("disconnected"))
	var body map[string]any
	if err := json.Unmarshal(end.Body, &body); err != nil {
		t.Fatal(err)
	}
	body["participants"].([]any)[1].(map[string]any)["endTime"] = closed["disconnectedTime"]
	end.Body, _ = json.Marshal(body)
	if evs := f.feed(t, end); eventKeys(evs) != leg+"/email/disconnected/legEnded " {
		t.Errorf("the email closed: %s, want its disconnected with legEnded", eventKeys(evs))
	}
}

// TestResolver_ChatWithCobrowseEndsItsMarker: a web chat in which the agent
// co-browses with the customer (a cobrowse session, a media version 1 does
// not map, in the agent's participant). The chat ends a moment before the
// cobrowse session: the chat's disconnected event leaves legEnded out
// (something untracked is live), and when the session ends no event of the
// leg is left to carry it. The leg's pop marker is never ended and lives its
// full 24 h (bus.MarkerTTL) instead of the marker grace.
func TestResolver_ChatWithCobrowseEndsItsMarker(t *testing.T) {
	defer goleak.VerifyNone(t)
	s := startResolverStack(t, bridge.ResolverConfig{}, func(dv *dataversetest.Server) {
		dv.AddContact(dataversetest.Contact{FirstName: "Jane", LastName: "Doe", EMailAddress1: "jane@example.com"})
	})
	defer s.stop()
	f := newFeeder(t, s)
	agent := s.agent
	const conv, leg = "c-cobrowse", "leg-chat"
	popID := "pop:" + conv + ":" + leg
	start := wireTime(time.Now().Add(-time.Minute))
	chat := func(state string) wireComm {
		c := wireComm{"id": "ch1", "state": state, "initialState": "alerting", "peerId": "ch-cust"}
		if state != "alerting" {
			c["connectedTime"] = start
		}
		if state == "disconnected" {
			c["disconnectedTime"] = wireTime(time.Now())
		}
		return c
	}
	snap := func(state, cobrowse, endTime string) bridge.Snapshot {
		a := wireAgentLeg(leg, agent, "chats", endTime, chat(state))
		if cobrowse != "" {
			a["cobrowsesessions"] = []any{map[string]any{"id": "cb1", "state": cobrowse, "connectedTime": start}}
		}
		return wireSnapshot(t, agent, conv, "chats", wireComm{"id": "ch-cust", "state": "connected"},
			map[string]any{"name": "Jane Doe", "attributes": map[string]string{"context.email": "jane@example.com"}}, a)
	}
	f.feed(t, snap("alerting", "", ""))
	waitUntil(t, 10*time.Second, func() bool { return s.popsOf(popID) == 1 }) // a chat lasts longer than its pop takes
	f.feed(t, snap("connected", "", ""))
	f.feed(t, snap("connected", "connected", ""))
	f.feed(t, snap("disconnected", "connected", ""))
	f.feed(t, snap("disconnected", "disconnected", wireTime(time.Now())))
	s.settle(t)
	if n := s.popsOf(popID); n != 1 {
		t.Fatalf("the chat popped %d times, want once", n)
	}
	if m := s.marker(t, popID); m != "ended" {
		t.Errorf("the ended chat's pop marker is %q, want ended (else it lives 24 h)", m)
	}
}

func eventKeys(evs []bridge.Event) string {
	var b strings.Builder
	for _, e := range evs {
		b.WriteString(string(e.Agent.ParticipantID) + "/" + string(e.Media) + "/" + string(e.State))
		if e.LegEnded {
			b.WriteString("/legEnded")
		}
		b.WriteByte(' ')
	}
	return b.String()
}
