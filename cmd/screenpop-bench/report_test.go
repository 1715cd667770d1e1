package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// A pop that reached another agent's socket is a fault of its own: the
// table on stdout and pops.csv show it as they show lost and duplicated
// pops, not only results.json. A run whose daemon sent every 500th pop to
// the wrong agent printed "lost 4 … dup 0" and a target of 12 "pops lost +
// duplicated + misrouted" with nothing saying that any pop was misrouted,
// and its pops.csv could not tell a misrouted pop from a lost one.
func TestReport_ShowsMisrouted(t *testing.T) {
	p := newPhase("screenpop", 3)
	now := time.Unix(1_800_000_000, 0).UnixNano()
	for i := range p.slots {
		s := &p.slots[i]
		s.agent.Store(int32(i))
		s.queued.Store(now)
		s.t0.Store(now)
	}
	p.slots[0].t1.Store(now + 1e6)
	p.slots[0].n.Store(1)
	p.slots[1].t1.Store(now + 1e6)
	p.slots[1].n.Store(2)     // duplicated
	p.slots[2].wrong.Store(1) // reached another agent only: misrouted (and lost to its own)
	pr := phaseResult(p)
	if pr.Lost != 1 || pr.Duplicated != 1 || pr.Misrouted != 1 {
		t.Fatalf("lost %d, duplicated %d, misrouted %d; want 1, 1, 1", pr.Lost, pr.Duplicated, pr.Misrouted)
	}
	r := &Result{Phases: map[string]*PhaseResult{"screenpop": pr}, Lost: pr.Lost, Duplicated: pr.Duplicated, Misrouted: pr.Misrouted}
	r.targets(quickOptions(defaultOptions()))
	var out strings.Builder
	r.print(&out)

	// The table's columns by name, for the screenpop row.
	var header, row []string
	for _, l := range strings.Split(out.String(), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) > 0 && f[0] == "path":
			header = f[1:]
		case strings.HasPrefix(strings.TrimSpace(l), "screenpop end to end"):
			row = f[4:]
		}
	}
	col := map[string]string{}
	for i, h := range header {
		if i < len(row) {
			col[h] = row[i]
		}
	}
	if col["lost"] != "1" || col["dup"] != "1" {
		t.Fatalf("table columns %v; want lost 1 and dup 1:\n%s", col, out.String())
	}
	if col["misrouted"] != "1" {
		t.Errorf("the table on stdout shows no misrouted pop (columns %v):\n%s", col, out.String())
	}

	path := filepath.Join(t.TempDir(), "pops.csv")
	if err := writeSamples(path, map[byte]*phase{phaseMain: p}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	names := strings.Split(lines[0], ",")
	k := -1
	for i, n := range names {
		if n == "misrouted" {
			k = i
		}
	}
	if k < 0 {
		t.Fatalf("pops.csv has no misrouted column: %s", lines[0])
	}
	for i, l := range lines[1:] {
		want := "0"
		if i == 2 {
			want = "1"
		}
		if got := strings.Split(l, ",")[k]; got != want {
			t.Errorf("pops.csv row %d: misrouted %s, want %s", i, got, want)
		}
	}
}

// The per-second timeline is by the second each pop was sent, every sent
// pop counted: a second whose pops were all lost says so, with no latency,
// rather than showing the worst second as 0 ms.
func TestTimeline_ASecondOfLostPopsHasNoLatency(t *testing.T) {
	p := newPhase("screenpop", 300)
	base := time.Unix(1_800_000_000, 0).UnixNano()
	for i := range p.slots {
		s := &p.slots[i]
		t0 := base + int64(i)*int64(10*time.Millisecond) // 100 a second for 3 s
		s.queued.Store(t0)
		s.t0.Store(t0)
		if i >= 100 && i < 200 {
			continue // the second second: all lost
		}
		s.t1.Store(t0 + int64(5*time.Millisecond))
	}
	tl := timeline(p)
	if len(tl) != 3 {
		t.Fatalf("timeline of %d seconds, want 3: %+v", len(tl), tl)
	}
	if s := tl[1]; s.N != 0 || s.Lost != 100 || s.P50 != nil || s.P99 != nil || s.Max != nil {
		t.Errorf("second 1 (all lost): %+v, want n 0, lost 100 and no latency", s)
	}
	for _, k := range []int{0, 2} {
		if s := tl[k]; s.N != 100 || s.Lost != 0 || s.P99 == nil || *s.P99 != 5 {
			t.Errorf("second %d: %+v, want 100 arrived in 5 ms", k, s)
		}
	}
}

// The table's sub-rows for cache hits and misses give the pops of that
// kind sent and lost, not only those that arrived under "sent": lost
// cache hits were hidden.
func TestReport_CacheHitRowsCountTheirLost(t *testing.T) {
	m := &PhaseResult{Sent: 100, Received: 90, Lost: 10, CacheHitsSent: 50,
		OverheadHits: &Dist{N: 40, P50: 1, P90: 1, P99: 2, Max: 3}, EndToEndMisses: &Dist{N: 50, P50: 6, P90: 7, P99: 8, Max: 9}}
	r := &Result{Phases: map[string]*PhaseResult{"screenpop": m}, Lost: 10}
	var out strings.Builder
	r.print(&out)
	for _, want := range [][]string{
		{"overhead:", "cache", "hits", "(e2e)", "50", "40", "10"},
		{"cache", "misses", "(e2e)", "50", "50", "0"},
	} {
		found := false
		for _, l := range strings.Split(out.String(), "\n") {
			if f := strings.Fields(l); len(f) >= len(want) && strings.Join(f[:len(want)], " ") == strings.Join(want, " ") {
				found = true
			}
		}
		if !found {
			t.Errorf("no row %q (name, sent, recv, lost) in:\n%s", strings.Join(want, " "), out.String())
		}
	}
}

// The warm-up's hang-ups come -hangup after its calls; settle, called
// before the screenpop phase, returns only once every one queued is sent,
// so that none lands in that phase's CPU and latency.
func TestHangups_SettleWaitsForEveryHangupQueued(t *testing.T) {
	gen := notificationstest.New(notificationstest.Config{})
	h := startHangups(16)
	defer h.stop()
	start := time.Now()
	for i := range 3 {
		h.add(gen, "v2.users.x.conversations", []byte(`{}`), time.Duration(100*(i+1))*time.Millisecond)
	}
	h.settle(context.Background())
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("settle returned %v after queueing hang-ups due in 300 ms", took.Round(time.Millisecond))
	}
	if n := h.pending.Load(); n != 0 {
		t.Errorf("%d hang-ups pending after settle", n)
	}
}
