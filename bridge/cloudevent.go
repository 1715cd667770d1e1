package bridge

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// CloudEvents 1.0, structured JSON mode: the envelope of everything screenpop
// publishes.
const (
	SpecVersion     = "1.0"
	SourceBridge    = "/screenpop/bridge"
	SourceResolver  = "/screenpop/resolver"
	TypePop         = "screenpop.pop.v1"
	typeConvPrefix  = "screenpop.conversation."
	typeVersion1    = ".v1"
	ContentTypeJSON = "application/json"
)

// EventType is screenpop.conversation.<state>.v1.
func EventType(s State) string { return typeConvPrefix + string(s) + typeVersion1 }

// CloudEvent is the structured-mode envelope. Data stays raw so that
// consumers decode only what they need.
type CloudEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject"`
	Time            Time            `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
}

// EncodeEvent wraps e in its CloudEvent and returns the message to publish.
func EncodeEvent(e *Event, now time.Time) (Message, error) {
	id := e.ID()
	b, err := encodeCloudEvent(id, SourceBridge, EventType(e.State), string(e.ConversationID), now, e)
	if err != nil {
		return Message{}, fmt.Errorf("encode event: %w", err)
	}
	return Message{Subject: e.Subject(), ID: id, Data: b}, nil
}

// EncodePop wraps p in its CloudEvent and returns the message to publish.
func EncodePop(p *Pop, now time.Time) (Message, error) {
	b, err := encodeCloudEvent(p.ID, SourceResolver, TypePop, string(p.ConversationID), now, p)
	if err != nil {
		return Message{}, fmt.Errorf("encode pop: %w", err)
	}
	return Message{Subject: p.Subject(), ID: p.ID, Data: b}, nil
}

// encodeCloudEvent writes the envelope of CloudEvent around data's JSON,
// the same bytes as json.Marshal(&CloudEvent{...}) (TestEncodeCloudEvent),
// without marshalling the data twice: a json.RawMessage field is validated
// and compacted again, which cost as much as encoding the data itself.
func encodeCloudEvent(id, source, typ, subject string, now time.Time, data any) ([]byte, error) {
	d, err := json.Marshal(data)
	if err != nil {
		return nil, err
	}
	t, _ := NewTime(now).MarshalJSON()
	b := make([]byte, 0, len(d)+len(id)+len(source)+len(typ)+len(subject)+len(t)+120)
	b = append(b, `{"specversion":"`+SpecVersion+`","id":`...)
	b = appendJSONString(b, id)
	b = append(b, `,"source":`...)
	b = appendJSONString(b, source)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, typ)
	b = append(b, `,"subject":`...)
	b = appendJSONString(b, subject)
	b = append(b, `,"time":`...)
	b = append(b, t...)
	b = append(b, `,"datacontenttype":"`+ContentTypeJSON+`","data":`...)
	b = append(b, d...)
	return append(b, '}'), nil
}

// appendJSONString appends s as encoding/json writes it: printable ASCII
// other than " \ < > & as is, anything else through json.Marshal.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// DecodeEvent reads a screenpop.conversation.*.v1 CloudEvent, in one pass
// over the bytes (it runs once per event on the resolver's path).
func DecodeEvent(b []byte) (*Event, error) {
	var ce struct {
		SpecVersion string `json:"specversion"`
		Type        string `json:"type"`
		Data        Event  `json:"data"`
	}
	if err := json.Unmarshal(b, &ce); err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	if ce.SpecVersion != SpecVersion || !strings.HasPrefix(ce.Type, typeConvPrefix) {
		return nil, fmt.Errorf("decode event: unexpected specversion %q or type %q", ce.SpecVersion, ce.Type)
	}
	return &ce.Data, nil
}

// DecodePop reads a screenpop.pop.v1 CloudEvent.
func DecodePop(b []byte) (*Pop, error) {
	var ce CloudEvent
	if err := json.Unmarshal(b, &ce); err != nil {
		return nil, fmt.Errorf("decode pop: %w", err)
	}
	if ce.Type != TypePop {
		return nil, fmt.Errorf("decode pop: unexpected type %q", ce.Type)
	}
	var p Pop
	if err := json.Unmarshal(ce.Data, &p); err != nil {
		return nil, fmt.Errorf("decode pop data: %w", err)
	}
	return &p, nil
}
