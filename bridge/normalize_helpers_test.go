package bridge

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// frame is one notification as it arrives on the channel websocket.
type frame struct {
	TopicName string          `json:"topicName"`
	EventBody json.RawMessage `json:"eventBody"`
}

var fixtureEpoch = time.Date(2025, 3, 4, 15, 0, 0, 0, time.UTC)

// MustLoadFrames reads a fixture (a JSON array of notification frames, in
// delivery order) and returns its snapshots, received one second apart.
func MustLoadFrames(tb testing.TB, path string) []Snapshot {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var frames []frame
	if err := json.Unmarshal(b, &frames); err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	out := make([]Snapshot, len(frames))
	for i, f := range frames {
		out[i] = Snapshot{Topic: f.TopicName, Agent: agentFromTopic(f.TopicName), Body: f.EventBody,
			ReceivedAt: fixtureEpoch.Add(time.Duration(i) * time.Second)}
	}
	return out
}

// MustNormalizer returns a normalizer on a fake clock.
func MustNormalizer(tb testing.TB, cfg NormalizerConfig) *Normalizer {
	tb.Helper()
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return fixtureEpoch }
	}
	n, err := NewNormalizer(cfg, zerolog.Nop())
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func normalizeAll(n *Normalizer, snaps []Snapshot) []Event {
	var out []Event
	for _, s := range snaps {
		out = append(out, n.Normalize(s)...)
	}
	return out
}

func fixturePath(dir, name string) string { return filepath.Join("testdata", dir, name+".json") }

func zerologNop() zerolog.Logger { return zerolog.Nop() }

func readFile(path string) ([]byte, error) { return os.ReadFile(path) }

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
