package bridge

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// TestEncodeCloudEvent: the hand-built envelope is byte for byte what
// encoding/json writes for the CloudEvent struct, whatever the subject
// holds (quotes, HTML characters, control characters, non-ASCII, invalid
// UTF-8).
func TestEncodeCloudEvent(t *testing.T) {
	now := time.Date(2026, 11, 28, 13, 30, 0, 123_456_789, time.FixedZone("X", 3600))
	for _, subject := range []string{
		"c0000000-0000-4000-8000-000000000001", "", `a"b\c`, "<script>&amp;", "tab\there\n", "Zoë ☎ \u2028", "bad\xffutf8",
	} {
		e := benchEvent()
		e.ConversationID = ConversationID(subject)
		m, err := EncodeEvent(e, now)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(e)
		want, _ := json.Marshal(&CloudEvent{SpecVersion: SpecVersion, ID: e.ID(), Source: SourceBridge, Type: EventType(e.State),
			Subject: subject, Time: NewTime(now), DataContentType: ContentTypeJSON, Data: data})
		if !bytes.Equal(m.Data, want) {
			t.Errorf("subject %q:\n got %s\nwant %s", subject, m.Data, want)
		}
		// It reads back as any JSON string does (invalid UTF-8 as U+FFFD).
		var rt string
		q, _ := json.Marshal(subject)
		_ = json.Unmarshal(q, &rt)
		if back, err := DecodeEvent(m.Data); err != nil || string(back.ConversationID) != rt {
			t.Errorf("subject %q: decoded %v, %v", subject, back, err)
		}

		p := &Pop{ID: "pop-" + subject, ConversationID: ConversationID(subject), AgentID: e.Agent.UserID, Media: e.Media, State: e.State}
		pm, err := EncodePop(p, now)
		if err != nil {
			t.Fatal(err)
		}
		data, _ = json.Marshal(p)
		want, _ = json.Marshal(&CloudEvent{SpecVersion: SpecVersion, ID: p.ID, Source: SourceResolver, Type: TypePop,
			Subject: subject, Time: NewTime(now), DataContentType: ContentTypeJSON, Data: data})
		if !bytes.Equal(pm.Data, want) || pm.ID != p.ID {
			t.Errorf("pop, subject %q:\n got %s\nwant %s", subject, pm.Data, want)
		}
	}
}
