package bridge

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// MustSchema compiles docs/schema/<name>.schema.json (draft 2020-12) with
// format assertions on.
func MustSchema(tb testing.TB, name string) *jsonschema.Schema {
	tb.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	path, err := filepath.Abs(filepath.Join("..", "docs", "schema", name+".schema.json"))
	if err != nil {
		tb.Fatal(err)
	}
	s, err := c.Compile(path)
	if err != nil {
		tb.Fatalf("compile %s: %v", path, err)
	}
	return s
}

// MustValidate validates one JSON document against s.
func MustValidate(tb testing.TB, s *jsonschema.Schema, doc []byte) {
	tb.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		tb.Fatalf("not JSON: %v", err)
	}
	if err := s.Validate(v); err != nil {
		tb.Errorf("invalid against %s: %v\n%s", s.Location, err, doc)
	}
}

// TestSchema_Events encodes every event of every fixture as the bridge
// publishes it and validates it against docs/schema/event.schema.json.
func TestSchema_Events(t *testing.T) {
	s := MustSchema(t, "event")
	files, _ := filepath.Glob(filepath.Join("testdata", "snapshots", "*.json"))
	count := 0
	for _, f := range files {
		n := MustNormalizer(t, NormalizerConfig{})
		for _, e := range normalizeAll(n, MustLoadFrames(t, f)) {
			m, err := EncodeEvent(&e, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			MustValidate(t, s, m.Data)
			count++
		}
	}
	if count < 40 {
		t.Errorf("validated only %d events", count)
	}
}

// TestSchema_Examples validates the examples of docs/schema/examples, and
// that the schemas reject what they must.
func TestSchema_Examples(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "docs", "schema", "examples", "*.json"))
	if len(files) < 4 {
		t.Fatalf("found %d examples", len(files))
	}
	schemas := map[string]*jsonschema.Schema{"event": MustSchema(t, "event"), "pop": MustSchema(t, "pop")}
	for _, f := range files {
		kind := strings.SplitN(filepath.Base(f), ".", 2)[0]
		b := mustRead(t, f)
		MustValidate(t, schemas[kind], b)
		// A decodable example, as consumers would decode it.
		var err error
		if kind == "event" {
			_, err = DecodeEvent(b)
		} else {
			_, err = DecodePop(b)
		}
		if err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	for _, tt := range []struct {
		name, kind, from, to string
	}{
		{"UnknownMedia", "event", `"media": "voice"`, `"media": "video"`},
		{"PhoneNotE164", "event", `"phone": "+16175550123"`, `"phone": "617-555-0123"`},
		{"BadTime", "event", `"receivedAt": "2025-03-04T15:00:31.042Z"`, `"receivedAt": "yesterday"`},
		{"ExtraField", "event", `"internal": false`, `"internal": false, "secret": 1`},
		{"LegEndedFalse", "event", `"legEnded": true`, `"legEnded": false`},
		{"LegEndedNotDisconnected", "event", `"state": "disconnected"`, `"state": "connected"`},
		{"BadID", "event", `"id": "evt:`, `"id": "x:`},
		{"UnknownAction", "pop", `"action": "open"`, `"action": "dial"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := "event.alerting.json"
			if strings.HasPrefix(tt.name, "LegEnded") {
				src = "event.disconnected.json"
			}
			if tt.kind == "pop" {
				src = "pop.open.json"
			}
			b := mustRead(t, filepath.Join("..", "docs", "schema", "examples", src))
			bad := bytes.Replace(b, []byte(tt.from), []byte(tt.to), 1)
			if bytes.Equal(b, bad) {
				t.Fatalf("%q not in the example", tt.from)
			}
			v, _ := jsonschema.UnmarshalJSON(bytes.NewReader(bad))
			if err := schemas[tt.kind].Validate(v); err == nil {
				t.Errorf("schema accepted %s", tt.to)
			}
		})
	}
}

func mustRead(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := readFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestSchema_EncodedPop validates what EncodePop writes, and the agent
// websocket frame built from it.
func TestSchema_EncodedPop(t *testing.T) {
	now := time.Date(2025, 3, 4, 15, 0, 31, 0, time.UTC)
	for _, p := range []Pop{
		{ID: PopID("c1", "p1"), ConversationID: "c1", AgentID: "a1", Media: MediaVoice, State: StateAlerting,
			Target: Target{Action: ActionSearch, Query: "+16175550123"}, IssuedAt: NewTime(now), EventReceivedAt: NewTime(now)},
		{ID: PopID("c1", "p2"), ConversationID: "c1", AgentID: "a1", Media: MediaChat, State: StateConnected,
			Customer: PopCustomer{Email: "jane@example.com"}, Target: Target{Action: ActionChoose},
			Candidates: []Candidate{{Entity: "contact", ID: "1", Name: "x", URL: "https://x/main.aspx"}}, IssuedAt: NewTime(now), EventReceivedAt: NewTime(now)},
	} {
		m, err := EncodePop(&p, now)
		if err != nil {
			t.Fatal(err)
		}
		MustValidate(t, MustSchema(t, "pop"), m.Data)

		ce := mustCloudEvent(t, m.Data)
		frame := append([]byte(`{"type":"pop","seq":42,`), ce.Data[1:]...)
		c := jsonschema.NewCompiler()
		c.AssertFormat()
		path, _ := filepath.Abs(filepath.Join("..", "docs", "schema", "pop.schema.json"))
		ws, err := c.Compile(path + "#/$defs/websocketPop")
		if err != nil {
			t.Fatal(err)
		}
		MustValidate(t, ws, frame)
		v, _ := jsonschema.UnmarshalJSON(bytes.NewReader(ce.Data))
		if err := ws.Validate(v); err == nil {
			t.Error("websocketPop accepted a frame without type and seq")
		}
	}
}

func mustCloudEvent(tb testing.TB, b []byte) CloudEvent {
	tb.Helper()
	var ce CloudEvent
	if err := jsonUnmarshal(b, &ce); err != nil {
		tb.Fatal(err)
	}
	return ce
}
