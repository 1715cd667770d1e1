package bridge

import (
	"encoding/json"
	"fmt"

	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Ids of the generated fixtures; they mirror notifications/internal/fixturegen.
const (
	fxAgentA = "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa"
	fxAgentB = "bbbbbbbb-2222-4222-8222-bbbbbbbbbbbb"
	fxQueueS = "5a1e5000-0000-4000-8000-000000000001"
	fxQueueC = "c4a70000-0000-4000-8000-000000000002"

	roleAgentA  = 10
	roleAgentA2 = 11
	roleAgentB  = 20
)

func fxConv(caseNo int) ConversationID {
	return ConversationID(fmt.Sprintf("c0c0c0c0-0000-4000-8000-%012d", caseNo))
}
func fxPart(caseNo, role int) ParticipantID {
	return ParticipantID(fmt.Sprintf("%08d-0000-4000-8000-%012d", role, caseNo))
}

// want is the part of an event a case pins down.
type want struct {
	agent    AgentID
	role     int
	media    Media
	state    State
	dir      string
	internal bool
	phone    string
	email    string
	name     string
	dnis     string
	queue    string
	ended    bool // LegEnded
}

func TestNormalizer_Normalize(t *testing.T) {
	const (
		in  = DirectionInbound
		out = DirectionOutbound
		A   = AgentID(fxAgentA)
		B   = AgentID(fxAgentB)
	)
	boston := func(w want) want { // the caller of the inbound cases
		w.phone, w.name = "+16175550123", "BOSTON MA"
		if w.dnis == "" && w.dir == in {
			w.dnis = "+18005551000"
		}
		return w
	}
	tests := []struct {
		name   string
		caseNo int
		want   []want
		// counters after the run
		duplicates, stale, unknownMedia, unmapped float64
		invalid                                   map[string]float64
	}{
		{name: "inbound_call", caseNo: 1, want: []want{
			boston(want{agent: A, role: roleAgentA, media: MediaVoice, state: StateAlerting, dir: in, queue: fxQueueS}),
			boston(want{agent: A, role: roleAgentA, media: MediaVoice, state: StateConnected, dir: in, queue: fxQueueS}),
			boston(want{agent: A, role: roleAgentA, media: MediaVoice, state: StateDisconnected, ended: true, dir: in, queue: fxQueueS}),
		}, duplicates: 4},
		{name: "duplicate_snapshot", caseNo: 2, want: []want{
			boston(want{agent: A, role: roleAgentA, media: MediaVoice, state: StateAlerting, dir: in, queue: fxQueueS}),
			boston(want{agent: A, role: roleAgentA, media: MediaVoice, state: StateConnected, dir: in, queue: fxQueueS}),
		}, duplicates: 2},
		{name: "out_of_order", caseNo: 3, want: []want{
			boston(want{agent: A, role: roleAgentA, media: MediaVoice, state: StateConnected, dir: in, queue: fxQueueS}),
			boston(want{agent: A, role: roleAgentA, media: MediaVoice, state: StateDisconnected, ended: true, dir: in, queue: fxQueueS}),
		}, stale: 3},
		{name: "blind_transfer", caseNo: 4, want: []want{
			boston(want{agent: A, role: roleAgentA, media: MediaVoice, state: StateAlerting, dir: in, queue: fxQueueS}),
			boston(want{agent: A, role: roleAgentA, media: MediaVoice, state: StateConnected, dir: in, queue: fxQueueS}),
			boston(want{agent: A, role: roleAgentA, media: MediaVoice, state: StateDisconnected, ended: true, dir: in, queue: fxQueueS}),
			// the receiving agent's event carries the conversation's customer
			boston(want{agent: B, role: roleAgentB, media: MediaVoice, state: StateAlerting, dir: in, queue: fxQueueS}),
			boston(want{agent: B, role: roleAgentB, media: MediaVoice, state: StateConnected, dir: in, queue: fxQueueS}),
		}, duplicates: 1},
		{name: "consult_transfer", caseNo: 5, want: []want{
			boston(want{agent: A, role: roleAgentA, media: MediaVoice, state: StateConnected, dir: in, queue: fxQueueS}),
			// B's call's far end is agent A (a SIP address); the customer is still the caller
			boston(want{agent: B, role: roleAgentB, media: MediaVoice, state: StateAlerting, dir: in, queue: fxQueueS}),
			boston(want{agent: B, role: roleAgentB, media: MediaVoice, state: StateConnected, dir: in, queue: fxQueueS}),
			boston(want{agent: A, role: roleAgentA, media: MediaVoice, state: StateDisconnected, ended: true, dir: in, queue: fxQueueS}),
		}, duplicates: 3},
		{name: "outbound_call", caseNo: 6, want: []want{
			{agent: A, role: roleAgentA, media: MediaVoice, state: StateDialing, dir: out, phone: "+13175550199", name: "Indianapolis IN"},
			{agent: A, role: roleAgentA, media: MediaVoice, state: StateConnected, dir: out, phone: "+13175550199", name: "Indianapolis IN"},
			{agent: A, role: roleAgentA, media: MediaVoice, state: StateDisconnected, ended: true, dir: out, phone: "+13175550199", name: "Indianapolis IN"},
		}, duplicates: 1},
		{name: "internal_call", caseNo: 7, want: []want{
			{agent: A, role: roleAgentA, media: MediaVoice, state: StateDialing, dir: out, internal: true},
			{agent: B, role: roleAgentB, media: MediaVoice, state: StateAlerting, dir: in, internal: true},
			{agent: A, role: roleAgentA, media: MediaVoice, state: StateConnected, dir: out, internal: true},
			{agent: B, role: roleAgentB, media: MediaVoice, state: StateConnected, dir: in, internal: true},
			{agent: A, role: roleAgentA, media: MediaVoice, state: StateDisconnected, ended: true, dir: out, internal: true},
			{agent: B, role: roleAgentB, media: MediaVoice, state: StateDisconnected, ended: true, dir: in, internal: true},
		}},
		{name: "conference", caseNo: 8, want: []want{
			boston(want{agent: A, role: roleAgentA, media: MediaVoice, state: StateConnected, dir: in, queue: fxQueueS}),
			// with an external third party on the line, the customer is still the caller
			boston(want{agent: B, role: roleAgentB, media: MediaVoice, state: StateAlerting, dir: in, queue: fxQueueS}),
			boston(want{agent: B, role: roleAgentB, media: MediaVoice, state: StateConnected, dir: in, queue: fxQueueS}),
			boston(want{agent: B, role: roleAgentB, media: MediaVoice, state: StateDisconnected, ended: true, dir: in, queue: fxQueueS}),
		}, duplicates: 3},
		{name: "callback", caseNo: 9, want: []want{
			{agent: A, role: roleAgentA, media: MediaCallback, state: StateAlerting, dir: out, phone: "+13175550142", name: "Jane Doe", queue: fxQueueS},
			{agent: A, role: roleAgentA, media: MediaCallback, state: StateConnected, dir: out, phone: "+13175550142", name: "Jane Doe", queue: fxQueueS},
			{agent: A, role: roleAgentA, media: MediaVoice, state: StateDialing, dir: out, phone: "+13175550142", name: "Jane Doe", queue: fxQueueS},
			{agent: A, role: roleAgentA, media: MediaVoice, state: StateConnected, dir: out, phone: "+13175550142", name: "Jane Doe", queue: fxQueueS},
			// the call and the callback end in the same snapshot: the last event ends the leg
			{agent: A, role: roleAgentA, media: MediaCallback, state: StateDisconnected, dir: out, phone: "+13175550142", name: "Jane Doe", queue: fxQueueS},
			{agent: A, role: roleAgentA, media: MediaVoice, state: StateDisconnected, ended: true, dir: out, phone: "+13175550142", name: "Jane Doe", queue: fxQueueS},
		}, duplicates: 2},
		{name: "reoffer_no_answer", caseNo: 10, want: []want{
			boston(want{agent: A, role: roleAgentA, media: MediaVoice, state: StateAlerting, dir: in, queue: fxQueueS}),
			boston(want{agent: A, role: roleAgentA, media: MediaVoice, state: StateDisconnected, ended: true, dir: in, queue: fxQueueS}),
			boston(want{agent: A, role: roleAgentA2, media: MediaVoice, state: StateAlerting, dir: in, queue: fxQueueS}),
			boston(want{agent: A, role: roleAgentA2, media: MediaVoice, state: StateConnected, dir: in, queue: fxQueueS}),
		}, duplicates: 2},
		{name: "missing_fields", caseNo: 11, want: []want{
			// customer with null address, name, attributes and calls; agent call without direction
			{agent: A, role: roleAgentA, media: MediaVoice, state: StateAlerting, dir: in, queue: fxQueueS},
			// connectedTime unreadable: the event still comes, with occurredAt unknown
			boston(want{agent: A, role: roleAgentA, media: MediaVoice, state: StateConnected, dir: in, queue: fxQueueS}),
		}, unmapped: 1, invalid: map[string]float64{"conversation_id": 1}},
		{name: "unknown_media", caseNo: 12, unknownMedia: 1},
		{name: "web_chat", caseNo: 13, want: []want{
			{agent: A, role: roleAgentA, media: MediaChat, state: StateAlerting, dir: in, phone: "+16175550123", email: "jane@example.com", name: "Jane Doe", queue: fxQueueC},
			{agent: A, role: roleAgentA, media: MediaChat, state: StateConnected, dir: in, phone: "+16175550123", email: "jane@example.com", name: "Jane Doe", queue: fxQueueC},
			{agent: A, role: roleAgentA, media: MediaChat, state: StateDisconnected, ended: true, dir: in, phone: "+16175550123", email: "jane@example.com", name: "Jane Doe", queue: fxQueueC},
		}},
		{name: "web_messaging", caseNo: 14, want: []want{
			{agent: A, role: roleAgentA, media: MediaMessage, state: StateAlerting, dir: in, email: "jane@example.com", name: "Jane", queue: fxQueueC},
			{agent: A, role: roleAgentA, media: MediaMessage, state: StateConnected, dir: in, email: "jane@example.com", name: "Jane", queue: fxQueueC},
		}, duplicates: 3},
		{name: "sms_message", caseNo: 15, want: []want{
			{agent: A, role: roleAgentA, media: MediaMessage, state: StateAlerting, dir: in, phone: "+13175550177", name: "+13175550177", dnis: "+18005551000", queue: fxQueueC},
		}},
		{name: "email_inbound", caseNo: 16, want: []want{
			{agent: A, role: roleAgentA, media: MediaEmail, state: StateAlerting, dir: in, email: "jane@example.com", name: "Jane Doe", queue: fxQueueS},
			{agent: A, role: roleAgentA, media: MediaEmail, state: StateConnected, dir: in, email: "jane@example.com", name: "Jane Doe", queue: fxQueueS},
			{agent: A, role: roleAgentA, media: MediaEmail, state: StateDisconnected, ended: true, dir: in, email: "jane@example.com", name: "Jane Doe", queue: fxQueueS},
		}, unmapped: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := MustNormalizer(t, NormalizerConfig{})
			got := normalizeAll(n, MustLoadFrames(t, fixturePath("snapshots", tt.name)))
			if len(got) != len(tt.want) {
				t.Fatalf("got %d events, want %d:\n%s", len(got), len(tt.want), dumpEvents(got))
			}
			seen := map[string]bool{}
			for i, w := range tt.want {
				e := got[i]
				if e.ConversationID != fxConv(tt.caseNo) || e.Agent.UserID != w.agent || e.Agent.ParticipantID != fxPart(tt.caseNo, w.role) ||
					e.Media != w.media || e.State != w.state || e.Direction != w.dir || e.Internal != w.internal ||
					e.Customer.Phone != w.phone || e.Customer.Email != w.email || e.Customer.Name != w.name || e.DNIS != w.dnis || e.QueueID != w.queue ||
					e.LegEnded != w.ended {
					t.Errorf("event %d:\n got %s\nwant %+v", i, dumpEvents(got[i:i+1]), w)
				}
				id := fmt.Sprintf("evt:%s:%s:%s:%s", fxConv(tt.caseNo), fxPart(tt.caseNo, w.role), w.media, w.state)
				if e.ID() != id || seen[id] {
					t.Errorf("event %d: id %q (seen before: %v), want %q once", i, e.ID(), seen[id], id)
				}
				seen[id] = true
				if want := fmt.Sprintf("screenpop.events.%s.%s.%s", w.media, w.state, w.agent); e.Subject() != want {
					t.Errorf("event %d: subject %q, want %q", i, e.Subject(), want)
				}
				if e.ReceivedAt.IsZero() {
					t.Errorf("event %d: receivedAt is zero", i)
				}
			}
			for name, c := range map[string][2]float64{
				"duplicates":    {testutil.ToFloat64(n.m.duplicates), tt.duplicates},
				"stale":         {testutil.ToFloat64(n.m.stale), tt.stale},
				"unknown media": {testutil.ToFloat64(n.m.unknownMedia), tt.unknownMedia},
				"unmapped":      {testutil.ToFloat64(n.m.unknownState), tt.unmapped},
			} {
				if c[0] != c[1] {
					t.Errorf("%s counted %v, want %v", name, c[0], c[1])
				}
			}
			for reason, w := range tt.invalid {
				if g := testutil.ToFloat64(n.m.invalid.WithLabelValues(reason)); g != w {
					t.Errorf("invalid %s counted %v, want %v", reason, g, w)
				}
			}
		})
	}
}

// TestNormalizer_EventFields pins one whole event, every field.
func TestNormalizer_EventFields(t *testing.T) {
	n := MustNormalizer(t, NormalizerConfig{})
	got := normalizeAll(n, MustLoadFrames(t, fixturePath("snapshots", "inbound_call")))
	if len(got) != 3 {
		t.Fatalf("got %d events, want 3", len(got))
	}
	want := Event{
		ConversationID: fxConv(1), Agent: AgentLeg{UserID: fxAgentA, ParticipantID: fxPart(1, roleAgentA)},
		Media: MediaVoice, State: StateConnected, Direction: DirectionInbound, QueueID: fxQueueS, DNIS: "+18005551000",
		Customer: Customer{Phone: "+16175550123", Address: "tel:+16175550123", Name: "BOSTON MA",
			Attributes: map[string]string{"AccountId": "778812", "IvrIntent": "billing-dispute", "screenpop.entity": "", "Language": "en-us"}},
		ReceivedAt: NewTime(fixtureEpoch.Add(2 * time.Second)),
		OccurredAt: NewTime(time.Date(2025, 3, 4, 15, 0, 40, 0, time.UTC)),
	}
	if !reflect.DeepEqual(got[1], want) {
		t.Errorf("connected event:\n got %s\nwant %s", dumpEvents(got[1:2]), dumpEvents([]Event{want}))
	}
	if d := got[2].OccurredAt.Time; !d.Equal(time.Date(2025, 3, 4, 15, 3, 20, 0, time.UTC)) {
		t.Errorf("disconnected occurredAt %v", d)
	}
	// Events of one snapshot never share a map.
	got[1].Customer.Attributes["x"] = "y"
	if _, ok := got[2].Customer.Attributes["x"]; ok {
		t.Error("events share their attributes map")
	}
}

// TestNormalizer_Handwritten runs genesys.md §5's examples, written by hand
// from the reference rather than generated from the SDK.
func TestNormalizer_Handwritten(t *testing.T) {
	for _, tt := range []struct {
		file        string
		want        string // media/state/agent of each event
		internal    bool
		phone, name string
	}{
		{"a_inbound_alerting", "voice/alerting/AAAA", false, "+16175550123", "BOSTON MA"},
		{"b_inbound_connected", "voice/alerting/AAAA voice/connected/AAAA", false, "+16175550123", "BOSTON MA"},
		{"c_blind_transfer", "voice/alerting/BBBB", false, "+16175550123", "BOSTON MA"},
		{"d_internal", "voice/alerting/BBBB", true, "", ""},
		{"e_webmessaging", "message/alerting/AAAA", false, "", "Web Messaging Guest"},
		{"f_webchat", "chat/alerting/AAAA", false, "+16175550123", "Jane Doe"},
	} {
		t.Run(tt.file, func(t *testing.T) {
			n := MustNormalizer(t, NormalizerConfig{})
			got := normalizeAll(n, MustLoadFrames(t, fixturePath("handwritten", tt.file)))
			var keys []string
			for _, e := range got {
				keys = append(keys, fmt.Sprintf("%s/%s/%s", e.Media, e.State, e.Agent.UserID))
				if e.Internal != tt.internal || e.Customer.Phone != tt.phone || e.Customer.Name != tt.name {
					t.Errorf("got %s", dumpEvents([]Event{e}))
				}
			}
			if g := strings.Join(keys, " "); g != tt.want {
				t.Errorf("events %q, want %q", g, tt.want)
			}
		})
	}
}

// TestNormalizer_Concurrent hands the same stream to several goroutines at
// once (two channels, a reconciliation): still one event per leg and state.
func TestNormalizer_Concurrent(t *testing.T) {
	n := MustNormalizer(t, NormalizerConfig{})
	var snaps []Snapshot
	for _, name := range []string{"blind_transfer", "callback", "internal_call"} {
		snaps = append(snaps, MustLoadFrames(t, fixturePath("snapshots", name))...)
	}
	var (
		mu  sync.Mutex
		ids = map[string]int{}
		wg  sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for _, s := range snaps {
				for _, e := range n.Normalize(s) {
					mu.Lock()
					ids[e.ID()]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(ids) != 5+6+6 {
		t.Errorf("got %d distinct events, want 17", len(ids))
	}
	for id, c := range ids {
		if c != 1 {
			t.Errorf("%s emitted %d times", id, c)
		}
	}
}

func TestNormalizer_Invalid(t *testing.T) {
	n := MustNormalizer(t, NormalizerConfig{})
	for _, tt := range []struct {
		name   string
		s      Snapshot
		reason string
	}{
		{"NoAgent", Snapshot{Topic: "v2.routing.queues.x.conversations", Body: []byte(`{"id":"c"}`)}, "agent"},
		{"WildcardAgent", Snapshot{Agent: "a.>", Body: []byte(`{"id":"c"}`)}, "agent"},
		{"Truncated", Snapshot{Agent: "a", Body: []byte(`{"id":"c","participants":[`)}, "json"},
		{"Empty", Snapshot{Agent: "a"}, "json"},
		{"NotObject", Snapshot{Agent: "a", Body: []byte(`[1,2]`)}, "conversation_id"},
		{"IDWithColon", Snapshot{Agent: "a", Body: []byte(`{"id":"c:1"}`)}, "conversation_id"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := testutil.ToFloat64(n.m.invalid.WithLabelValues(tt.reason))
			if ev := n.Normalize(tt.s); len(ev) != 0 {
				t.Errorf("got events %s", dumpEvents(ev))
			}
			if testutil.ToFloat64(n.m.invalid.WithLabelValues(tt.reason)) != before+1 {
				t.Errorf("invalid{reason=%q} not counted", tt.reason)
			}
		})
	}
}

func TestNewNormalizer(t *testing.T) {
	t.Run("BadRegion", func(t *testing.T) {
		if _, err := NewNormalizer(NormalizerConfig{PhoneRegion: "XX"}, zerologNop()); err == nil {
			t.Error("want an error for an unknown region")
		}
	})
	t.Run("RegistersMetrics", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		MustNormalizer(t, NormalizerConfig{Registerer: reg})
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]bool{}
		for _, mf := range mfs {
			names[mf.GetName()] = true
		}
		for _, want := range []string{"screenpop_bridge_normalizer_snapshots_total", "screenpop_bridge_normalizer_conversations", "screenpop_bridge_normalizer_legs"} {
			if !names[want] {
				t.Errorf("metric %s not registered (have %v)", want, names)
			}
		}
		if _, err := NewNormalizer(NormalizerConfig{Registerer: reg}, zerologNop()); err == nil {
			t.Error("registering twice: want an error")
		}
	})
}

func dumpEvents(es []Event) string {
	var b strings.Builder
	for _, e := range es {
		j, _ := json.Marshal(e)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

// TestNormalizer_LegEnded: a disconnected event says whether the agent
// participant has ended in every media, which is when its pop marker can
// go. A callback whose call attempt fails is disconnected in voice while
// the callback goes on.
func TestNormalizer_LegEnded(t *testing.T) {
	frames := MustLoadFrames(t, fixturePath("snapshots", "callback"))
	// Frame 3 has the call and the callback connected; the same with the
	// agent's call failed.
	agentStates := func(call, callback string) Snapshot {
		t.Helper()
		var body map[string]any
		if err := json.Unmarshal(frames[3].Body, &body); err != nil {
			t.Fatal(err)
		}
		for _, p := range body["participants"].([]any) {
			if p := p.(map[string]any); p["purpose"] == "agent" {
				p["calls"].([]any)[0].(map[string]any)["state"] = call
				p["callbacks"].([]any)[0].(map[string]any)["state"] = callback
			}
		}
		s := frames[3]
		var err error
		if s.Body, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
		return s
	}
	failed := agentStates("disconnected", "connected")
	ended := func(events []Event) map[string]bool {
		out := map[string]bool{}
		for _, e := range events {
			out[string(e.Media)+"/"+string(e.State)] = e.LegEnded
		}
		return out
	}

	t.Run("CallFailsCallbackGoesOn", func(t *testing.T) {
		n := MustNormalizer(t, NormalizerConfig{})
		normalizeAll(n, frames[:3])
		got := ended(n.Normalize(failed))
		if len(got) != 1 || got["voice/disconnected"] {
			t.Fatalf("events after the call failed %v, want voice/disconnected without legEnded", got)
		}
		// The callback ends later: now the leg has ended.
		if got := ended(n.Normalize(frames[4])); len(got) != 1 || !got["callback/disconnected"] {
			t.Fatalf("events at the callback's end %v, want callback/disconnected with legEnded", got)
		}
	})
	t.Run("FirstSeenAfterTheCallFailed", func(t *testing.T) {
		// After a restart or a gap, the first snapshot already has the
		// failed call.
		n := MustNormalizer(t, NormalizerConfig{})
		got := ended(n.Normalize(failed))
		if _, cb := got["callback/connected"]; len(got) != 2 || got["voice/disconnected"] || !cb {
			t.Fatalf("events %v, want voice/disconnected without legEnded and callback/connected", got)
		}
	})
	t.Run("AnUntrackedStateHoldsTheLeg", func(t *testing.T) {
		// The callback in a state the normalizer does not map (scheduled):
		// it makes no event, and the call's end does not end the leg.
		n := MustNormalizer(t, NormalizerConfig{})
		got := ended(n.Normalize(agentStates("disconnected", "scheduled")))
		if v, ok := got["voice/disconnected"]; len(got) != 1 || !ok || v {
			t.Fatalf("events %v, want voice/disconnected without legEnded", got)
		}
	})
}

// manyLegsSnapshot is a messaging conversation offered to agent A once per
// leg: participants 0..ended-1 have ended, and with live set, participant
// ended is alerting. Participants are listed in join order, as Genesys does.
func manyLegsSnapshot(t *testing.T, ended int, live bool) Snapshot {
	t.Helper()
	parts := []any{map[string]any{
		"id": "cust", "purpose": "customer", "address": "+13175550177",
		"messages": []any{map[string]any{"id": "m-cust", "state": "connected", "direction": "inbound", "type": "sms",
			"fromAddress": map[string]any{"addressNormalized": "+13175550177"}, "toAddress": map[string]any{"addressNormalized": "+18005551000"}}},
	}}
	agentLeg := func(i int, state string) map[string]any {
		p := map[string]any{"id": fmt.Sprintf("leg-%03d", i), "userId": fxAgentA, "purpose": "agent", "queueId": fxQueueC,
			"messages": []any{map[string]any{"id": fmt.Sprintf("m-%03d", i), "state": state, "direction": "inbound", "type": "sms", "peerId": "m-cust"}}}
		if state == "disconnected" {
			p["endTime"] = "2025-03-04T15:00:00Z"
		}
		return p
	}
	for i := range ended {
		parts = append(parts, agentLeg(i, "disconnected"))
	}
	if live {
		parts = append(parts, agentLeg(ended, "alerting"))
	}
	body, err := json.Marshal(map[string]any{"id": "c-many-legs", "participants": parts})
	if err != nil {
		t.Fatal(err)
	}
	return Snapshot{Agent: fxAgentA, Body: body, ReceivedAt: fixtureEpoch}
}

// TestNormalizer_ManyLegs: a long-lived messaging conversation re-offered to
// one agent again and again repeats every ended leg in each snapshot. Legs
// past the 64th still get their events, and their legEnded.
func TestNormalizer_ManyLegs(t *testing.T) {
	const legs = 70
	key := func(e Event) string {
		return fmt.Sprintf("%s/%s/%s/ended=%v", e.Agent.ParticipantID, e.Media, e.State, e.LegEnded)
	}
	t.Run("OneOfferAtATime", func(t *testing.T) {
		n := MustNormalizer(t, NormalizerConfig{})
		for i := range legs {
			offer := manyLegsSnapshot(t, i, true)
			got := n.Normalize(offer)
			if want := fmt.Sprintf("leg-%03d/message/alerting/ended=false", i); len(got) != 1 || key(got[0]) != want {
				t.Fatalf("offer %d after %d ended legs: %s\nwant %s", i+1, i, dumpEvents(got), want)
			}
			if again := n.Normalize(offer); len(again) != 0 {
				t.Fatalf("offer %d repeated: %s", i+1, dumpEvents(again))
			}
			got = n.Normalize(manyLegsSnapshot(t, i+1, false))
			if want := fmt.Sprintf("leg-%03d/message/disconnected/ended=true", i); len(got) != 1 || key(got[0]) != want {
				t.Fatalf("end of offer %d: %s\nwant %s", i+1, dumpEvents(got), want)
			}
		}
		if st := n.Status(); st.Legs != legs || st.Tombstones != 1 {
			t.Errorf("status %+v, want %d legs in one finished conversation", st, legs)
		}
	})
	t.Run("FirstSeenLate", func(t *testing.T) {
		// After a restart: one snapshot with every ended leg and a new offer.
		n := MustNormalizer(t, NormalizerConfig{})
		got := n.Normalize(manyLegsSnapshot(t, legs, true))
		if len(got) != legs+1 {
			t.Fatalf("got %d events, want %d", len(got), legs+1)
		}
		for i, e := range got[:legs] {
			if want := fmt.Sprintf("leg-%03d/message/disconnected/ended=true", i); key(e) != want {
				t.Errorf("event %d: %s, want %s", i, key(e), want)
			}
		}
		if want := fmt.Sprintf("leg-%03d/message/alerting/ended=false", legs); key(got[legs]) != want {
			t.Errorf("last event %s, want %s", key(got[legs]), want)
		}
		if e := got[legs]; e.Customer.Phone != "+13175550177" || e.QueueID != fxQueueC {
			t.Errorf("offer event %s", dumpEvents(got[legs:]))
		}
	})
}

// TestNormalizer_MessagePhone: a message's fromAddress (and the customer
// participant's address, which repeats it) is a phone number only on
// channels that address people by one. A numeric id of a social channel
// must not become a phone the resolver would open a stranger's record by.
func TestNormalizer_MessagePhone(t *testing.T) {
	frames := MustLoadFrames(t, fixturePath("snapshots", "sms_message"))
	withMessage := func(typ, from, to string) Snapshot {
		t.Helper()
		var body map[string]any
		if err := json.Unmarshal(frames[0].Body, &body); err != nil {
			t.Fatal(err)
		}
		for _, p := range body["participants"].([]any) {
			p := p.(map[string]any)
			m := p["messages"].([]any)[0].(map[string]any)
			m["type"] = typ
			if p["purpose"] == "customer" {
				p["address"], p["name"] = from, from
				m["fromAddress"] = map[string]any{"addressNormalized": from, "addressRaw": from}
				m["toAddress"] = map[string]any{"addressNormalized": to, "addressRaw": to}
			}
		}
		s := frames[0]
		var err error
		if s.Body, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, tt := range []struct {
		name, region, typ, from, to string
		phone, dnis                 string
	}{
		{"SMS", "US", "sms", "+13175550177", "+18005551000", "+13175550177", "+18005551000"},
		{"SMSNational", "US", "sms", "3175550177", "8005551000", "+13175550177", "+18005551000"},
		{"WhatsApp", "US", "whatsapp", "+447700900123", "+18005551000", "+447700900123", "+18005551000"},
		{"WhatsAppUpperCase", "US", "WhatsApp", "+447700900123", "+18005551000", "+447700900123", "+18005551000"},
		// A WhatsApp id is the international number without its '+'.
		{"WhatsAppId", "US", "whatsapp", "447700900123", "18005551000", "+447700900123", "+18005551000"},
		{"WhatsAppIdNotInTheRegion", "DE", "whatsapp", "13175550177", "4930901820", "+13175550177", "+4930901820"},
		{"OpenInternational", "US", "open", "+13175550177", "+18005551000", "+13175550177", "+18005551000"},
		{"OpenId", "US", "open", "3175550177", "8005551000", "", ""},
		{"Twitter", "US", "twitter", "2244994945", "1234567890", "", ""},
		{"TwitterGB", "GB", "twitter", "12345678", "87654321", "", ""},
		{"Facebook", "US", "facebook", "3175550177", "2015550123", "", ""},
		{"Instagram", "DE", "instagram", "3012345678", "301234567", "", ""},
		{"Line", "US", "line", "3175550177", "8005551000", "", ""},
		{"WebMessaging", "US", "webmessaging", "3175550177", "8005551000", "", ""},
		{"NoType", "US", "", "3175550177", "8005551000", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.phone == "" {
				// The id must be one ParsePhone reads as a number, or the
				// case shows nothing.
				if _, ok := ParsePhone(tt.from, tt.region); !ok {
					t.Fatalf("ParsePhone(%q, %s) is no number: pick an id that is", tt.from, tt.region)
				}
			}
			n := MustNormalizer(t, NormalizerConfig{PhoneRegion: tt.region})
			got := n.Normalize(withMessage(tt.typ, tt.from, tt.to))
			if len(got) != 1 {
				t.Fatalf("got %d events, want 1:\n%s", len(got), dumpEvents(got))
			}
			e := got[0]
			if e.Media != MediaMessage || e.State != StateAlerting {
				t.Errorf("event %s/%s, want message/alerting", e.Media, e.State)
			}
			if e.Customer.Phone != tt.phone || e.DNIS != tt.dnis {
				t.Errorf("phone %q dnis %q, want %q and %q", e.Customer.Phone, e.DNIS, tt.phone, tt.dnis)
			}
			// The address and the name are kept as Genesys gave them.
			if e.Customer.Address != tt.from || e.Customer.Name != tt.from {
				t.Errorf("address %q name %q, want %q for both", e.Customer.Address, e.Customer.Name, tt.from)
			}
		})
	}
}

// TestNormalizer_CallbackEventsInDocumentedOrder: docs/events.md says a
// callback is "callback alerting, callback connected, then the call the
// agent places is voice dialing, voice connected", and that legEnded means
// "no event of this leg follows". Both must hold when one snapshot changes
// the callback and its call at once (a lost frame, a reconciliation, an
// auto-dialled callback, the hang-up that ends both).
func TestNormalizer_CallbackEventsInDocumentedOrder(t *testing.T) {
	frames := MustLoadFrames(t, fixturePath("snapshots", "callback"))
	key := func(e Event) string { return string(e.Media) + "/" + string(e.State) }
	t.Run("TheCallFollowsTheCallback", func(t *testing.T) {
		// Frame 2 has the callback connected and the agent's call dialing;
		// frame 1 (the callback connected alone) never arrived.
		n := MustNormalizer(t, NormalizerConfig{})
		got := normalizeAll(n, []Snapshot{frames[0], frames[2]})
		var keys []string
		for _, e := range got {
			keys = append(keys, key(e))
		}
		want := []string{"callback/alerting", "callback/connected", "voice/dialing"}
		if !slices.Equal(keys, want) {
			t.Errorf("events %v, want %v", keys, want)
		}
	})
	t.Run("NothingFollowsLegEnded", func(t *testing.T) {
		// Frame 4 ends the call and the callback together.
		n := MustNormalizer(t, NormalizerConfig{})
		got := normalizeAll(n, frames)
		endedBy := map[ParticipantID]string{}
		for _, e := range got {
			if by, ok := endedBy[e.Agent.ParticipantID]; ok {
				t.Errorf("%s follows %s, which said legEnded", key(e), by)
			}
			if e.LegEnded {
				endedBy[e.Agent.ParticipantID] = key(e)
			}
		}
		if len(got) == 0 || !got[len(got)-1].LegEnded {
			t.Errorf("the leg's last event has no legEnded:\n%s", dumpEvents(got))
		}
	})
}
