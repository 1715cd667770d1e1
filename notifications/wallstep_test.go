package notifications

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge"
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

// TestShard_HeartbeatAgeSurvivesAWallClockStepForward: /status →
// heartbeatAgeMs and screenpop_notifications_heartbeat_age_seconds
// ("above 60: a socket that stopped delivering", alert) are how long ago
// the channel's last frame was read. Kept as wall-clock UnixNano and read
// with time.Since, a step of the wall clock forward by 5 minutes (NTP on a
// host that ran slow, a VM resumed) made a channel that read a frame a
// second ago look 5 minutes silent, and fired the alert; a step back made
// the age negative.
func TestShard_HeartbeatAgeSurvivesAWallClockStepForward(t *testing.T) {
	c, err := New(Config{APIURL: "http://127.0.0.1:1", ClientID: "id", ClientSecret: "secret", Registerer: prometheus.NewRegistry()}, zerolog.Nop(), make(chan bridge.Snapshot, 1))
	if err != nil {
		t.Fatal(err)
	}
	sh := newShard(c, 0)
	for _, step := range []time.Duration{5 * time.Minute, -5 * time.Minute} {
		s := &session{sh: sh, chID: "ch-1", ref: channelRef("ch-1"), opened: time.Now(), done: make(chan struct{})}
		// A frame read just now, before the clock is stepped: the same
		// moment as the clock reads it after a step by step is the moment
		// less step on the stepped wall clock.
		s.frameRead(testenv.StepWall(t, time.Now(), -step))
		sh.mu.Lock()
		sh.cur, sh.connected = s, true
		sh.mu.Unlock()
		if age := sh.status().HeartbeatAgeMs; age < 0 || age > 2000 {
			t.Errorf("wall clock stepped %v after the last frame, read just now: heartbeatAgeMs = %d, want under 2 s", step, age)
		}
	}
}
