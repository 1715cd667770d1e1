package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseGCLine(t *testing.T) {
	for _, tc := range []struct {
		line      string
		at, clock time.Duration
	}{
		{"gc 24 @14.637s 2%: 0.084+53+0.005 ms clock, 0.084+0.21/13/34+0.005 ms cpu, 82->82->44 MB, 97 MB goal, 11 MB stacks, 0 MB globals, 1 P", 14637 * time.Millisecond, 53089 * time.Microsecond},
		{"gc 3 @0.062s 7%: 0.031+5.4+0.004 ms clock, 0.031+1.7/0/0+0.004 ms cpu, 4->5->3 MB, 5 MB goal, 0 MB stacks, 0 MB globals, 1 P (forced)", 62 * time.Millisecond, 5435 * time.Microsecond},
	} {
		at, clock, ok := parseGCLine(tc.line)
		if !ok || at != tc.at || (clock-tc.clock).Abs() > time.Microsecond {
			t.Errorf("parseGCLine(%.30q…) = %v, %v, %v; want %v, %v", tc.line, at, clock, ok, tc.at, tc.clock)
		}
	}
	for _, line := range []string{"", "gc 5", "gc 5 @x.1s 3%: 0.1+2+0.01 ms clock,", "gc 5 @0.1s 3%: 0.1+two+0.01 ms clock,", "scvg: 0 MB released"} {
		if _, _, ok := parseGCLine(line); ok {
			t.Errorf("parseGCLine(%q) accepted", line)
		}
	}
}

// The runtime writes a gctrace line in pieces; a log line written between
// two of them still counts, and so does the cycle.
func TestScanLog_ALogLineInsideAGCLine(t *testing.T) {
	d := &daemon{started: make(chan startedLine, 1), pops: map[string]popLine{}, launched: time.Unix(1_800_000_000, 0)}
	pop := `{"level":"info","component":"resolver","conversation_id":"c1","outcome":"match","message":"pop"}`
	in := "gc 1 @0.010s 1%: 0.01+2.0+0.01 ms clock, 0.01+0/0/0+0.01 ms cpu, 4->4->2 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 1 P\n" +
		"gc 2 @1.500s 2%: 0.05+12" + pop + "\n" + "0+0.05 ms clock, 0.05+1/2/3+0.05 ms cpu, 9->9->5 MB, 10 MB goal, 0 MB stacks, 0 MB globals, 1 P\n"
	d.scanLog(strings.NewReader(in))
	if _, ok := d.pop("c1"); !ok {
		t.Error("the pop line inside the gctrace line was lost")
	}
	got := d.cycles()
	if len(got) != 2 {
		t.Fatalf("%d cycles, want 2: %+v", len(got), got)
	}
	if want := d.launched.Add(1500 * time.Millisecond); !got[1].Start.Equal(want) || (got[1].Clock-120100*time.Microsecond).Abs() > time.Microsecond {
		t.Errorf("second cycle %+v, want start %v and 120.1 ms", got[1], want)
	}
}

// The cache hits sent while a cycle ran are told apart from the others,
// and the cycles' share is of the phase, not of the daemon's life.
func TestGCShare(t *testing.T) {
	base := time.Unix(1_800_000_000, 0)
	p := newPhase("screenpop", 1000) // one send a ms for 1 s
	for i := range p.slots {
		s := &p.slots[i]
		t0 := base.Add(time.Duration(i) * time.Millisecond).UnixNano()
		lat := 1 * time.Millisecond
		if i >= 300 && i < 400 {
			lat = 20 * time.Millisecond // slow while the collector runs
		}
		s.t0.Store(t0)
		s.t1.Store(t0 + int64(lat))
		s.repeat = i%2 == 0
	}
	cycles := []gcCycle{
		{Start: base.Add(-time.Second), Clock: 100 * time.Millisecond},             // before the phase
		{Start: base.Add(300 * time.Millisecond), Clock: 99500 * time.Microsecond}, // sends 300..399
		{Start: base.Add(950 * time.Millisecond), Clock: 200 * time.Millisecond},   // runs past the last send
	}
	g := gcShare(p, cycles)
	if g == nil {
		t.Fatal("no GC figures")
	}
	if g.Cycles != 2 || math.Abs(g.MeanMS-149.75) > 0.01 || g.MaxMS != 200 {
		t.Errorf("cycles %d, mean %.2f ms, max %.1f ms; want 2, 149.75, 200", g.Cycles, g.MeanMS, g.MaxMS)
	}
	if want := (99.5 + 49) / 999.0; math.Abs(g.Share-want) > 1e-9 {
		t.Errorf("share %.4f, want %.4f (of the 999 ms from first to last send)", g.Share, want)
	}
	// Hits are the even sends: 50 of them in 300..399, 25 in 950..999.
	if g.HitsDuring.N != 75 || g.HitsOutside.N != 425 {
		t.Errorf("hits during %d, outside %d; want 75 and 425", g.HitsDuring.N, g.HitsOutside.N)
	}
	if g.HitsDuring.P99 < 19 || g.HitsOutside.P99 > 1.5 {
		t.Errorf("p99 during %.2f ms, outside %.2f ms; want the slow ones during", g.HitsDuring.P99, g.HitsOutside.P99)
	}
	if gcShare(p, cycles[:1]) != nil || gcShare(newPhase("empty", 3), cycles) != nil {
		t.Error("figures without a cycle in the phase, or without sends")
	}
}

func TestDaemonGODEBUG(t *testing.T) {
	for own, want := range map[string]string{
		"":                         "gctrace=1",
		"madvdontneed=1":           "madvdontneed=1,gctrace=1",
		"gctrace=0":                "gctrace=0",
		"gctrace=1,madvdontneed=1": "gctrace=1,madvdontneed=1",
	} {
		if got := daemonGODEBUG(own); got != want {
			t.Errorf("daemonGODEBUG(%q) = %q, want %q", own, got, want)
		}
	}
}
