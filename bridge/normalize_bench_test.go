package bridge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

// compact returns the frames' bodies without the fixture's indentation, as
// they arrive on the wire.
func compactBodies(tb testing.TB, snaps []Snapshot) []Snapshot {
	tb.Helper()
	out := make([]Snapshot, len(snaps))
	for i, s := range snaps {
		var b bytes.Buffer
		if err := json.Compact(&b, s.Body); err != nil {
			tb.Fatal(err)
		}
		s.Body = b.Bytes()
		out[i] = s
	}
	return out
}

// withConversation returns snaps with their conversation id replaced.
func withConversation(snaps []Snapshot, from, to string) []Snapshot {
	out := make([]Snapshot, len(snaps))
	for i, s := range snaps {
		s.Body = bytes.ReplaceAll(s.Body, []byte(from), []byte(to))
		out[i] = s
	}
	return out
}

// BenchmarkNormalize measures one snapshot per op on the realistic 4-5 KB
// voice snapshots of the inbound_call fixture.
//
//   - Steady: the snapshot repeats (the common case: most snapshots change
//     no agent leg), so it is scanned and found a duplicate.
//   - Stream: whole conversations, 7 snapshots each, 3 of which emit an
//     event with its customer (phone parsing, attribute copy).
func BenchmarkNormalize(b *testing.B) {
	frames := compactBodies(b, MustLoadFrames(b, fixturePath("snapshots", "inbound_call")))
	b.Run("Steady", func(b *testing.B) {
		n := MustNormalizer(b, NormalizerConfig{})
		s := frames[2]
		n.Normalize(s)
		b.SetBytes(int64(len(s.Body)))
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if ev := n.Normalize(s); len(ev) != 0 {
				b.Fatal("duplicate emitted")
			}
		}
	})
	b.Run("Stream", func(b *testing.B) {
		const convs = 512
		streams := make([][]Snapshot, convs)
		var size int
		for i := range streams {
			streams[i] = withConversation(frames, string(fxConv(1)), fmt.Sprintf("c0c0c0c0-0000-4000-8000-%012d", 1000+i))
		}
		for _, s := range frames {
			size += len(s.Body)
		}
		b.SetBytes(int64(size / len(frames)))
		b.ReportAllocs()
		n := MustNormalizer(b, NormalizerConfig{})
		i, events := 0, 0
		for b.Loop() {
			c, f := (i/len(frames))%convs, i%len(frames)
			if c == 0 && f == 0 && i > 0 {
				n = MustNormalizer(b, NormalizerConfig{}) // forget, so the next pass emits again
			}
			events += len(n.Normalize(streams[c][f]))
			i++
		}
		b.ReportMetric(float64(events)/float64(i), "events/op")
	})
}

// slimConversation is what a plain encoding/json normalizer would decode:
// only the fields the normalizer reads.
type slimConversation struct {
	ID           string `json:"id"`
	Participants []struct {
		ID         string            `json:"id"`
		UserID     string            `json:"userId"`
		Purpose    string            `json:"purpose"`
		Name       string            `json:"name"`
		Address    string            `json:"address"`
		QueueID    string            `json:"queueId"`
		EndTime    string            `json:"endTime"`
		Attributes map[string]string `json:"attributes"`
		Calls      []slimComm        `json:"calls"`
		Callbacks  []slimComm        `json:"callbacks"`
		Chats      []slimComm        `json:"chats"`
		Messages   []slimComm        `json:"messages"`
		Emails     []slimComm        `json:"emails"`
	} `json:"participants"`
}

type slimComm struct {
	ID               string `json:"id"`
	State            string `json:"state"`
	InitialState     string `json:"initialState"`
	Direction        string `json:"direction"`
	ConnectedTime    string `json:"connectedTime"`
	DisconnectedTime string `json:"disconnectedTime"`
	Self             struct {
		AddressNormalized string `json:"addressNormalized"`
	} `json:"self"`
	Other struct {
		AddressNormalized string `json:"addressNormalized"`
	} `json:"other"`
}

// BenchmarkDecodeSlimStruct is the comparison: encoding/json into a slim
// struct, decoding only, no state and no events.
func BenchmarkDecodeSlimStruct(b *testing.B) {
	s := compactBodies(b, MustLoadFrames(b, fixturePath("snapshots", "inbound_call")))[2]
	b.SetBytes(int64(len(s.Body)))
	b.ReportAllocs()
	for b.Loop() {
		var c slimConversation
		if err := json.Unmarshal(s.Body, &c); err != nil || c.ID == "" {
			b.Fatal(err)
		}
	}
}

// BenchmarkParsePhone is the cost paid once per emitted event.
func BenchmarkParsePhone(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := ParsePhone("tel:+16175550123", "US"); !ok {
			b.Fatal("not parsed")
		}
	}
}
