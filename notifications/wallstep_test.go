package notifications

import (
	"testing"
	"time"

	"github.com/screenpop/screenpop/internal/testenv"
)

// TestSeenSet_AWallClockStepBackDoesNotMakeAnOldSnapshotNew: reconciliation
// skips a (conversation, agent) last seen at or after the moment its
// shard's socket came back (reconcile: !last.Before(since)), as one the
// socket already told about. Both moments are this process's time.Now();
// but the set keeps the snapshot's time as UnixNano, the wall clock alone,
// and since keeps its monotonic reading: once NTP steps the wall clock
// back (a host that ran minutes fast), a call seen ringing before a gap
// looks seen after the socket came back. Offered to the agent again
// during the gap (it rang out and the queue offered it again, or it was
// transferred back), or answered during it with SCREENPOP_POP_ON=connected,
// it is not fetched, and does not pop.
func TestSeenSet_AWallClockStepBackDoesNotMakeAnOldSnapshotNew(t *testing.T) {
	s := newSeenSet(seenHorizon, time.Now())
	seenAt := time.Now() // the call seen ringing, before the gap
	s.mark("conv-1", "agent-1", seenAt, false)
	// NTP steps the clock back 2 minutes; 10 s after the snapshot the
	// socket drops, and comes back 5 s later.
	since := testenv.StepWall(t, seenAt.Add(15*time.Second), -2*time.Minute)
	last, _, ok := s.last("conv-1", "agent-1", since)
	if !ok {
		t.Fatal("the pair is not remembered")
	}
	if !last.Before(since) {
		t.Fatalf("a snapshot taken 15 s before the socket came back reads as seen after it (last %v, since %v, wall clock stepped back 2 min): reconciliation skips the conversation, and a ring during the gap does not pop",
			last.Format(time.RFC3339Nano), since.Round(0).Format(time.RFC3339Nano))
	}
}
