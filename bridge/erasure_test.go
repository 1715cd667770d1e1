package bridge

import (
	"strings"
	"testing"
	"time"
)

// TestNormalizer_ForgetsACallersNumberWithTheConversation: docs/operations.md
// 8, "Personal data", says the normalizer keeps conversation, participant
// and agent ids and leg states, an ended conversation for 10 minutes after
// its last snapshot. Its phone cache kept the caller's number (the raw
// address and its E.164) until 4,096 other addresses had come by or the
// daemon restarted: weeks at a quiet centre, long after the call's
// tombstone was swept.
func TestNormalizer_ForgetsACallersNumberWithTheConversation(t *testing.T) {
	clk := &testClock{t: fixtureEpoch.Add(200 * time.Second)}
	n := MustNormalizer(t, NormalizerConfig{Now: clk.Now})
	frames := MustLoadFrames(t, fixturePath("snapshots", "inbound_call"))
	if got := normalizeAll(n, frames[:6]); len(got) != 3 {
		t.Fatalf("got %d events of the call, want 3", len(got))
	}
	const caller = "6175550123"
	kept := func() []string {
		n.phoneMu.Lock()
		defer n.phoneMu.Unlock()
		var out []string
		for _, m := range []map[string]string{n.phones, n.oldPhones} {
			for raw, e164 := range m {
				if strings.Contains(raw, caller) || strings.Contains(e164, caller) {
					out = append(out, raw)
				}
			}
		}
		return out
	}
	if len(kept()) == 0 {
		t.Fatal("the call's number was never in the phone cache: the test no longer tests it")
	}
	// The agent's other calls run the sweep, every 5 minutes, for an hour.
	for i := range 12 {
		clk.Add(5 * time.Minute)
		n.Normalize(otherConversation(t, i, clk.Now()))
	}
	if st := n.Status(); st.Tombstones != 0 {
		t.Fatalf("%d tombstones an hour on, want the call's swept", st.Tombstones)
	}
	if left := kept(); len(left) != 0 {
		t.Errorf("an hour after the call ended, its tombstone long swept, the normalizer still holds the caller's number as %q", left)
	}
}
