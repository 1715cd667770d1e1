package bridge

import (
	"bytes"
	"time"
)

// TimeLayout is RFC 3339 in UTC with milliseconds, as every timestamp in
// screenpop's events and pops is written.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// Time is a timestamp that marshals as TimeLayout in UTC, and as "" when zero
// (an unknown time).
type Time struct{ time.Time }

// NewTime returns t as a Time.
func NewTime(t time.Time) Time { return Time{t} }

// MarshalJSON implements json.Marshaler.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte(`""`), nil
	}
	b := make([]byte, 0, len(TimeLayout)+2)
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, TimeLayout)
	return append(b, '"'), nil
}

// UnmarshalJSON implements json.Unmarshaler. It accepts "", null and any
// RFC 3339 time.
func (t *Time) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte(`""`)) || bytes.Equal(b, []byte("null")) {
		t.Time = time.Time{}
		return nil
	}
	return t.Time.UnmarshalJSON(b)
}
