package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// busLog records what a subscriber of screenpop.> receives.
type busLog struct {
	mu  sync.Mutex
	evs []transferEvent
	pop []transferPop
}

type transferEvent struct {
	ID   string    `json:"id"`
	Data eventData `json:"data"`
}

type transferPop struct {
	ID   string `json:"id"`
	Data struct {
		ConversationID string `json:"conversationId"`
		AgentID        string `json:"agentId"`
		Media          string `json:"media"`
		State          string `json:"state"`
		Customer       struct{ Phone, Email, Name string }
	} `json:"data"`
}

func mustBusLog(t *testing.T, url string) *busLog {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	l := &busLog{}
	if _, err := nc.Subscribe("screenpop.>", func(m *nats.Msg) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if strings.HasPrefix(m.Subject, "screenpop.pops.") {
			var p transferPop
			if json.Unmarshal(m.Data, &p) == nil {
				l.pop = append(l.pop, p)
			}
			return
		}
		var e transferEvent
		if json.Unmarshal(m.Data, &e) == nil {
			l.evs = append(l.evs, e)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return l
}

func (l *busLog) of(conv string) ([]transferEvent, []transferPop) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var es []transferEvent
	var ps []transferPop
	for _, e := range l.evs {
		if e.Data.ConversationID == conv {
			es = append(es, e)
		}
	}
	for _, p := range l.pop {
		if p.Data.ConversationID == conv {
			ps = append(ps, p)
		}
	}
	return es, ps
}

// snap is a conversation snapshot being edited.
type snap map[string]any

func snapOf(t *testing.T, b []byte) snap {
	t.Helper()
	var s snap
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s snap) parts() []any { p, _ := s["participants"].([]any); return p }

// part returns the last participant matching f.
func (s snap) part(f func(p map[string]any) bool) map[string]any {
	var got map[string]any
	for _, p := range s.parts() {
		if m := p.(map[string]any); f(m) {
			got = m
		}
	}
	return got
}

func byUser(u string) func(map[string]any) bool {
	return func(p map[string]any) bool { return p["userId"] == u }
}

func byPurpose(pu string) func(map[string]any) bool {
	return func(p map[string]any) bool { return p["purpose"] == pu }
}

// comm returns the participant's one communication.
func comm(p map[string]any) map[string]any {
	for _, k := range []string{"calls", "callbacks", "chats", "messages", "emails"} {
		if a, ok := p[k].([]any); ok && len(a) > 0 {
			return a[0].(map[string]any)
		}
	}
	return nil
}

func (s snap) add(p map[string]any) { s["participants"] = append(s.parts(), p) }

func (s snap) publish(t *testing.T, g *notificationstest.Emulator, users ...string) {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		g.Publish("v2.users."+u+".conversations", b)
	}
}

func ts(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func dumpTransfer(es []transferEvent, ps []transferPop, names map[string]string) string {
	var b strings.Builder
	for _, e := range es {
		d := e.Data
		fmt.Fprintf(&b, "  event %s %s/%s part=%s dir=%s q=%s dnis=%s cust=%q/%q/%q ended=%v internal=%v occ=%s\n", names[d.Agent.UserID], d.Media, d.State,
			d.Agent.ParticipantID[:8], d.Direction, d.QueueID, d.DNIS, d.Customer.Phone, d.Customer.Email, d.Customer.Name, d.LegEnded, d.Internal, d.OccurredAt)
	}
	for _, p := range ps {
		fmt.Fprintf(&b, "  pop   %s %s/%s %s cust=%+v\n", names[p.Data.AgentID], p.Data.Media, p.Data.State, p.ID, p.Data.Customer)
	}
	return b.String()
}

// connectPart and endPart move a participant of an edited snapshot.
func connectPart(p map[string]any, at time.Time) {
	c := comm(p)
	c["state"], c["connectedTime"], p["connectedTime"] = "connected", ts(at), ts(at)
}

func endPart(p map[string]any, disconnectType string, at time.Time) {
	c := comm(p)
	c["state"], c["disconnectType"], c["disconnectedTime"], p["endTime"] = "disconnected", disconnectType, ts(at), ts(at)
	c["held"], c["confined"] = false, false
}

// TestDaemon_Transfers drives conversations that move between agents through
// the Genesys emulator, the daemon and NATS, as the snapshots Genesys sends
// on each involved user's topic, and checks what a subscriber of
// screenpop.> receives: each receiving agent exactly one pop of the
// customer (DESIGN.md, pop decision 6), the transferring agent none more, a
// second one for an agent the conversation is transferred back to (a new
// leg), and events that carry the customer, move each leg forward, end it
// with legEnded and keep its queueId.
func TestDaemon_Transfers(t *testing.T) {
	vars := testEnv(t)
	vars["SCREENPOP_NATS_LISTEN"] = "127.0.0.1:0"
	d, _ := MustStartDemo(t, vars)
	bl := mustBusLog(t, d.Main.Bus.ClientURL())
	g := d.Genesys
	a, b, c := demoAgents[0].ID, demoAgents[1].ID, demoAgents[2].ID
	names := map[string]string{a: "A", b: "B", c: "C"}
	const phone, email = "+16175550123", "jane@example.com"
	q1, q2 := "5a1e5000-0000-4000-8000-000000000001", "5a1e5000-0000-4000-8000-000000000002"
	// popped waits for agent's n-th pop of x: a leg that ends before its
	// pop is made pops no more (the call is over), so each step waits for
	// the pop of the leg it offered, as an agent takes seconds to answer.
	popped := func(x interface{ ID() string }, agent string, n int) {
		t.Helper()
		waitFor(t, 10*time.Second, names[agent]+"'s pop", func() bool {
			_, ps := bl.of(x.ID())
			got := 0
			for _, p := range ps {
				if p.Data.AgentID == agent {
					got++
				}
			}
			return got >= n
		})
	}
	offer := func(x *notificationstest.Conversation, agent string) *notificationstest.Conversation {
		popped(x, agent, 1)
		return x
	}
	call := func(queue string) *notificationstest.Conversation {
		x := g.InboundCall(a, phone, notificationstest.Options{QueueID: queue, DNIS: "+18005551000", Name: "BOSTON MA"}).Alert()
		return offer(x, a).Connect()
	}
	// toQueue: A transfers the call to q2 (A's leg ends, a new ACD leg
	// waits), B is offered it there, answers, and hangs up.
	toQueue := func(x *notificationstest.Conversation) {
		s := snapOf(t, x.Snapshot())
		cust := s.part(byPurpose("customer"))
		endPart(s.part(byUser(a)), "transfer", time.Now())
		acd := map[string]any{"id": "5a1e5000-acd2-4000-8000-" + x.ID()[24:], "purpose": "acd", "queueId": q2, "name": "Queue 2", "connectedTime": ts(time.Now()),
			"calls": []any{map[string]any{"id": "5a1e5000-acd2-4000-8001-" + x.ID()[24:], "state": "connected", "direction": "inbound", "peerId": comm(cust)["id"], "connectedTime": ts(time.Now())}}}
		s.add(acd)
		s.publish(t, g, a)
		pb := map[string]any{"id": "b0b0b0b0-0000-4000-8000-" + x.ID()[24:], "purpose": "agent", "userId": b, "queueId": q2, "wrapupRequired": true,
			"calls": []any{map[string]any{"id": "b0b0b0b0-0000-4000-8001-" + x.ID()[24:], "state": "alerting", "initialState": "alerting", "direction": "inbound",
				"peerId": comm(cust)["id"], "other": map[string]any{"addressNormalized": "tel:" + phone}}}}
		s.add(pb)
		s.publish(t, g, a, b)
		popped(x, b, 1)
		connectPart(pb, time.Now())
		endPart(acd, "transfer", time.Now())
		s.publish(t, g, a, b)
		endPart(pb, "client", time.Now())
		endPart(cust, "peer", time.Now())
		s.publish(t, g, a, b)
	}
	// consult: A consults B, who answers while the customer waits.
	consult := func(x *notificationstest.Conversation) snap {
		offer(x.ConsultTransfer(b), b)
		s := snapOf(t, x.Snapshot())
		connectPart(s.part(byUser(b)), time.Now())
		s.publish(t, g, a, b)
		return s
	}
	// hangUp ends every participant still connected.
	hangUp := func(s snap, users ...string) {
		for _, p := range s.parts() {
			if m := p.(map[string]any); comm(m)["state"] != "disconnected" {
				endPart(m, "client", time.Now())
			}
		}
		s.publish(t, g, users...)
	}
	for _, tc := range []struct {
		name         string
		phone, email string         // the customer, on every event and pop
		pops         map[string]int // per agent: one per leg here
		run          func() string  // the conversation id
	}{
		{"BlindToAgent", phone, "", map[string]int{a: 1, b: 1}, func() string {
			return offer(call(q1).BlindTransfer(b), b).Connect().Disconnect().ID()
		}},
		{"ToQueue", phone, "", map[string]int{a: 1, b: 1}, func() string {
			x := call(q1)
			toQueue(x)
			return x.ID()
		}},
		{"DirectCallToQueue", phone, "", map[string]int{a: 1, b: 1}, func() string {
			x := call("")
			toQueue(x)
			return x.ID()
		}},
		{"ConsultCompleted", phone, "", map[string]int{a: 1, b: 1}, func() string {
			x := call(q1)
			consult(x)
			return x.Connect().Disconnect().ID() // A leaves with transfer.consult
		}},
		{"ConsultCancelled", phone, "", map[string]int{a: 1, b: 1}, func() string {
			x := call(q1)
			s := consult(x)
			endPart(s.part(byUser(b)), "client", time.Now())
			comm(s.part(byPurpose("customer")))["confined"] = false
			s.publish(t, g, a, b) // back to A
			hangUp(s, a, b)
			return x.ID()
		}},
		{"ConferenceOfThree", phone, "", map[string]int{a: 1, b: 1, c: 1}, func() string {
			x := call(q1)
			s := consult(x)
			comm(s.part(byPurpose("customer")))["confined"] = false
			s.publish(t, g, a, b)
			pc := map[string]any{"id": "c0c0c0c0-0000-4000-8000-" + x.ID()[24:], "purpose": "agent", "userId": c, "wrapupRequired": true,
				"calls": []any{map[string]any{"id": "c0c0c0c0-0000-4000-8001-" + x.ID()[24:], "state": "alerting", "initialState": "alerting", "direction": "inbound",
					"other": map[string]any{"addressNormalized": "sip:alice@example.invalid"}}}}
			s.add(pc)
			s.publish(t, g, a, b, c)
			popped(x, c, 1)
			connectPart(pc, time.Now())
			s.publish(t, g, a, b, c)
			endPart(s.part(byUser(a)), "transfer.conference", time.Now()) // A leaves B and C with the customer
			s.publish(t, g, a, b, c)
			hangUp(s, a, b, c)
			return x.ID()
		}},
		{"HoldAndResume", phone, "", map[string]int{a: 1}, func() string {
			return call(q1).Hold(true).Hold(false).Hold(true).Hold(false).Disconnect().ID()
		}},
		{"ChatToAgent", phone, email, map[string]int{a: 1, b: 1}, func() string {
			x := g.Chat(a, notificationstest.Options{QueueID: q1, Attributes: map[string]string{"context.firstName": "Jane", "context.email": email, "context.phoneNumber": phone}})
			return offer(offer(x.Alert(), a).Connect().BlindTransfer(b), b).Connect().Disconnect().ID()
		}},
		{"MessageToAgent", phone, "", map[string]int{a: 1, b: 1}, func() string {
			x := g.Message(a, phone, notificationstest.Options{QueueID: q1, MessageType: "sms"})
			return offer(offer(x.Alert(), a).Connect().BlindTransfer(b), b).Connect().Disconnect().ID()
		}},
		{"EmailToAgent", "", email, map[string]int{a: 1, b: 1}, func() string {
			x := g.Email(a, email, notificationstest.Options{QueueID: q1, Name: "Jane Doe"})
			return offer(offer(x.Alert(), a).Connect().BlindTransfer(b), b).Connect().Disconnect().ID()
		}},
		{"TransferredBack", phone, "", map[string]int{a: 2, b: 1}, func() string {
			x := offer(call(q1).BlindTransfer(b), b).Connect().BlindTransfer(a)
			popped(x, a, 2)
			return x.Connect().Disconnect().ID()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := tc.run()
			legs := 0
			for _, n := range tc.pops {
				legs += n
			}
			var es []transferEvent
			var ps []transferPop
			defer func() {
				if t.Failed() {
					t.Logf("what the subscriber received:\n%s", dumpTransfer(es, ps, names))
				}
			}()
			waitFor(t, 15*time.Second, "every leg's pop and its last event", func() bool {
				es, ps = bl.of(id)
				ended := 0
				for _, e := range es {
					if e.Data.LegEnded {
						ended++
					}
				}
				return ended >= legs && len(ps) >= legs
			})
			got := map[string]int{}
			popped := map[string]bool{}
			for _, p := range ps {
				got[p.Data.AgentID]++
				if popped[p.ID] {
					t.Errorf("%s published twice", p.ID)
				}
				popped[p.ID] = true
				if p.Data.Customer.Phone != tc.phone || p.Data.Customer.Email != tc.email {
					t.Errorf("%s's pop %s looked up %+v, want the customer (%q, %q)", names[p.Data.AgentID], p.ID, p.Data.Customer, tc.phone, tc.email)
				}
			}
			for u, n := range tc.pops {
				if got[u] != n {
					t.Errorf("%s got %d pops, want %d", names[u], got[u], n)
				}
			}
			type leg struct {
				state, queue string
				ended        bool
			}
			byLeg := map[string]*leg{}
			for _, e := range es {
				dt := e.Data
				if dt.Customer.Phone != tc.phone || dt.Customer.Email != tc.email || dt.Internal {
					t.Errorf("%s: customer %+v internal %v, want the customer (%q, %q)", e.ID, dt.Customer, dt.Internal, tc.phone, tc.email)
				}
				k := dt.Agent.ParticipantID
				l := byLeg[k]
				if l == nil {
					l = &leg{queue: dt.QueueID}
					byLeg[k] = l
					if !popped["pop:"+id+":"+k] {
						t.Errorf("%s's leg %s has events and no pop", names[dt.Agent.UserID], k)
					}
				}
				switch {
				case l.ended:
					t.Errorf("%s follows the leg's legEnded", e.ID)
				case rank(dt.State) <= rank(l.state):
					t.Errorf("%s after %s: the leg moved backwards or repeated", e.ID, l.state)
				case dt.QueueID != l.queue:
					t.Errorf("%s: queueId %q, the leg's earlier events said %q", e.ID, dt.QueueID, l.queue)
				}
				l.state, l.ended = dt.State, dt.LegEnded
				if dt.LegEnded && dt.State != "disconnected" {
					t.Errorf("%s: legEnded on a %s event", e.ID, dt.State)
				}
			}
			if len(byLeg) != legs {
				t.Errorf("events of %d legs, want %d", len(byLeg), legs)
			}
		})
	}
}
