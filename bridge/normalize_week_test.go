package bridge

import (
	"fmt"
	"testing"
	"time"
)

// TestNormalizer_StateBoundedOverAWeek drives a simulated week of traffic
// through a fake clock: a conversation a minute, every 50th losing its
// disconnect (a gap), and asserts the remembered state stays flat: finished
// conversations leave as tombstones after TombstoneTTL, unfinished ones
// after IdleTTL.
func TestNormalizer_StateBoundedOverAWeek(t *testing.T) {
	now := fixtureEpoch
	n := MustNormalizer(t, NormalizerConfig{Now: func() time.Time { return now }})
	frames := MustLoadFrames(t, fixturePath("snapshots", "inbound_call"))
	const (
		every = 2 * time.Minute
		week  = 7 * 24 * time.Hour
	)
	// Bound: tombstones live TombstoneTTL plus one sweep gap after their
	// last snapshot, unfinished ones IdleTTL plus a gap.
	tombstones := int((defaultTombstoneTTL + defaultTombstoneTTL/2) / every)
	idle := int((defaultIdleTTL+defaultTombstoneTTL/2)/every)/50 + 1
	bound := tombstones + idle + 2

	maxConvs, maxLegs, events := 0, 0, 0
	var afterDay1 NormalizerStatus
	start := now
	for i := 0; now.Sub(start) < week; i++ {
		id := fmt.Sprintf("c0c0c0c0-0000-4000-8000-%012d", 100000+i)
		conv := withConversation(frames, string(fxConv(1)), id)
		if i%50 == 0 {
			conv = conv[:3] // the disconnect was lost in a gap
		}
		for k, s := range conv {
			now = start.Add(time.Duration(i)*every + time.Duration(k)*5*time.Second)
			s.ReceivedAt = now
			events += len(n.Normalize(s))
		}
		st := n.Status()
		maxConvs, maxLegs = max(maxConvs, st.Conversations), max(maxLegs, st.Legs)
		if st.Conversations > bound {
			t.Fatalf("after %v: %d conversations remembered, bound %d", now.Sub(start), st.Conversations, bound)
		}
		if afterDay1 == (NormalizerStatus{}) && now.Sub(start) >= 24*time.Hour {
			afterDay1 = st
		}
	}
	end := n.Status()
	t.Logf("a week: %d conversations, %d events; state max %d conversations / %d legs (bound %d); after day 1 %+v, at the end %+v",
		int(week/every), events, maxConvs, maxLegs, bound, afterDay1, end)
	if end.Conversations > afterDay1.Conversations+5 {
		t.Errorf("state grew over the week: %+v after day 1, %+v at the end", afterDay1, end)
	}
	if maxLegs > bound {
		t.Errorf("max legs %d > bound %d", maxLegs, bound)
	}
	if want := int(week/every) * 3; events < want-int(week/every)/50*2 || events > want {
		t.Errorf("%d events for %d conversations", events, int(week/every))
	}
}
