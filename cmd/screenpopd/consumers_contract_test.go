package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// msTime is what docs/events.md promises for every timestamp: RFC 3339 in
// UTC with milliseconds.
var msTime = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$`)

// e164 is a number in E.164: '+', a non-zero digit, at most 15 digits.
var e164 = regexp.MustCompile(`^\+[1-9][0-9]{1,14}$`)

// consumerEnvelope is the CloudEvent as a consumer reads it.
type consumerEnvelope struct {
	ceAttributes
	Data json.RawMessage `json:"data"`
}

type consumerPop struct {
	ID              string `json:"id"`
	ConversationID  string `json:"conversationId"`
	AgentID         string `json:"agentId"`
	IssuedAt        string `json:"issuedAt"`
	EventReceivedAt string `json:"eventReceivedAt"`
}

type consumerMsg struct {
	subject string
	header  nats.Header
	data    []byte
}

// TestConsumers_WhatTheDocsPromise is another service subscribing to the
// embedded NATS listener the ways docs/events.md shows: it drives every
// media (and an outbound call's dialing) through the Genesys emulator, with
// pops resolved against the Dataverse emulator, and checks every message
// received against the docs and the JSON Schemas, field by field, and that
// each documented wildcard filter receives exactly what it says.
func TestConsumers_WhatTheDocsPromise(t *testing.T) {
	d, nc := startDemoOnNATS(t)

	a, b := demoAgents[0].ID, demoAgents[1].ID
	filters := []string{
		"screenpop.>",
		"screenpop.events.>",
		"screenpop.events.voice.>",
		"screenpop.events.voice.alerting.*",
		"screenpop.events.chat.alerting.*",
		"screenpop.events.*.*." + a,
		"screenpop.pops." + a,
		"screenpop.pops.*",
	}
	var mu sync.Mutex
	got := map[string][]consumerMsg{}
	for _, f := range filters {
		if _, err := nc.Subscribe(f, func(m *nats.Msg) {
			mu.Lock()
			got[f] = append(got[f], consumerMsg{m.Subject, m.Header, m.Data})
			mu.Unlock()
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	shared := d.Seed.Shared[0]
	unique := d.Seed.Unique[0]
	q := "5a1e5000-0000-4000-8000-000000000001"
	g := d.Genesys
	var convs []*notificationstest.Conversation
	internal := map[string]bool{}
	add := func(c *notificationstest.Conversation) *notificationstest.Conversation {
		convs = append(convs, c)
		return c
	}
	// What each conversation's events say of the customer, as
	// docs/events.md describes it.
	type customerWant struct{ phone, email, dnis, direction string }
	wantCustomer := map[string]customerWant{}
	expect := func(c *notificationstest.Conversation, phone, email, dnis, direction string) {
		wantCustomer[c.ID()] = customerWant{phone, email, dnis, direction}
	}
	expect(add(g.InboundCall(a, unique, notificationstest.Options{QueueID: q, DNIS: "+18005551000", Attributes: map[string]string{"AccountId": "778812"}})), unique, "", "+18005551000", "inbound")
	expect(add(g.InboundCall(b, shared, notificationstest.Options{QueueID: q, DNIS: "8005551000"})), shared, "", "+18005551000", "inbound")
	expect(add(g.OutboundCall(a, "+13175550199", notificationstest.Options{})), "+13175550199", "", "", "outbound")
	expect(add(g.OutboundCall(b, "3175550198", notificationstest.Options{})), "+13175550198", "", "", "outbound")
	expect(add(g.Callback(a, "+13175550142", notificationstest.Options{QueueID: q})), "+13175550142", "", "", "outbound")
	expect(add(g.Chat(a, notificationstest.Options{QueueID: q, Attributes: map[string]string{"context.firstName": "Jane", "context.email": "jane@example.com", "context.phoneNumber": "(317) 555-0177"}})), "+13175550177", "jane@example.com", "", "inbound")
	expect(add(g.Chat(b, notificationstest.Options{QueueID: q})), "", "", "", "inbound")
	for _, typ := range []string{"webmessaging", "sms", "whatsapp"} {
		from := "+13175550177"
		if typ == "webmessaging" {
			from = "Jane"
		}
		phone := from
		if typ == "webmessaging" {
			phone = ""
		}
		expect(add(g.Message(a, from, notificationstest.Options{QueueID: q, MessageType: typ})), phone, "", "", "inbound")
	}
	expect(add(g.Email(b, "\"Jane Doe\" <jane@example.com>", notificationstest.Options{QueueID: q})), "", "jane@example.com", "", "inbound")
	internal[add(g.InternalCall(a, b, notificationstest.Options{})).ID()] = true
	xfer := add(g.InboundCall(a, "+13175550124", notificationstest.Options{QueueID: q, DNIS: "+18005551000"}))
	expect(xfer, "+13175550124", "", "+18005551000", "inbound")

	// wantPops lists the pop of every non-internal leg offered so far.
	wantPops := map[string]string{} // pop id -> agent
	legs := 1                       // the internal call's caller, not in Legs
	countLegs := func() {
		legs = 1
		for _, c := range convs {
			for _, l := range c.Legs() {
				legs++
				if !internal[c.ID()] {
					wantPops["pop:"+l.ConversationID+":"+l.ParticipantID] = l.UserID
				}
			}
		}
	}
	popped := func() bool {
		mu.Lock()
		defer mu.Unlock()
		pops := map[string]bool{}
		for _, m := range got["screenpop.>"] {
			if strings.HasPrefix(m.subject, "screenpop.pops.") {
				pops[m.header.Get("Nats-Msg-Id")] = true
			}
		}
		for id := range wantPops {
			if !pops[id] {
				return false
			}
		}
		return true
	}
	// A leg that ends before its pop is made pops no more: each leg pops
	// before it is answered and hung up.
	for _, c := range convs {
		c.Alert()
	}
	countLegs()
	waitFor(t, 20*time.Second, "a pop per offered leg", popped)
	for _, c := range convs {
		c.Connect()
	}
	xfer.BlindTransfer(b)
	countLegs()
	waitFor(t, 20*time.Second, "the transferred leg's pop", popped)
	xfer.Connect()
	for _, c := range convs {
		c.Disconnect()
	}
	waitFor(t, 20*time.Second, "every leg disconnected", func() bool {
		mu.Lock()
		defer mu.Unlock()
		disc := map[string]bool{}
		for _, m := range got["screenpop.>"] {
			if strings.Contains(m.subject, ".disconnected.") {
				disc[m.header.Get("Nats-Msg-Id")] = true
			}
		}
		return len(disc) >= legs
	})

	evSchema, popSchema := mustSchemaAt(t, "event"), mustSchemaAt(t, "pop")
	mu.Lock()
	all := append([]consumerMsg(nil), got["screenpop.>"]...)
	mu.Unlock()

	events := map[string]eventData{} // id -> data
	pops := map[string]consumerPop{}
	seenMS := map[string]bool{} // media:state
	for _, m := range all {
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(m.data))
		if err != nil {
			t.Fatalf("%s: not JSON: %v", m.subject, err)
		}
		var ce consumerEnvelope
		if err := json.Unmarshal(m.data, &ce); err != nil {
			t.Fatal(err)
		}
		if ce.SpecVersion != "1.0" || ce.DataContentType != "application/json" {
			t.Errorf("%s: specversion %q datacontenttype %q", ce.ID, ce.SpecVersion, ce.DataContentType)
		}
		if id := m.header.Get("Nats-Msg-Id"); id != ce.ID || id == "" {
			t.Errorf("%s: Nats-Msg-Id %q, CloudEvent id %q", m.subject, id, ce.ID)
		}
		if !msTime.MatchString(ce.Time) {
			t.Errorf("%s: time %q is not RFC 3339 UTC with ms", ce.ID, ce.Time)
		}
		if off := m.header.Get("Screenpop-Clock-Offset"); off != "" {
			var n int64
			if _, err := fmt.Sscan(off, &n); err != nil {
				t.Errorf("%s: Screenpop-Clock-Offset %q is no integer", ce.ID, off)
			}
		}
		tok := strings.Split(m.subject, ".")
		switch {
		case strings.HasPrefix(m.subject, "screenpop.events."):
			if err := evSchema.Validate(v); err != nil {
				t.Errorf("event on %s invalid: %v\n%s", m.subject, err, m.data)
			}
			var e eventData
			if err := json.Unmarshal(ce.Data, &e); err != nil {
				t.Fatal(err)
			}
			if len(tok) != 5 || tok[2] != e.Media || tok[3] != e.State || tok[4] != e.Agent.UserID {
				t.Errorf("subject %s for %s %s of %s", m.subject, e.Media, e.State, e.Agent.UserID)
			}
			if want := fmt.Sprintf("evt:%s:%s:%s:%s", e.ConversationID, e.Agent.ParticipantID, e.Media, e.State); ce.ID != want {
				t.Errorf("id %s, want %s", ce.ID, want)
			}
			if ce.Source != "/screenpop/bridge" || ce.Type != "screenpop.conversation."+e.State+".v1" || ce.Subject != e.ConversationID {
				t.Errorf("%s: source %q type %q subject %q", ce.ID, ce.Source, ce.Type, ce.Subject)
			}
			if !msTime.MatchString(e.ReceivedAt) {
				t.Errorf("%s: receivedAt %q", ce.ID, e.ReceivedAt)
			}
			if e.OccurredAt != "" && !msTime.MatchString(e.OccurredAt) {
				t.Errorf("%s: occurredAt %q", ce.ID, e.OccurredAt)
			}
			if (e.State == "alerting" || e.State == "dialing") && e.OccurredAt != "" {
				t.Errorf("%s: occurredAt %q, documented as always empty for %s", ce.ID, e.OccurredAt, e.State)
			}
			if (e.State == "connected" || e.State == "disconnected") && e.OccurredAt == "" {
				t.Errorf("%s: no occurredAt although the emulator gives %s's time", ce.ID, e.State)
			}
			if want := cmpOr(e.OccurredAt, e.ReceivedAt); ce.Time != want {
				t.Errorf("%s: time %s, want %s", ce.ID, ce.Time, want)
			}
			for what, p := range map[string]string{"customer.phone": e.Customer.Phone, "dnis": e.DNIS} {
				if p != "" && !e164.MatchString(p) {
					t.Errorf("%s: %s %q not E.164", ce.ID, what, p)
				}
			}
			if w, ok := wantCustomer[e.ConversationID]; ok {
				if g := (customerWant{e.Customer.Phone, e.Customer.Email, e.DNIS, e.Direction}); g != w {
					t.Errorf("%s: phone, email, dnis, direction %+v, want %+v", ce.ID, g, w)
				}
			} else if !e.Internal || e.Customer.Phone != "" {
				t.Errorf("%s: internal %v phone %q", ce.ID, e.Internal, e.Customer.Phone)
			}
			events[ce.ID] = e
			seenMS[e.Media+":"+e.State] = true
		case strings.HasPrefix(m.subject, "screenpop.pops."):
			if err := popSchema.Validate(v); err != nil {
				t.Errorf("pop on %s invalid: %v\n%s", m.subject, err, m.data)
			}
			var p consumerPop
			if err := json.Unmarshal(ce.Data, &p); err != nil {
				t.Fatal(err)
			}
			if len(tok) != 3 || tok[2] != p.AgentID {
				t.Errorf("pop subject %s for agent %s", m.subject, p.AgentID)
			}
			if ce.ID != p.ID || wantPops[p.ID] != p.AgentID {
				t.Errorf("pop id %s (data %s) for agent %s: not one of the legs %v", ce.ID, p.ID, p.AgentID, wantPops)
			}
			if ce.Source != "/screenpop/resolver" || ce.Type != "screenpop.pop.v1" || ce.Subject != p.ConversationID {
				t.Errorf("%s: source %q type %q subject %q", ce.ID, ce.Source, ce.Type, ce.Subject)
			}
			if ce.Time != p.IssuedAt || !msTime.MatchString(p.IssuedAt) || !msTime.MatchString(p.EventReceivedAt) {
				t.Errorf("%s: time %q issuedAt %q eventReceivedAt %q", ce.ID, ce.Time, p.IssuedAt, p.EventReceivedAt)
			}
			if _, dup := pops[ce.ID]; dup {
				t.Errorf("%s received twice", ce.ID)
			}
			pops[ce.ID] = p
		default:
			t.Errorf("unexpected subject %s", m.subject)
		}
	}
	for _, ms := range []string{
		"voice:alerting", "voice:dialing", "voice:connected", "voice:disconnected",
		"callback:alerting", "callback:connected", "callback:disconnected",
		"chat:alerting", "chat:connected", "chat:disconnected",
		"message:alerting", "message:connected", "message:disconnected",
		"email:alerting", "email:connected", "email:disconnected",
	} {
		if !seenMS[ms] {
			t.Errorf("no %s event", ms)
		}
	}
	t.Logf("%d events, %d pops, %d media:state, filters %v", len(events), len(pops), len(seenMS), len(got))
	if len(pops) != len(wantPops) {
		t.Errorf("%d pops, want one per non-internal leg: %d", len(pops), len(wantPops))
	}

	// Each filter receives exactly the messages the docs say it selects.
	ids := func(f string) []string {
		mu.Lock()
		defer mu.Unlock()
		set := map[string]bool{}
		for _, m := range got[f] {
			set[m.header.Get("Nats-Msg-Id")] = true
		}
		return sortedKeys(set)
	}
	want := func(keep func(id string, e eventData) bool) []string {
		set := map[string]bool{}
		for id, e := range events {
			if keep(id, e) {
				set[id] = true
			}
		}
		return sortedKeys(set)
	}
	popsOf := func(agent string) []string {
		set := map[string]bool{}
		for id, p := range pops {
			if agent == "" || p.AgentID == agent {
				set[id] = true
			}
		}
		return sortedKeys(set)
	}
	for f, w := range map[string][]string{
		"screenpop.events.>":                want(func(string, eventData) bool { return true }),
		"screenpop.events.voice.>":          want(func(_ string, e eventData) bool { return e.Media == "voice" }),
		"screenpop.events.voice.alerting.*": want(func(_ string, e eventData) bool { return e.Media == "voice" && e.State == "alerting" }),
		"screenpop.events.chat.alerting.*":  want(func(_ string, e eventData) bool { return e.Media == "chat" && e.State == "alerting" }),
		"screenpop.events.*.*." + a:         want(func(_ string, e eventData) bool { return e.Agent.UserID == a }),
		"screenpop.pops." + a:               popsOf(a),
		"screenpop.pops.*":                  popsOf(""),
	} {
		// Each subscription's callbacks run on their own goroutine: give
		// the last ones a moment to catch up with screenpop.>.
		deadline := time.Now().Add(5 * time.Second)
		g := ids(f)
		for strings.Join(g, " ") != strings.Join(w, " ") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			g = ids(f)
		}
		if strings.Join(g, " ") != strings.Join(w, " ") || len(w) == 0 {
			t.Errorf("%s received %d messages, want %d:\n got %v\nwant %v", f, len(g), len(w), g, w)
		}
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestConsumers_DocExamplesValidate takes the example of docs/events.md and
// every file of docs/schema/examples as a consumer would: each validates
// against its schema, and its id, subject, type, time and timestamps agree
// with the envelope rules of the same page.
func TestConsumers_DocExamplesValidate(t *testing.T) {
	page, err := os.ReadFile(filepath.Join("..", "..", "docs", "events.md"))
	if err != nil {
		t.Fatal(err)
	}
	// The example under "### Example": its subject, header and JSON.
	_, ex, ok := strings.Cut(string(page), "### Example")
	if !ok {
		t.Fatal("no example in docs/events.md")
	}
	sm := regexp.MustCompile("^\\s*`(screenpop\\.events\\.[^`]+)`, header\\s+`Nats-Msg-Id: ([^`]+)`").FindStringSubmatch(ex)
	if sm == nil {
		t.Fatal("the example names no subject and Nats-Msg-Id")
	}
	_, body, _ := strings.Cut(ex, "```json\n")
	body, _, _ = strings.Cut(body, "```")
	docs := map[string][]byte{"events.md#example": []byte(body)}
	files, _ := filepath.Glob(filepath.Join("..", "..", "docs", "schema", "examples", "*.json"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs[filepath.Base(f)] = b
	}
	evSchema, popSchema := mustSchemaAt(t, "event"), mustSchemaAt(t, "pop")
	for name, b := range docs {
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Errorf("%s: not JSON: %v", name, err)
			continue
		}
		var ce consumerEnvelope
		if err := json.Unmarshal(b, &ce); err != nil {
			t.Fatal(err)
		}
		if !msTime.MatchString(ce.Time) {
			t.Errorf("%s: time %q", name, ce.Time)
		}
		if strings.HasPrefix(name, "pop") {
			if err := popSchema.Validate(v); err != nil {
				t.Errorf("%s invalid: %v", name, err)
			}
			var p consumerPop
			_ = json.Unmarshal(ce.Data, &p)
			if ce.ID != p.ID || ce.Subject != p.ConversationID || ce.Time != p.IssuedAt || !strings.HasPrefix(p.ID, "pop:"+p.ConversationID+":") ||
				!msTime.MatchString(p.IssuedAt) || !msTime.MatchString(p.EventReceivedAt) {
				t.Errorf("%s: envelope and data disagree: %+v %+v", name, ce, p)
			}
			continue
		}
		if err := evSchema.Validate(v); err != nil {
			t.Errorf("%s invalid: %v", name, err)
		}
		var e eventData
		_ = json.Unmarshal(ce.Data, &e)
		id := fmt.Sprintf("evt:%s:%s:%s:%s", e.ConversationID, e.Agent.ParticipantID, e.Media, e.State)
		if ce.ID != id || ce.Subject != e.ConversationID || ce.Type != "screenpop.conversation."+e.State+".v1" ||
			ce.Time != cmpOr(e.OccurredAt, e.ReceivedAt) || !msTime.MatchString(e.ReceivedAt) ||
			(e.OccurredAt != "" && !msTime.MatchString(e.OccurredAt)) {
			t.Errorf("%s: envelope and data disagree: %+v %+v", name, ce, e)
		}
		if name == "events.md#example" {
			if sm[1] != fmt.Sprintf("screenpop.events.%s.%s.%s", e.Media, e.State, e.Agent.UserID) || sm[2] != ce.ID {
				t.Errorf("%s: subject %s and header %s do not match the event", name, sm[1], sm[2])
			}
		}
	}
	if len(docs) < 7 {
		t.Errorf("found %d examples", len(docs))
	}
}

// TestConsumers_LongNumberIsNoE164: a caller id or a chat visitor's number
// with more digits than E.164 allows (a German PBX extension dialled in
// full: +49 30 1234567 89012, 16 digits) is one libphonenumber calls
// possible. The schema promises customer.phone and dnis in E.164 (at most
// 15 digits), so a consumer that validates the events must not be handed
// it: the event says phone "" (the address keeps what Genesys gave).
func TestConsumers_LongNumberIsNoE164(t *testing.T) {
	d, nc := startDemoOnNATS(t)
	var mu sync.Mutex
	var msgs [][]byte
	if _, err := nc.Subscribe("screenpop.events.>", func(m *nats.Msg) {
		mu.Lock()
		msgs = append(msgs, m.Data)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	a := demoAgents[0].ID
	d.Genesys.InboundCall(a, "+4930123456789012", notificationstest.Options{DNIS: "+4930123456789099"}).Alert()
	d.Genesys.Chat(a, notificationstest.Options{Attributes: map[string]string{"context.phoneNumber": "+49 30 1234567 89012"}}).Alert()
	waitFor(t, 20*time.Second, "both alerting events", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(msgs) >= 2
	})
	s := mustSchemaAt(t, "event")
	mu.Lock()
	defer mu.Unlock()
	for _, b := range msgs {
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(v); err != nil {
			t.Errorf("event invalid against docs/schema/event.schema.json: %v\n%s", err, b)
		}
	}
}
