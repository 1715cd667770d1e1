package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// reviewMsg is one event a plain subscriber received, with when (before
// or after the daemon's restart).
type reviewMsg struct {
	subject, msgID string
	data           []byte
	afterRestart   bool
}

// comparableData is an event's data without what a republish may change
// (when the frame was received), as a consumer de-duplicating on the id
// would compare the copy it drops with the one it kept.
func comparableData(t *testing.T, b []byte) string {
	t.Helper()
	var ce struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal(b, &ce); err != nil {
		t.Fatal(err)
	}
	delete(ce.Data, "receivedAt")
	out, _ := json.Marshal(ce.Data)
	return string(out)
}

// TestEvents_RestartRepublishesTheSameEvents is another service on the
// embedded NATS listener across a screenpopd restart on the same data
// directory. docs/events.md: the reconciliation at start-up re-reads every
// live conversation and "the current state of each live leg is published
// again, with the same id", so a consumer de-duplicating on the CloudEvent
// id loses nothing and gets nothing new. Every event after the restart
// must therefore carry an id the service saw before, say the same thing,
// validate against the schema, and keep each leg moving forward.
func TestEvents_RestartRepublishesTheSameEvents(t *testing.T) {
	t.Parallel() // waits most of its time: see TestMain
	d, cfg, logs := demoEmulators(t, testEnv(t))
	cfg.NatsListen = freeLoopbackAddr(t)
	m1, stop1 := runDaemon(t, cfg, logs)

	nc, err := nats.Connect(m1.Bus.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	var mu sync.Mutex
	var got []reviewMsg
	restarted := false
	if _, err := nc.Subscribe("screenpop.events.>", func(m *nats.Msg) {
		mu.Lock()
		got = append(got, reviewMsg{m.Subject, m.Header.Get("Nats-Msg-Id"), m.Data, restarted})
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// A durable consumer of its own, as docs/events.md shows; it naks
	// each event's first delivery to see it redelivered.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ccfg := jetstream.ConsumerConfig{
		Durable: "wallboard", FilterSubject: "screenpop.events.>",
		DeliverPolicy: jetstream.DeliverAllPolicy, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 30 * time.Second, MaxDeliver: 5,
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, "SCREENPOP", ccfg); err != nil {
		t.Fatal(err)
	}
	acked := map[string]int{}        // id -> times acknowledged (stored copies)
	firstData := map[string][]byte{} // id -> the first delivery's bytes
	drain := func(what string) {
		t.Helper()
		cons, err := js.Consumer(ctx, "SCREENPOP", "wallboard")
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		for {
			batch, err := cons.Fetch(50, jetstream.FetchMaxWait(2*time.Second))
			if err != nil {
				t.Fatalf("%s: fetch: %v", what, err)
			}
			n := 0
			for m := range batch.Messages() {
				n++
				md, err := m.Metadata()
				if err != nil {
					t.Fatal(err)
				}
				id := m.Headers().Get("Nats-Msg-Id")
				if md.NumDelivered == 1 {
					firstData[fmt.Sprint(md.Sequence.Stream)] = m.Data()
					m.Nak()
					continue
				}
				if !bytes.Equal(firstData[fmt.Sprint(md.Sequence.Stream)], m.Data()) {
					t.Errorf("%s redelivered with other bytes", id)
				}
				acked[id]++
				m.Ack()
			}
			if n == 0 {
				return
			}
		}
	}

	g := d.Genesys
	a, b := demoAgents[0].ID, demoAgents[1].ID
	q := "5a1e5000-0000-4000-8000-000000000001"
	var convs []*notificationstest.Conversation
	add := func(c *notificationstest.Conversation) *notificationstest.Conversation {
		convs = append(convs, c)
		return c
	}
	add(g.InboundCall(a, "+13175550123", notificationstest.Options{QueueID: q, DNIS: "+18005551000", Attributes: map[string]string{"AccountId": "1"}})).Alert().Connect()
	add(g.InboundCall(b, "+13175550124", notificationstest.Options{QueueID: q, DNIS: "+18005551000"})).Alert()
	add(g.OutboundCall(a, "+13175550199", notificationstest.Options{})).Alert()
	add(g.Callback(b, "+13175550142", notificationstest.Options{QueueID: q})).Alert().Connect()
	add(g.Chat(a, notificationstest.Options{QueueID: q, Attributes: map[string]string{"context.firstName": "Jane", "context.email": "jane@example.com"}})).Alert().Connect()
	add(g.Message(b, "+13175550177", notificationstest.Options{QueueID: q, MessageType: "sms"})).Alert().Connect()
	add(g.Email(a, "jane@example.com", notificationstest.Options{QueueID: q})).Alert().Connect()
	add(g.InternalCall(a, b, notificationstest.Options{})).Alert().Connect()
	add(g.InboundCall(a, "+13175550125", notificationstest.Options{QueueID: q, DNIS: "+18005551000"})).Alert().Connect().BlindTransfer(b).Connect()

	// Before: every leg's current state is on the bus.
	current := func() map[string]bool {
		want := map[string]bool{}
		for _, c := range convs {
			for _, l := range c.Legs() {
				want[l.ConversationID+":"+l.ParticipantID] = true
			}
		}
		return want
	}
	legsSeen := func(after bool) map[string]bool {
		mu.Lock()
		defer mu.Unlock()
		seen := map[string]bool{}
		for _, m := range got {
			if m.afterRestart != after {
				continue
			}
			p := strings.Split(m.msgID, ":")
			if len(p) == 5 {
				seen[p[1]+":"+p[2]] = true
			}
		}
		return seen
	}
	// ended are the legs disconnected before the restart: not live, so
	// not read again.
	ended := func() map[string]bool {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]bool{}
		for _, m := range got {
			if p := strings.Split(m.msgID, ":"); len(p) == 5 && !m.afterRestart && p[4] == "disconnected" {
				out[p[1]+":"+p[2]] = true
			}
		}
		return out
	}
	covers := func(after bool) func() bool {
		return func() bool {
			s := legsSeen(after)
			var gone map[string]bool
			if after {
				gone = ended()
			}
			for k := range current() {
				if !s[k] && !gone[k] {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, 20*time.Second, "an event of every leg before the restart", covers(false))
	time.Sleep(time.Second) // the last states
	drain("before the restart")
	stop1()
	mu.Lock()
	restarted = true
	mu.Unlock()

	runDaemon(t, cfg, logs)
	deadline := time.Now().Add(30 * time.Second)
	for !covers(true)() && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if !covers(true)() {
		s := legsSeen(true)
		for _, c := range convs {
			for _, l := range c.Legs() {
				if k := l.ConversationID + ":" + l.ParticipantID; !s[k] && !ended()[k] {
					t.Logf("not republished: conv %s leg %s user %s", l.ConversationID, l.ParticipantID, l.UserID)
				}
			}
		}
		mu.Lock()
		for _, m := range got {
			t.Logf("after=%v %s %s", m.afterRestart, m.subject, m.msgID)
		}
		mu.Unlock()
	}
	waitFor(t, time.Second, "the live legs' current states published again after the restart", covers(true))
	time.Sleep(2 * time.Second) // anything more the reconciliation publishes
	drain("after the restart")
	for id, n := range acked {
		if n > 1 {
			t.Errorf("durable consumer: %s stored %d times within the duplicate window (docs: JetStream drops the copy republished within 2 min)", id, n)
		}
	}

	s := mustSchemaAt(t, "event")
	mu.Lock()
	defer mu.Unlock()
	before := map[string][]byte{}
	last := map[string]string{} // conversation:participant:media -> state
	for _, m := range got {
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(m.data))
		if err != nil {
			t.Fatalf("%s: not JSON: %v", m.subject, err)
		}
		if err := s.Validate(v); err != nil {
			t.Errorf("event on %s invalid: %v", m.subject, err)
		}
		var ce contractCE
		if err := json.Unmarshal(m.data, &ce); err != nil {
			t.Fatal(err)
		}
		e := ce.Data
		if want := fmt.Sprintf("screenpop.events.%s.%s.%s", e.Media, e.State, e.Agent.UserID); m.subject != want || m.msgID != ce.ID {
			t.Errorf("subject %s id %s (Nats-Msg-Id %s), want subject %s", m.subject, ce.ID, m.msgID, want)
		}
		leg := e.ConversationID + ":" + e.Agent.ParticipantID + ":" + e.Media
		if rank(e.State) < rank(last[leg]) {
			t.Errorf("%s after %s: the leg moved backwards across the restart", ce.ID, last[leg])
		}
		last[leg] = e.State
		if !m.afterRestart {
			before[ce.ID] = m.data
			continue
		}
		old, ok := before[ce.ID]
		if !ok {
			t.Errorf("after the restart: %s, an id not published before (nothing changed while the daemon was down)", ce.ID)
			continue
		}
		if a, b := comparableData(t, old), comparableData(t, m.data); a != b {
			t.Errorf("%s published again with other data:\nbefore %s\nafter  %s", ce.ID, a, b)
		}
	}
}

// TestEvents_TransferBackInternalAndSearch drives what the contract tests
// do not: a conversation transferred back to the same agent (a second leg,
// docs/events.md "Agent leg"), an internal call with SCREENPOP_POP_INTERNAL
// (a pop with action none), a lookup that fails (action search), and the
// snapshot noise of hold and attribute writes (no event). Every message a
// subscriber of screenpop.> receives is checked against the docs.
func TestEvents_TransferBackInternalAndSearch(t *testing.T) {
	vars := testEnv(t)
	vars["SCREENPOP_NATS_LISTEN"] = "127.0.0.1:0"
	vars["SCREENPOP_POP_INTERNAL"] = "true"
	d, _ := MustStartDemo(t, vars)
	nc, err := nats.Connect(d.Main.Bus.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	var mu sync.Mutex
	var got []reviewMsg
	if _, err := nc.Subscribe("screenpop.>", func(m *nats.Msg) {
		mu.Lock()
		got = append(got, reviewMsg{m.Subject, m.Header.Get("Nats-Msg-Id"), m.Data, false})
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	g := d.Genesys
	a, b := demoAgents[0].ID, demoAgents[1].ID
	q := "5a1e5000-0000-4000-8000-000000000001"
	back := g.InboundCall(a, "+13175550131", notificationstest.Options{QueueID: q, DNIS: "+18005551000"})
	pops := func(conv string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, m := range got {
			if strings.HasPrefix(m.subject, "screenpop.pops.") && strings.Contains(string(m.data), conv) {
				n++
			}
		}
		return n
	}
	back.Alert()
	waitFor(t, 20*time.Second, "the first leg's pop", func() bool { return pops(back.ID()) >= 1 })
	back.Connect().Hold(true)
	back.Hold(false)
	back.SetAttributes(map[string]string{"Note": "x"})
	back.BlindTransfer(a)
	waitFor(t, 20*time.Second, "the second leg's pop", func() bool { return pops(back.ID()) >= 2 })
	back.Connect().Disconnect()
	internal := g.InternalCall(a, b, notificationstest.Options{}).Alert()
	waitFor(t, 20*time.Second, "the internal call's pop", func() bool { return pops(internal.ID()) >= 1 })
	internal.Connect().Disconnect()
	d.Dataverse.FailNext(1000, 500)
	failed := g.InboundCall(b, "+13175550132", notificationstest.Options{QueueID: q, DNIS: "+18005551000"}).Alert()
	waitFor(t, 20*time.Second, "the search pop", func() bool { return pops(failed.ID()) >= 1 })
	time.Sleep(time.Second)

	evSchema, popSchema := mustSchemaAt(t, "event"), mustSchemaAt(t, "pop")
	mu.Lock()
	defer mu.Unlock()
	var backIDs []string
	actions := map[string][]string{}
	for _, m := range got {
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(m.data))
		if err != nil {
			t.Fatalf("%s: not JSON: %v", m.subject, err)
		}
		var env ceAttributes
		json.Unmarshal(m.data, &env)
		if env.ID != m.msgID {
			t.Errorf("%s: Nats-Msg-Id %q, id %q", m.subject, m.msgID, env.ID)
		}
		switch {
		case strings.HasPrefix(m.subject, "screenpop.pops."):
			if err := popSchema.Validate(v); err != nil {
				t.Errorf("pop on %s invalid: %v\n%s", m.subject, err, m.data)
			}
			var p struct {
				Data struct {
					ConversationID string                  `json:"conversationId"`
					AgentID        string                  `json:"agentId"`
					Target         struct{ Action string } `json:"target"`
				} `json:"data"`
			}
			json.Unmarshal(m.data, &p)
			if m.subject != "screenpop.pops."+p.Data.AgentID {
				t.Errorf("pop on %s for agent %s", m.subject, p.Data.AgentID)
			}
			actions[p.Data.ConversationID] = append(actions[p.Data.ConversationID], p.Data.Target.Action)
		case strings.HasPrefix(m.subject, "screenpop.events."):
			if err := evSchema.Validate(v); err != nil {
				t.Errorf("event on %s invalid: %v\n%s", m.subject, err, m.data)
			}
			var ce contractCE
			json.Unmarshal(m.data, &ce)
			e := ce.Data
			if want := fmt.Sprintf("screenpop.events.%s.%s.%s", e.Media, e.State, e.Agent.UserID); m.subject != want {
				t.Errorf("subject %s, want %s", m.subject, want)
			}
			if e.ConversationID == back.ID() {
				s := e.State
				if e.LegEnded {
					s += "+legEnded"
				}
				backIDs = append(backIDs, e.Agent.ParticipantID[:8]+":"+s)
			}
		default:
			t.Errorf("undocumented subject %s (type %s)", m.subject, env.Type)
		}
	}
	legs := back.Legs()
	if len(legs) != 2 {
		t.Fatalf("%d legs of the call transferred back", len(legs))
	}
	l1, l2 := legs[0].ParticipantID[:8], legs[1].ParticipantID[:8]
	want := []string{l1 + ":alerting", l1 + ":connected", l1 + ":disconnected+legEnded", l2 + ":alerting", l2 + ":connected", l2 + ":disconnected+legEnded"}
	if strings.Join(backIDs, " ") != strings.Join(want, " ") {
		t.Errorf("events of the call transferred back:\n got  %v\n want %v", backIDs, want)
	}
	if got := actions[internal.ID()]; len(got) == 0 || got[0] != "none" {
		t.Errorf("internal call's pops: %v, want action none", got)
	}
	if got := actions[failed.ID()]; len(got) != 1 || got[0] != "search" {
		t.Errorf("failed lookup's pops: %v, want one search", got)
	}
	if got := actions[back.ID()]; len(got) != 2 {
		t.Errorf("call transferred back: pops %v, want one per leg", got)
	}
}
