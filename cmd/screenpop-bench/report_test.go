package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
