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
	data, err := json.Marshal(e)
	if err != nil {
		return Message{}, fmt.Errorf("encode event: %w", err)
	}
	ce := CloudEvent{
		SpecVersion: SpecVersion, ID: e.ID(), Source: SourceBridge, Type: EventType(e.State),
		Subject: string(e.ConversationID), Time: NewTime(now), DataContentType: ContentTypeJSON, Data: data,
	}
	b, err := json.Marshal(&ce)
	if err != nil {
		return Message{}, fmt.Errorf("encode event: %w", err)
	}
	return Message{Subject: e.Subject(), ID: ce.ID, Data: b}, nil
}

// EncodePop wraps p in its CloudEvent and returns the message to publish.
func EncodePop(p *Pop, now time.Time) (Message, error) {
	data, err := json.Marshal(p)
	if err != nil {
		return Message{}, fmt.Errorf("encode pop: %w", err)
	}
	ce := CloudEvent{
		SpecVersion: SpecVersion, ID: p.ID, Source: SourceResolver, Type: TypePop,
		Subject: string(p.ConversationID), Time: NewTime(now), DataContentType: ContentTypeJSON, Data: data,
	}
	b, err := json.Marshal(&ce)
	if err != nil {
		return Message{}, fmt.Errorf("encode pop: %w", err)
	}
	return Message{Subject: p.Subject(), ID: ce.ID, Data: b}, nil
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
