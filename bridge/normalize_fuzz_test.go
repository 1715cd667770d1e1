package bridge

import (
	"path/filepath"
	"strings"
	"testing"
)

// FuzzNormalize feeds arbitrary snapshot bodies (seeded with every fixture
// frame) to the normalizer: it must never panic, every event must be valid
// version 1, and the same snapshot handed in again must produce nothing.
func FuzzNormalize(f *testing.F) {
	for _, dir := range []string{"snapshots", "handwritten"} {
		files, _ := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
		for _, file := range files {
			for _, s := range MustLoadFrames(f, file) {
				f.Add(string(s.Agent), s.Body)
			}
		}
	}
	f.Fuzz(func(t *testing.T, agent string, body []byte) {
		n := MustNormalizer(t, NormalizerConfig{})
		s := Snapshot{Agent: AgentID(agent), Body: body, ReceivedAt: fixtureEpoch}
		evs := n.Normalize(s)
		for _, e := range evs {
			if !e.Media.Valid() || !e.State.Valid() {
				t.Fatalf("invalid media/state %q/%q", e.Media, e.State)
			}
			if e.Agent.UserID != AgentID(agent) || !ValidSubjectToken(string(e.ConversationID)) || e.Agent.ParticipantID == "" {
				t.Fatalf("bad ids in %+v", e)
			}
			if parts := strings.Split(e.ID(), ":"); len(parts) != 5 {
				t.Fatalf("id %q has %d parts", e.ID(), len(parts))
			}
			if e.Direction != DirectionInbound && e.Direction != DirectionOutbound {
				t.Fatalf("direction %q", e.Direction)
			}
			if _, err := EncodeEvent(&e, fixtureEpoch); err != nil {
				t.Fatalf("encode: %v", err)
			}
		}
		if again := n.Normalize(s); len(again) != 0 {
			t.Fatalf("the same snapshot twice gave %d more events", len(again))
		}
	})
}
