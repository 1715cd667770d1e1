package bridge

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/screenpop/screenpop/internal/testenv"
)

// TestNormalizer_MemoryComesBackAfterThePeak drives a contact centre's day
// through the normalizer on a fake clock: a quiet night (a call every 5 s),
// the day's peak (10 calls a second, 50x) for as long as a tombstone and
// its sweep gap last (the table is then as big as an hour of it would make
// it), then the quiet night again until the peak's tombstones have aged
// out (TombstoneTTL plus a sweep gap, twice over). The conversations
// remembered come back to where they were the night before; the live heap
// the normalizer holds must come back with them (within 2x), not stay at
// the peak for the life of the process: every byte of the conversation
// table holds pointers, and the collector marks all of it on every cycle.
func TestNormalizer_MemoryComesBackAfterThePeak(t *testing.T) {
	frames := compactBodies(t, MustLoadFrames(t, fixturePath("snapshots", "inbound_call")))
	now := fixtureEpoch
	clock := func() time.Time { return now }
	const (
		night = 5 * time.Second        // a conversation every 5 s
		peak  = 100 * time.Millisecond // 10 a second
	)
	conv := 0
	run := func(every, d time.Duration, n *Normalizer) {
		end := now.Add(d)
		for now.Before(end) {
			id := fmt.Sprintf("c0c0c0c0-0000-4000-8000-%012d", 100000+conv)
			conv++
			for _, s := range withConversation(frames, string(fxConv(1)), id) {
				s.ReceivedAt = now
				n.Normalize(s)
			}
			now = now.Add(every)
		}
	}

	h0 := testenv.LiveHeap()
	n := MustNormalizer(t, NormalizerConfig{Now: clock})
	run(night, 30*time.Minute, n) // steady state: tombstones of the last 10 to 15 minutes
	before, hBefore := n.Status(), testenv.LiveHeap()
	run(peak, defaultTombstoneTTL+defaultTombstoneTTL/2, n)
	top, hTop := n.Status(), testenv.LiveHeap()
	run(night, 2*(defaultTombstoneTTL+defaultTombstoneTTL/2), n) // the peak's tombstones age out
	after, hAfter := n.Status(), testenv.LiveHeap()
	runtime.KeepAlive(n)

	kb := func(h uint64) float64 { return float64(int64(h)-int64(h0)) / 1024 }
	t.Logf("the night before: %d conversations, %.0f KB; at the peak: %d, %.0f KB; the night after: %d, %.0f KB (%.1fx before)",
		before.Conversations, kb(hBefore), top.Conversations, kb(hTop), after.Conversations, kb(hAfter), kb(hAfter)/kb(hBefore))
	if after.Conversations > before.Conversations*3/2 {
		t.Fatalf("the peak's conversations did not age out: %d remembered, %d the night before", after.Conversations, before.Conversations)
	}
	if kb(hAfter) > 2*kb(hBefore) {
		t.Errorf("the night after the peak the normalizer holds %.0f KB of live heap for %d conversations, %.1fx the %.0f KB it held for %d the night before (%.0f KB at the peak, %d)",
			kb(hAfter), after.Conversations, kb(hAfter)/kb(hBefore), kb(hBefore), before.Conversations, kb(hTop), top.Conversations)
	}
}
