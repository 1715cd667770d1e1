package notifications

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

func TestSeenSet_RemembersAPairForTheHorizon(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	s := newSeenSet(seenHorizon, t0)
	at := t0.Add(3*time.Hour + 59*time.Minute) // the last moment of the first generation
	s.mark("conv-1", "agent-1", at, false)

	for _, d := range []time.Duration{0, time.Hour, seenHorizon - time.Second, seenHorizon} {
		got, _, ok := s.last("conv-1", "agent-1", at.Add(d))
		if !ok || !got.Equal(at) {
			t.Fatalf("%v after the snapshot: last = %v, %v; want %v, true", d, got, ok, at)
		}
	}
	if _, _, ok := s.last("conv-1", "agent-2", at); ok {
		t.Fatal("the same conversation on another agent's topic is remembered too")
	}
	if _, _, ok := s.last("conv-2", "agent-1", at); ok {
		t.Fatal("another conversation of the agent is remembered too")
	}
	// At most a third longer than the horizon, from the first generation's start.
	if _, _, ok := s.last("conv-1", "agent-1", t0.Add(seenHorizon*4/3)); ok {
		t.Fatalf("still remembered %v after its generation began", seenHorizon*4/3)
	}
	if n := s.len(); n != 0 {
		t.Fatalf("len = %d after every generation was dropped", n)
	}
}

func TestSeenSet_ALaterSnapshotWinsAndRenews(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	s := newSeenSet(seenHorizon, t0)
	s.mark("conv-1", "agent-1", t0, false)
	later := t0.Add(10 * time.Hour)
	s.mark("conv-1", "agent-1", later, false)

	got, _, ok := s.last("conv-1", "agent-1", later)
	if !ok || !got.Equal(later) {
		t.Fatalf("last = %v, %v; want the later snapshot %v", got, ok, later)
	}
	// The first snapshot alone would be forgotten by now; the second is not.
	if got, _, ok := s.last("conv-1", "agent-1", later.Add(seenHorizon)); !ok || !got.Equal(later) {
		t.Fatalf("a horizon after the later snapshot: last = %v, %v", got, ok)
	}
}

func TestSeenSet_ALongSilenceStartsAfresh(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	s := newSeenSet(seenHorizon, t0)
	s.mark("conv-1", "agent-1", t0, false)
	week := t0.Add(7 * 24 * time.Hour)
	s.mark("conv-2", "agent-1", week, false)

	if _, _, ok := s.last("conv-1", "agent-1", week); ok {
		t.Fatal("a pair from a week ago is still remembered")
	}
	if _, _, ok := s.last("conv-2", "agent-1", week.Add(seenHorizon)); !ok {
		t.Fatal("the pair seen after the silence is not remembered for the horizon")
	}
}

func TestSeenSet_RemembersWhetherTheAgentWasConnected(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	s := newSeenSet(seenHorizon, t0)
	s.mark("conv-1", "agent-1", t0, false) // alerting
	if _, connected, _ := s.last("conv-1", "agent-1", t0); connected {
		t.Fatal("connected after an alerting snapshot")
	}
	at := t0.Add(time.Second + 1) // an odd nanosecond: the flag's bit
	s.mark("conv-1", "agent-1", at, true)
	if got, connected, ok := s.last("conv-1", "agent-1", at); !ok || !connected || at.Sub(got) > time.Nanosecond {
		t.Fatalf("last = %v, %v, %v; want %v (within 1 ns), connected", got, connected, ok, at)
	}
	s.mark("conv-1", "agent-1", at.Add(time.Second), false) // transferred away
	if _, connected, _ := s.last("conv-1", "agent-1", at.Add(time.Second)); connected {
		t.Fatal("still connected after a snapshot without a connected leg")
	}
}

func TestAgentConnected(t *testing.T) {
	const a, b = "agent-a", "agent-b"
	body := func(parts string) string { return `{"id":"c1","participants":[` + parts + `]}` }
	for _, tt := range []struct {
		name string
		body string
		want bool
	}{
		{"alerting", body(`{"userId":"agent-a","calls":[{"state":"alerting"}]}`), false},
		{"connected call", body(`{"purpose":"customer","calls":[{"state":"connected"}]},{"userId":"agent-a","calls":[{"state":"connected"}]}`), true},
		{"connected chat", body(`{"userId":"agent-a","attributes":{"x":"connected"},"chats":[{"state":"connected"}]}`), true},
		{"old leg ended, new leg connected", body(`{"userId":"agent-a","calls":[{"state":"disconnected"}]},{"userId":"agent-a","messages":[{"state":"connected"}]}`), true},
		{"transferred away", body(`{"userId":"agent-a","calls":[{"state":"disconnected"}]},{"userId":"agent-b","calls":[{"state":"connected"}]}`), false},
		{"another agent connected", body(`{"userId":"agent-b","emails":[{"state":"connected"}]}`), false},
		{"no participants", `{"id":"c1"}`, false},
	} {
		if got, _, _ := agentLegs(tt.body, a, false); got != tt.want {
			t.Errorf("%s: agentLegs connected = %v, want %v", tt.name, got, tt.want)
		}
	}
	if c, _, _ := agentLegs(body(`{"userId":"agent-b","callbacks":[{"state":"connected"}]}`), b, false); !c {
		t.Error("agent b's connected callback not seen")
	}
}

// BenchmarkSeenSet_Mark marks a new pair per iteration, as a busy contact
// centre does, and reports the set's heap per pair.
func BenchmarkSeenSet_Mark(b *testing.B) {
	convs := make([]string, 1<<16)
	for i := range convs {
		convs[i] = fmt.Sprintf("%08x-5e1c-4f6a-9d3b-%012x", i, i*7919)
	}
	agents := make([]string, 1<<8)
	for i := range agents {
		agents[i] = fmt.Sprintf("6f1f3e1c-2b7a-4c55-9a0e-%012x", i)
	}
	now := time.Now()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := newSeenSet(seenHorizon, now)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.mark(convs[i&(len(convs)-1)], agents[(i>>16)&(len(agents)-1)], now, i&1 == 0)
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	if n := s.len(); n > 0 && after.HeapAlloc > before.HeapAlloc {
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "heap-B/pair")
	}
	runtime.KeepAlive(s)
}

func TestAgentLegOpen(t *testing.T) {
	const a = "agent-a"
	body := func(parts string) string { return `{"id":"c1","participants":[` + parts + `]}` }
	for _, tt := range []struct {
		name string
		body string
		want bool
	}{
		{"alerting", body(`{"userId":"agent-a","calls":[{"state":"alerting"}]}`), true},
		{"dialing", body(`{"userId":"agent-a","calls":[{"state":"dialing"}]}`), true},
		{"connected", body(`{"userId":"agent-a","calls":[{"state":"connected"}]}`), true},
		{"scheduled callback", body(`{"userId":"agent-a","callbacks":[{"state":"scheduled"}]}`), true},
		{"disconnected", body(`{"userId":"agent-a","calls":[{"state":"disconnected"}]}`), false},
		{"terminated", body(`{"userId":"agent-a","chats":[{"state":"terminated"}]}`), false},
		{"transferred away", body(`{"userId":"agent-a","calls":[{"state":"disconnected"}]},{"userId":"agent-b","calls":[{"state":"connected"}]}`), false},
		{"transferred back", body(`{"userId":"agent-a","calls":[{"state":"disconnected"}]},{"userId":"agent-a","calls":[{"state":"alerting"}]}`), true},
		{"not in it", body(`{"userId":"agent-b","calls":[{"state":"connected"}]}`), false},
		{"no participants", `{"id":"c1"}`, false},
	} {
		for _, ring := range []bool{false, true} {
			if _, _, got := agentLegs(tt.body, a, ring); got != tt.want {
				t.Errorf("%s (ring %v): agentLegs open = %v, want %v", tt.name, ring, got, tt.want)
			}
		}
	}
}

// TestAgentLegs_NoLegsOfTheNormalizers: agentLegs must count as the
// agent's legs only what the normalizer does (docs/events.md, "Agent
// leg"): a supervisor's monitor, coach or barge participant "is no leg",
// "nor is a participant whose purpose is voicemail (the agent's own
// voicemail taking a message of a call the agent did not answer), whatever
// user id it carries". Counted as connected, such a participant makes the
// reconciliation take the agent for already connected to the conversation
// and skip a leg of theirs answered during a gap (e43c43d, for the
// supervisor's).
func TestAgentLegs_NoLegsOfTheNormalizers(t *testing.T) {
	const a = "agent-a"
	body := func(parts string) string { return `{"id":"c1","participants":[` + parts + `]}` }
	for _, tt := range []struct{ name, body string }{
		{"monitoring", body(`{"purpose":"customer","calls":[{"state":"connected"}]},{"id":"p2","userId":"agent-b","calls":[{"state":"connected"}]},{"id":"p3","userId":"agent-a","monitoredParticipantId":"p2","calls":[{"state":"connected"}]}`)},
		{"own voicemail", body(`{"purpose":"customer","calls":[{"state":"connected"}]},{"id":"p2","userId":"agent-a","purpose":"agent","calls":[{"state":"disconnected"}]},{"id":"p3","userId":"agent-a","purpose":"voicemail","calls":[{"state":"connected"}]}`)},
		{"own voicemail, Voicemail", body(`{"purpose":"customer","calls":[{"state":"connected"}]},{"id":"p3","userId":"agent-a","purpose":"Voicemail","calls":[{"state":"connected"}]}`)},
	} {
		for _, ring := range []bool{false, true} {
			if connected, ringing, open := agentLegs(tt.body, a, ring); connected || ringing || open {
				t.Errorf("%s (ring %v): agentLegs = connected %v, ringing %v, open %v; want no leg", tt.name, ring, connected, ringing, open)
			}
		}
	}
}

// conversations_remembered (docs/genesys.md, Operations) is every pair
// held: those of the older generations too, not only the one written.
func TestSeenSet_LenCountsThePairsOfEveryGeneration(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	s := newSeenSet(seenHorizon, t0)
	s.mark("conv-1", "agent-1", t0, false)
	s.mark("conv-2", "agent-1", t0.Add(seenHorizon/3+time.Minute), true) // the next generation
	s.mark("conv-3", "agent-1", t0.Add(2*seenHorizon/3+time.Minute), true)
	if n := s.len(); n != 3 {
		t.Fatalf("len = %d with three pairs remembered over three generations, want 3", n)
	}
}
