package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// contractMsg is one message an integrator's subscription received.
type contractMsg struct {
	subject string
	msgID   string
	data    []byte
}

// ceAttributes are the CloudEvents attributes docs/events.md documents.
type ceAttributes struct {
	SpecVersion     string `json:"specversion"`
	ID              string `json:"id"`
	Source          string `json:"source"`
	Type            string `json:"type"`
	Subject         string `json:"subject"`
	Time            string `json:"time"`
	DataContentType string `json:"datacontenttype"`
}

// contractCE is the envelope and the event data as docs/events.md
// describes them.
type contractCE struct {
	ceAttributes
	Data eventData `json:"data"`
}

// eventData is an event's data as docs/events.md describes it, read as
// another service reads it (not with bridge's types).
type eventData struct {
	ConversationID string `json:"conversationId"`
	Agent          struct {
		UserID        string `json:"userId"`
		ParticipantID string `json:"participantId"`
	} `json:"agent"`
	Media     string `json:"media"`
	State     string `json:"state"`
	Direction string `json:"direction"`
	Internal  bool   `json:"internal"`
	QueueID   string `json:"queueId"`
	DNIS      string `json:"dnis"`
	Customer  struct {
		Phone   string `json:"phone"`
		Address string `json:"address"`
		Email   string `json:"email"`
		Name    string `json:"name"`
	} `json:"customer"`
	ReceivedAt string `json:"receivedAt"`
	OccurredAt string `json:"occurredAt"`
	LegEnded   bool   `json:"legEnded"`
}

// mustSchemaAt compiles docs/schema/<name>.schema.json with format
// assertions on, as bridge's schema tests do.
func mustSchemaAt(t *testing.T, name string) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	path, err := filepath.Abs(filepath.Join("..", "..", "docs", "schema", name+".schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestEvents_ContractOnTheNATSListener subscribes to the daemon's NATS
// listener the ways docs/events.md tells an integrator to (a plain
// subscription and a durable JetStream consumer), drives conversations of
// every media through the Genesys emulator and checks each message against
// the documented contract: subjects, envelope, Nats-Msg-Id, the JSON
// Schemas, the order of a leg's states and legEnded on its last event.
func TestEvents_ContractOnTheNATSListener(t *testing.T) {
	d, nc := startDemoOnNATS(t)

	var mu sync.Mutex
	var plain, durable []contractMsg
	if _, err := nc.Subscribe("screenpop.>", func(m *nats.Msg) {
		mu.Lock()
		plain = append(plain, contractMsg{m.Subject, m.Header.Get("Nats-Msg-Id"), m.Data})
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "SCREENPOP", jetstream.ConsumerConfig{
		Durable: "wallboard", FilterSubject: "screenpop.events.>",
		DeliverPolicy: jetstream.DeliverNewPolicy, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 30 * time.Second, MaxDeliver: 5,
	})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		mu.Lock()
		durable = append(durable, contractMsg{m.Subject(), m.Headers().Get("Nats-Msg-Id"), m.Data()})
		mu.Unlock()
		m.Ack()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()

	g := d.Genesys
	a, b := demoAgents[0].ID, demoAgents[1].ID
	q := "5a1e5000-0000-4000-8000-000000000001"
	attrs := map[string]string{"AccountId": "778812"}
	var convs []*notificationstest.Conversation
	run := func(c *notificationstest.Conversation, steps ...func(*notificationstest.Conversation)) {
		convs = append(convs, c)
		for _, s := range steps {
			s(c)
		}
	}
	alert := func(c *notificationstest.Conversation) { c.Alert() }
	connect := func(c *notificationstest.Conversation) { c.Connect() }
	hangUp := func(c *notificationstest.Conversation) { c.Disconnect() }
	hold := func(c *notificationstest.Conversation) { c.Hold(true); c.Hold(false) }
	wrapUp := func(c *notificationstest.Conversation) { c.Publish() } // the same snapshot again
	run(g.InboundCall(a, "+13175550123", notificationstest.Options{QueueID: q, DNIS: "+18005551000", Attributes: attrs}), alert, connect, hold, hangUp, wrapUp)
	run(g.OutboundCall(a, "+13175550199", notificationstest.Options{}), alert, connect, hangUp)
	run(g.Callback(a, "+13175550142", notificationstest.Options{QueueID: q}), alert, connect, hangUp)
	run(g.Chat(a, notificationstest.Options{QueueID: q, Attributes: map[string]string{"context.firstName": "Jane", "context.email": "jane@example.com"}}), alert, connect, hangUp)
	for _, typ := range []string{"webmessaging", "sms", "whatsapp"} {
		from := "+13175550177"
		if typ == "webmessaging" {
			from = "Jane"
		}
		run(g.Message(a, from, notificationstest.Options{QueueID: q, MessageType: typ}), alert, connect, hangUp)
	}
	run(g.Email(a, "jane@example.com", notificationstest.Options{QueueID: q}), alert, connect, hangUp)
	run(g.InternalCall(a, b, notificationstest.Options{}), alert, connect, hangUp)
	run(g.InboundCall(a, "+13175550124", notificationstest.Options{QueueID: q, DNIS: "+18005551000"}), alert, connect,
		func(c *notificationstest.Conversation) { c.BlindTransfer(b) }, connect, hangUp)
	run(g.InboundCall(a, "+13175550125", notificationstest.Options{QueueID: q, DNIS: "+18005551000"}), alert, connect,
		func(c *notificationstest.Conversation) { c.ConsultTransfer(b) }, connect, hangUp)

	// Every leg of every conversation ends disconnected: wait for those
	// events on both subscriptions.
	legs := 1 // the internal call's caller, whose leg Legs does not list
	for _, c := range convs {
		legs += len(c.Legs())
	}
	count := func(ms *[]contractMsg) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			n := 0
			for _, m := range *ms {
				if strings.HasPrefix(m.subject, "screenpop.events.") && strings.Contains(m.subject, ".disconnected.") {
					n++
				}
			}
			return n >= legs
		}
	}
	waitFor(t, 20*time.Second, "a disconnected event per leg (plain subscription)", count(&plain))
	waitFor(t, 20*time.Second, "a disconnected event per leg (JetStream consumer)", count(&durable))

	evSchema, popSchema := mustSchemaAt(t, "event"), mustSchemaAt(t, "pop")
	mu.Lock()
	defer mu.Unlock()
	check := func(name string, ms []contractMsg) {
		t.Run(name, func(t *testing.T) {
			seen := map[string]bool{}
			last := map[string]string{} // leg -> last state
			ended := map[string]string{}
			for _, m := range ms {
				v, err := jsonschema.UnmarshalJSON(bytes.NewReader(m.data))
				if err != nil {
					t.Fatalf("%s: not JSON: %v", m.subject, err)
				}
				if strings.HasPrefix(m.subject, "screenpop.pops.") {
					if err := popSchema.Validate(v); err != nil {
						t.Errorf("pop on %s invalid: %v", m.subject, err)
					}
					continue
				}
				if err := evSchema.Validate(v); err != nil {
					t.Errorf("event on %s invalid: %v\n%s", m.subject, err, m.data)
				}
				var ce contractCE
				if err := json.Unmarshal(m.data, &ce); err != nil {
					t.Fatal(err)
				}
				e := ce.Data
				if want := fmt.Sprintf("screenpop.events.%s.%s.%s", e.Media, e.State, e.Agent.UserID); m.subject != want {
					t.Errorf("subject %s, want %s", m.subject, want)
				}
				if m.msgID != ce.ID {
					t.Errorf("Nats-Msg-Id %q, CloudEvent id %q", m.msgID, ce.ID)
				}
				if want := fmt.Sprintf("evt:%s:%s:%s:%s", e.ConversationID, e.Agent.ParticipantID, e.Media, e.State); ce.ID != want {
					t.Errorf("id %s, want %s", ce.ID, want)
				}
				if ce.Type != "screenpop.conversation."+e.State+".v1" || ce.Subject != e.ConversationID || ce.Source != "/screenpop/bridge" {
					t.Errorf("envelope %+v", ce)
				}
				if want := cmpOr(e.OccurredAt, e.ReceivedAt); ce.Time != want {
					t.Errorf("%s: time %s, want occurredAt else receivedAt (%s)", ce.ID, ce.Time, want)
				}
				if seen[ce.ID] {
					t.Errorf("%s received twice", ce.ID)
				}
				seen[ce.ID] = true
				leg := e.ConversationID + "/" + e.Agent.ParticipantID + "/" + e.Media
				if at, ok := ended[e.ConversationID+"/"+e.Agent.ParticipantID]; ok {
					t.Errorf("%s follows %s, which carried legEnded", ce.ID, at)
				}
				if e.LegEnded {
					ended[e.ConversationID+"/"+e.Agent.ParticipantID] = ce.ID
				}
				if rank(e.State) <= rank(last[leg]) {
					t.Errorf("%s after %s: a leg moved backwards or repeated", ce.ID, last[leg])
				}
				last[leg] = e.State
			}
			if len(seen) < 3*legs {
				t.Errorf("%d events for %d legs", len(seen), legs)
			}

		})
	}
	check("Plain", plain)
	check("JetStream", durable)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func rank(s string) int {
	switch s {
	case "alerting", "dialing":
		return 1
	case "connected":
		return 2
	case "disconnected":
		return 3
	}
	return 0
}
