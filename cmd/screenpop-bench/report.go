package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is one run, as written to results.json.
type Result struct {
	Started        time.Time     `json:"started"`
	Machine        Machine       `json:"machine"`
	Options        ResultOptions `json:"options"`
	ConnectSeconds float64       `json:"connect_seconds"`
	SendSeconds    float64       `json:"send_seconds"`
	Memory         MemoryResult  `json:"memory"`
	// TimerLateness is how late a 5 ms timer fired in the bench process:
	// the machine's scheduling noise, idle and under the load.
	TimerLateness map[string]Dist `json:"timer_lateness"`
	// ToolGCDuringPhases counts the tool's own GC cycles during the
	// measured phases, where its collector is off (0 unless its heap
	// reached toolMemoryLimit).
	ToolGCDuringPhases uint32 `json:"tool_gc_during_phases"`
	// HeartbeatsPer100ms is how the daemon's heartbeat frames arrived at
	// the clients during the screenpop phase: bunched timers show as a
	// Max far above the Mean.
	HeartbeatsPer100ms HeartbeatSpread         `json:"heartbeats_per_100ms"`
	Phases             map[string]*PhaseResult `json:"phases"`
	// Lost, Duplicated and Misrouted add up every phase.
	Lost       int `json:"lost"`
	Duplicated int `json:"duplicated"`
	Misrouted  int `json:"misrouted"`

	GenesysChannels    int            `json:"genesys_channels"`
	GenesysRequests    map[string]int `json:"genesys_requests"` // the daemon's Genesys API calls, by method and path
	ClientsClosedEarly int64          `json:"clients_closed_early"`
	// UnexpectedFrames are frames the clients read that are neither a
	// heartbeat nor a pop of a call the tool made (an error frame, a pop
	// of a conversation no phase sent): counted in no phase.
	UnexpectedFrames    int64    `json:"unexpected_frames"`
	DaemonWarnings      int      `json:"daemon_warnings"`
	DaemonErrors        int      `json:"daemon_errors"`
	DaemonFirstProblems []string `json:"daemon_first_problems,omitempty"`

	Ratios  map[string]float64 `json:"ratios"`
	Targets []Target           `json:"targets"`
}

// Machine is where the run happened.
type Machine struct {
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPUModel   string `json:"cpu_model"`
	GoVersion  string `json:"go_version"`
	OS         string `json:"os"`
	// Pin is -pin's split of the CPUs between the daemon and the tool.
	Pin *cpuSplit `json:"pin,omitempty"`
}

// ResultOptions are the run's parameters.
type ResultOptions struct {
	Agents      int     `json:"agents"`
	Rate        int     `json:"rate"`
	DurationS   float64 `json:"duration_s"`
	RefPhaseS   float64 `json:"reference_phase_s"`
	DVLatencyMS float64 `json:"dataverse_latency_ms"`
	HitRatio    float64 `json:"repeat_caller_ratio"`
	HangupS     float64 `json:"hangup_s"`
	Seed        int     `json:"seeded_records"`
	Markers     int     `json:"preloaded_markers"`
	Quick       bool    `json:"quick"`
	TLS         bool    `json:"tls"` // the agent listener terminated TLS
}

func resultOptions(o Options) ResultOptions {
	return ResultOptions{Agents: o.Agents, Rate: o.Rate, DurationS: o.Duration.Seconds(), RefPhaseS: o.RefPhase.Seconds(),
		DVLatencyMS: ms(o.DVLatency), HitRatio: o.HitRatio, HangupS: o.Hangup.Seconds(), Seed: o.Seed, Markers: o.Markers, Quick: o.Quick, TLS: o.TLS}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// MemoryResult is the daemon's memory around connecting the agents.
type MemoryResult struct {
	RSSBeforeKB      int64   `json:"rss_before_kb"`
	RSSAfterKB       int64   `json:"rss_after_kb"`
	RSSPerConnKB     float64 `json:"rss_per_idle_connection_kb"`
	HeapBeforeKB     float64 `json:"heap_inuse_before_kb"`
	HeapAfterKB      float64 `json:"heap_inuse_after_kb"`
	HeapPerConnKB    float64 `json:"heap_per_idle_connection_kb"`
	StackBeforeKB    float64 `json:"stack_inuse_before_kb"`
	StackAfterKB     float64 `json:"stack_inuse_after_kb"`
	GoroutinesBefore float64 `json:"goroutines_before"`
	GoroutinesAfter  float64 `json:"goroutines_after"`
	GoroutinesPer    float64 `json:"goroutines_per_connection"`
	RSSEndKB         int64   `json:"rss_end_kb"`
	Threads          int     `json:"threads_end"`
}

func memoryResult(n int, before, after procStat, mb, ma metricsText) MemoryResult {
	m := MemoryResult{RSSBeforeKB: before.RSSKB, RSSAfterKB: after.RSSKB}
	m.RSSPerConnKB = float64(after.RSSKB-before.RSSKB) / float64(n)
	m.HeapBeforeKB = mb.sum("go_memstats_heap_inuse_bytes", "") / 1024
	m.HeapAfterKB = ma.sum("go_memstats_heap_inuse_bytes", "") / 1024
	m.HeapPerConnKB = (m.HeapAfterKB - m.HeapBeforeKB) / float64(n)
	m.StackBeforeKB = mb.sum("go_memstats_stack_inuse_bytes", "") / 1024
	m.StackAfterKB = ma.sum("go_memstats_stack_inuse_bytes", "") / 1024
	m.GoroutinesBefore = mb.sum("go_goroutines", "")
	m.GoroutinesAfter = ma.sum("go_goroutines", "")
	m.GoroutinesPer = (m.GoroutinesAfter - m.GoroutinesBefore) / float64(n)
	return m
}

// Dist is a latency distribution in milliseconds.
type Dist struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

func dist(v []float64) Dist {
	if len(v) == 0 {
		return Dist{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return round3(s[max(0, min(i, len(s)-1))])
	}
	var sum float64
	for _, x := range s {
		sum += x
	}
	return Dist{N: len(s), P50: q(.50), P90: q(.90), P99: q(.99), Max: round3(s[len(s)-1]), Mean: round3(sum / float64(len(s)))}
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// percentileOfSent is the p quantile (nearest rank, as dist) of the
// latencies of sent pops, of which only those in v arrived: the others
// count as slower than any, so it is +Inf when they reach the rank.
func percentileOfSent(v []float64, sent int, p float64) float64 {
	sent = max(sent, len(v))
	i := int(math.Ceil(p*float64(sent))) - 1
	if sent == 0 || i >= len(v) {
		return math.Inf(1)
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return round3(s[max(0, i)])
}

// PhaseResult is one phase's figures.
type PhaseResult struct {
	Sent       int  `json:"sent"`
	Received   int  `json:"received"`
	Lost       int  `json:"lost"`
	Duplicated int  `json:"duplicated"`
	Misrouted  int  `json:"misrouted"`
	EndToEnd   Dist `json:"end_to_end"`
	// EmulatorQueue is how long the Genesys frames waited in the
	// emulator's socket queue before being written (not part of EndToEnd).
	EmulatorQueue *Dist `json:"emulator_queue,omitempty"`

	// The screenpop phase only.
	CacheHitsSent   int             `json:"cache_hits_sent,omitempty"`     // repeat callers' pops sent
	OverheadHits    *Dist           `json:"overhead_cache_hits,omitempty"` // e2e of repeat callers (lookup from cache, ~µs)
	OverheadAll     *Dist           `json:"overhead_all,omitempty"`        // e2e − lookup_ms of the daemon's pop line
	EndToEndMisses  *Dist           `json:"end_to_end_cache_misses,omitempty"`
	Stages          map[string]Dist `json:"daemon_stages_ms,omitempty"` // from the pop log lines (whole ms)
	Outcomes        map[string]int  `json:"outcomes,omitempty"`
	PopLinesMissing int             `json:"pop_lines_missing,omitempty"`

	// Timeline is the end-to-end latency by second of sending.
	Timeline []Second `json:"timeline,omitempty"`
	// Windows is the p99 of each 10 s window of the phase: how much the
	// run's own p99 moves within one run on a noisy machine.
	Windows *WindowP99 `json:"p99_by_10s_window,omitempty"`
	// GC is the daemon's GC cycles during the phase and the cache hits
	// sent during one.
	GC *GCResult `json:"daemon_gc,omitempty"`

	CPUSecondsPer1000        float64 `json:"cpu_seconds_per_1000_pops,omitempty"`
	DataverseRequestsPerPop  float64 `json:"dataverse_requests_per_pop"`
	DataverseRequestsPerMiss float64 `json:"dataverse_requests_per_cache_miss,omitempty"`
	CacheHitRatio            float64 `json:"cache_hit_ratio,omitempty"` // from the daemon's lookup metrics

	e2e []float64
	// The repeat callers' end to end: the overhead target's p99 is of
	// those sent (CacheHitsSent; see percentileOfSent).
	hits []float64
	// The overhead of the pops that arrived with a pop line: the all-pops
	// overhead target's p99 is of those sent too.
	all []float64
}

func phaseResult(p *phase) *PhaseResult {
	r := &PhaseResult{}
	var queue []float64
	for i := range p.slots {
		s := &p.slots[i]
		if s.queued.Load() == 0 {
			continue // never sent
		}
		r.Sent++
		n := int(s.n.Load())
		r.Misrouted += int(s.wrong.Load())
		if n > 1 {
			r.Duplicated += n - 1
		}
		t0, t1 := s.t0.Load(), s.t1.Load()
		if t0 != 0 {
			queue = append(queue, float64(t0-s.queued.Load())/1e6)
		}
		if t0 != 0 && t1 != 0 {
			r.Received++
			r.e2e = append(r.e2e, float64(t1-t0)/1e6)
		} else {
			r.Lost++
		}
	}
	r.EndToEnd = dist(r.e2e)
	// Pops published straight to NATS (the floor) have no emulator queue:
	// their figures are all zero and left out.
	if q := dist(queue); q.P99 > 0 || q.Max > 0 {
		r.EmulatorQueue = &q
	}
	return r
}

// addDaemonFigures joins the screenpop phase with the daemon's pop lines.
func addDaemonFigures(r *PhaseResult, p *phase, d *daemon) {
	var hits, misses, all []float64
	stages := map[string][]float64{}
	r.Outcomes = map[string]int{}
	for i := range p.slots {
		s := &p.slots[i]
		if s.repeat && s.queued.Load() != 0 {
			r.CacheHitsSent++
		}
		t0, t1 := s.t0.Load(), s.t1.Load()
		if t0 == 0 || t1 == 0 {
			continue
		}
		e2e := float64(t1-t0) / 1e6
		if s.repeat {
			hits = append(hits, e2e)
		} else {
			misses = append(misses, e2e)
		}
		pl, ok := d.pop(convID(phaseMain, i))
		if !ok {
			r.PopLinesMissing++
			continue
		}
		r.Outcomes[pl.Outcome]++
		all = append(all, e2e-float64(pl.LookupMS))
		stages["queue"] = append(stages["queue"], float64(pl.QueueMS))
		stages["lookup"] = append(stages["lookup"], float64(pl.LookupMS))
		stages["mark"] = append(stages["mark"], float64(pl.MarkMS))
		stages["publish"] = append(stages["publish"], float64(pl.PublishMS))
		stages["total"] = append(stages["total"], float64(pl.TotalMS))
	}
	r.hits, r.all = hits, all
	if len(hits) > 0 {
		h := dist(hits)
		r.OverheadHits = &h
	}
	if len(misses) > 0 {
		m := dist(misses)
		r.EndToEndMisses = &m
	}
	if len(all) > 0 {
		a := dist(all)
		r.OverheadAll = &a
	}
	r.Timeline = timeline(p)
	r.Windows = windowP99(p, 10*time.Second)
	r.GC = gcShare(p, d.cycles())
	r.Stages = map[string]Dist{}
	for k, v := range stages {
		r.Stages[k] = dist(v)
	}
}

// HeartbeatSpread is heartbeat frames received per 100 ms.
type HeartbeatSpread struct {
	Mean float64 `json:"mean"`
	Max  int     `json:"max"`
}

// Second is one second of a phase, by the time its pops were sent: N
// arrived, Lost did not; a second of which none arrived has no latency
// (its fields left out), not 0 ms.
type Second struct {
	At   int      `json:"s"`
	N    int      `json:"n"`
	Lost int      `json:"lost,omitempty"`
	P50  *float64 `json:"p50_ms,omitempty"`
	P99  *float64 `json:"p99_ms,omitempty"`
	Max  *float64 `json:"max_ms,omitempty"`
}

func timeline(p *phase) []Second {
	var first int64
	for i := range p.slots {
		if q := p.slots[i].queued.Load(); q != 0 && (first == 0 || q < first) {
			first = q
		}
	}
	if first == 0 {
		return nil
	}
	by := map[int][]float64{}
	lost := map[int]int{}
	last := 0
	for i := range p.slots {
		s := &p.slots[i]
		q := s.queued.Load()
		if q == 0 {
			continue // never sent
		}
		k := int((q - first) / 1e9)
		last = max(last, k)
		if t0, t1 := s.t0.Load(), s.t1.Load(); t0 != 0 && t1 != 0 {
			by[k] = append(by[k], float64(t1-t0)/1e6)
		} else {
			lost[k]++
		}
	}
	out := make([]Second, 0, last+1)
	for k := 0; k <= last; k++ {
		sec := Second{At: k, N: len(by[k]), Lost: lost[k]}
		if sec.N > 0 {
			d := dist(by[k])
			sec.P50, sec.P99, sec.Max = &d.P50, &d.P99, &d.Max
		}
		out = append(out, sec)
	}
	return out
}

// WindowP99 is the p99 of each window of a phase, in ms, in order.
type WindowP99 struct {
	EndToEnd  []float64 `json:"end_to_end"`
	CacheHits []float64 `json:"overhead_cache_hits"`
}

// windowP99 splits the phase by time of sending into windows of w (a last
// window shorter than half of w joins the one before) and returns each one's
// p99, for all pops and for the repeat callers' (cache hits), leaving out
// the windows in which none of them arrived.
func windowP99(p *phase, w time.Duration) *WindowP99 {
	var first, last int64
	for i := range p.slots {
		if t0 := p.slots[i].t0.Load(); t0 != 0 && p.slots[i].t1.Load() != 0 {
			if first == 0 || t0 < first {
				first = t0
			}
			last = max(last, t0)
		}
	}
	if first == 0 {
		return nil
	}
	n := int((last-first)/int64(w)) + 1
	if n > 1 && time.Duration((last-first)%int64(w)) < w/2 {
		n--
	}
	all, hits := make([][]float64, n), make([][]float64, n)
	for i := range p.slots {
		s := &p.slots[i]
		t0, t1 := s.t0.Load(), s.t1.Load()
		if t0 == 0 || t1 == 0 {
			continue
		}
		k := min(int((t0-first)/int64(w)), n-1)
		e2e := float64(t1-t0) / 1e6
		all[k] = append(all[k], e2e)
		if s.repeat {
			hits[k] = append(hits[k], e2e)
		}
	}
	// A window without a pop (every one lost, or no repeat caller sent)
	// has no p99: it is left out, not shown as 0 ms.
	out := &WindowP99{}
	for k := range n {
		if len(all[k]) > 0 {
			out.EndToEnd = append(out.EndToEnd, dist(all[k]).P99)
		}
		if len(hits[k]) > 0 {
			out.CacheHits = append(out.CacheHits, dist(hits[k]).P99)
		}
	}
	return out
}

// GCResult is the daemon's GC cycles during a phase, from its gctrace
// lines (placed by the daemon's launch time, so within a few ms), and the
// cache hits sent while one ran against the others: the collector's share
// of the tail.
type GCResult struct {
	Cycles int     `json:"cycles"`
	MeanMS float64 `json:"mean_ms"`
	MaxMS  float64 `json:"max_ms"`
	// Share is the part of the phase (first to last send) inside a cycle.
	Share       float64 `json:"share"`
	HitsDuring  Dist    `json:"cache_hits_during"`
	HitsOutside Dist    `json:"cache_hits_outside"`
}

// gcShare joins the phase's cache hits with the cycles that overlap it; nil
// without either (a daemon run with gctrace=0 has no cycles).
func gcShare(p *phase, cycles []gcCycle) *GCResult {
	var first, last int64
	for i := range p.slots {
		if t0 := p.slots[i].t0.Load(); t0 != 0 {
			if first == 0 || t0 < first {
				first = t0
			}
			last = max(last, t0)
		}
	}
	var in []gcCycle
	for _, c := range cycles {
		if a, b := c.Start.UnixNano(), c.Start.Add(c.Clock).UnixNano(); b > first && a < last {
			in = append(in, c)
		}
	}
	if first == 0 || len(in) == 0 {
		return nil
	}
	r := &GCResult{Cycles: len(in)}
	var inside int64
	for _, c := range in {
		ms := float64(c.Clock) / 1e6
		r.MeanMS += ms / float64(len(in))
		r.MaxMS = max(r.MaxMS, ms)
		inside += min(c.Start.Add(c.Clock).UnixNano(), last) - max(c.Start.UnixNano(), first)
	}
	if last > first {
		r.Share = float64(inside) / float64(last-first)
	}
	var during, outside []float64
	for i := range p.slots {
		s := &p.slots[i]
		t0, t1 := s.t0.Load(), s.t1.Load()
		if !s.repeat || t0 == 0 || t1 == 0 {
			continue
		}
		e2e := float64(t1-t0) / 1e6
		_, hit := slices.BinarySearchFunc(in, t0, func(c gcCycle, t int64) int {
			switch {
			case c.Start.Add(c.Clock).UnixNano() < t:
				return -1
			case c.Start.UnixNano() > t:
				return 1
			}
			return 0
		})
		if hit {
			during = append(during, e2e)
		} else {
			outside = append(outside, e2e)
		}
	}
	r.HitsDuring, r.HitsOutside = dist(during), dist(outside)
	return r
}

// spread formats a list of figures as "min–max (median m) over n".
func spread(xs []float64) string {
	if len(xs) == 0 {
		return "none"
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + med) / 2
	}
	return fmt.Sprintf("%.1f–%.1f ms (median %.1f) over %d", s[0], s[len(s)-1], med, len(s))
}

// Target is one of the targets, checked.
type Target struct {
	Name     string  `json:"name"`
	Want     string  `json:"want"`
	Measured float64 `json:"measured"`
	Unit     string  `json:"unit"`
	Pass     bool    `json:"pass"`
	Note     string  `json:"note,omitempty"`
}

func (r *Result) targets(o Options) {
	full := o.Agents >= 10000 && o.Rate >= 500 && o.Duration >= 60*time.Second
	scale := ""
	if !full {
		scale = "smaller than the target run (10,000 agents, 500/s, 60 s)"
	}
	m := r.Phases["screenpop"]
	add := func(name, want string, v float64, unit string, pass bool, note string) {
		r.Targets = append(r.Targets, Target{Name: name, Want: want, Measured: round3(v), Unit: unit, Pass: pass, Note: note})
	}
	add("pops lost + duplicated + misrouted (all phases)", "0", float64(r.Lost+r.Duplicated+r.Misrouted), "pops", r.Lost+r.Duplicated+r.Misrouted == 0, scale)
	if m.OverheadHits != nil {
		add("pipeline overhead p99, cache hits (e2e, lookup ~µs)", "≤ 3", m.OverheadHits.P99, "ms", percentileOfSent(m.hits, m.CacheHitsSent, .99) <= 3, scale)
	}
	if m.OverheadAll != nil {
		add("pipeline overhead p99, all pops (e2e − lookup_ms)", "≤ 3", m.OverheadAll.P99, "ms", percentileOfSent(m.all, m.Sent-m.PopLinesMissing, .99) <= 3, "lookup_ms is whole ms (floored): overstates the overhead by < 1 ms")
	}
	note := scale
	if o.DVLatency != 5*time.Millisecond || o.HitRatio != 0.5 {
		note = strings.TrimPrefix(note+"; target is for a 5 ms Dataverse and 50% hits", "; ")
	}
	// An empty distribution's zeros pass nothing.
	got := m.EndToEnd.N > 0
	// A lost pop is slower than any bound: the p99 is of the pops sent.
	e2eNote := note
	if lost := m.Sent - m.Received; lost > 0 {
		e2eNote = strings.TrimPrefix(e2eNote+fmt.Sprintf("; %d pops never arrived: slower than any bound", lost), "; ")
	}
	add("end to end p99", "≤ 12", m.EndToEnd.P99, "ms", got && percentileOfSent(m.e2e, m.Sent, .99) <= 12, e2eNote)
	// Without two readings of the daemon's RSS, the second above the
	// first, there is no figure per connection to pass.
	mem := r.Memory
	rssNote := "after a forced GC, before and after connecting"
	if o.TLS {
		rssNote += "; TLS terminated by the daemon"
	}
	if mem.RSSBeforeKB <= 0 || mem.RSSAfterKB <= mem.RSSBeforeKB {
		rssNote = fmt.Sprintf("no measurement: RSS %d KB before, %d KB after connecting", mem.RSSBeforeKB, mem.RSSAfterKB)
	}
	add("daemon RSS per idle agent connection", "≤ 16", mem.RSSPerConnKB, "KB", mem.RSSBeforeKB > 0 && mem.RSSAfterKB > mem.RSSBeforeKB && mem.RSSPerConnKB <= 16, rssNote)
	add("Dataverse HTTP requests per pop", "≤ 0.5", m.DataverseRequestsPerPop, "", got && m.DataverseRequestsPerPop <= 0.5+1e-9, fmt.Sprintf("at %.0f%% repeat callers", o.HitRatio*100))
}

func (r *Result) ratios() {
	r.Ratios = map[string]float64{}
	m, f, b := r.Phases["screenpop"], r.Phases["nats_floor"], r.Phases["browser_baseline"]
	if f != nil && f.EndToEnd.P99 > 0 {
		r.Ratios["screenpop_p99_over_nats_floor_p99"] = round3(m.EndToEnd.P99 / f.EndToEnd.P99)
		r.Ratios["screenpop_p50_over_nats_floor_p50"] = round3(m.EndToEnd.P50 / f.EndToEnd.P50)
		if m.OverheadHits != nil {
			r.Ratios["overhead_hits_p99_over_nats_floor_p99"] = round3(m.OverheadHits.P99 / f.EndToEnd.P99)
		}
	}
	if b != nil && b.EndToEnd.P50 > 0 {
		r.Ratios["screenpop_p50_over_browser_baseline_p50"] = round3(m.EndToEnd.P50 / b.EndToEnd.P50)
		r.Ratios["screenpop_p99_over_browser_baseline_p99"] = round3(m.EndToEnd.P99 / b.EndToEnd.P99)
	}
}

func (r *Result) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	pinned, listener := "", ""
	if r.Machine.Pin != nil {
		pinned = "; " + r.Machine.Pin.String()
	}
	if r.Options.TLS {
		listener = " over TLS"
	}
	fmt.Fprintf(w, "\nscreenpop-bench: %d agents%s, %d pops/s for %gs, Dataverse +%gms, %.0f%% repeat callers; %d CPUs (%s)%s, %s\n\n",
		r.Options.Agents, listener, r.Options.Rate, r.Options.DurationS, r.Options.DVLatencyMS, r.Options.HitRatio*100, r.Machine.CPUs, r.Machine.CPUModel, pinned, r.Machine.GoVersion)
	// A misrouted pop reached another agent's socket and not its own, so
	// it is lost as well.
	fmt.Fprintln(tw, "path\tsent\trecv\tlost\tdup\tmisrouted\tp50 ms\tp90 ms\tp99 ms\tmax ms\tDV req/pop\t")
	row := func(name string, p *PhaseResult, d Dist, dvreq string) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t\n", name, p.Sent, p.Received, p.Lost, p.Duplicated, p.Misrouted, d.P50, d.P90, d.P99, d.Max, dvreq)
	}
	m := r.Phases["screenpop"]
	row("screenpop end to end", m, m.EndToEnd, fmt.Sprintf("%.3f", m.DataverseRequestsPerPop))
	// A sub-row's recv is the pops of that kind that arrived; its sent
	// and lost, where the kind is known when it is sent.
	sub := func(name string, sent int, d *Dist) {
		if d == nil {
			return
		}
		s, l := "", ""
		if sent > 0 {
			s, l = fmt.Sprint(sent), fmt.Sprint(sent-d.N)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t\t\t%.2f\t%.2f\t%.2f\t%.2f\t\t\n", name, s, d.N, l, d.P50, d.P90, d.P99, d.Max)
	}
	sub("  cache misses (e2e)", m.Sent-m.CacheHitsSent, m.EndToEndMisses)
	sub("  overhead: cache hits (e2e)", m.CacheHitsSent, m.OverheadHits)
	sub("  overhead: e2e − lookup_ms", 0, m.OverheadAll)
	if f := r.Phases["nats_floor"]; f != nil {
		row("NATS floor (publish→client)", f, f.EndToEnd, "0")
	}
	if b := r.Phases["browser_baseline"]; b != nil {
		row("browser baseline (+1 DV query)", b, b.EndToEnd, fmt.Sprintf("%.3f", b.DataverseRequestsPerPop))
	}
	if w := r.Phases["warmup"]; w != nil {
		row("warm-up (not measured)", w, w.EndToEnd, "")
	}
	sub("emulator queue (not in e2e)", 0, m.EmulatorQueue)
	tw.Flush()
	if len(m.Stages) > 0 {
		fmt.Fprintf(w, "\ndaemon stages (pop log, whole ms) p50/p99: ")
		for _, k := range []string{"queue", "lookup", "mark", "publish", "total"} {
			fmt.Fprintf(w, "%s %.0f/%.0f  ", k, m.Stages[k].P50, m.Stages[k].P99)
		}
		fmt.Fprintln(w)
	}
	if m.Windows != nil {
		fmt.Fprintf(w, "p99 by 10 s window of the phase: end to end %s, cache hits %s\n", spread(m.Windows.EndToEnd), spread(m.Windows.CacheHits))
	}
	if g := m.GC; g != nil {
		fmt.Fprintf(w, "daemon GC during the phase: %d cycles of %.0f ms on average (max %.0f), %.1f%% of it; cache hits sent during one: %d, p50 %.2f / p99 %.2f ms; the others: p50 %.2f / p99 %.2f ms\n",
			g.Cycles, g.MeanMS, g.MaxMS, 100*g.Share, g.HitsDuring.N, g.HitsDuring.P50, g.HitsDuring.P99, g.HitsOutside.P50, g.HitsOutside.P99)
	}
	mem := r.Memory
	fmt.Fprintf(w, "daemon: RSS %d KB idle, %d KB with %d agents (%.1f KB/conn; heap %.1f KB/conn; goroutines %.0f -> %.0f, %.2f/conn), %d KB at the end\n",
		mem.RSSBeforeKB, mem.RSSAfterKB, r.Options.Agents, mem.RSSPerConnKB, mem.HeapPerConnKB, mem.GoroutinesBefore, mem.GoroutinesAfter, mem.GoroutinesPer, mem.RSSEndKB)
	fmt.Fprintf(w, "daemon: %.3f CPU s per 1,000 pops; cache hit ratio %.3f; %.3f Dataverse requests per cache miss; outcomes %v; warnings %d, errors %d\n",
		m.CPUSecondsPer1000, m.CacheHitRatio, m.DataverseRequestsPerMiss, m.Outcomes, r.DaemonWarnings, r.DaemonErrors)
	for _, p := range r.DaemonFirstProblems {
		fmt.Fprintf(w, "  daemon said: %s\n", p)
	}
	if r.UnexpectedFrames > 0 || r.ClientsClosedEarly > 0 {
		fmt.Fprintf(w, "clients: %d frames neither a heartbeat nor a pop of a call made here; %d sockets closed before the end\n", r.UnexpectedFrames, r.ClientsClosedEarly)
	}
	il, ml := r.TimerLateness["idle_before_start"], r.TimerLateness["screenpop_phase"]
	fmt.Fprintf(w, "machine noise: a 5 ms timer fires late by p50 %.2f / p99 %.2f / max %.1f ms idle, p50 %.2f / p99 %.2f / max %.1f ms during the screenpop phase\n",
		il.P50, il.P99, il.Max, ml.P50, ml.P99, ml.Max)
	fmt.Fprintf(w, "the tool's own GC cycles during the measured phases: %d (its collector is off then)\n", r.ToolGCDuringPhases)
	fmt.Fprintf(w, "heartbeat frames at the clients per 100 ms during the screenpop phase: mean %.1f, max %d\n", r.HeartbeatsPer100ms.Mean, r.HeartbeatsPer100ms.Max)
	if len(r.Ratios) > 0 {
		fmt.Fprintf(w, "ratios: ")
		for _, k := range []string{"screenpop_p99_over_nats_floor_p99", "overhead_hits_p99_over_nats_floor_p99", "screenpop_p50_over_browser_baseline_p50", "screenpop_p99_over_browser_baseline_p99"} {
			if v, ok := r.Ratios[k]; ok {
				fmt.Fprintf(w, "%s=%.2f  ", k, v)
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "\ntargets:")
	for _, t := range r.Targets {
		mark := "PASS"
		if !t.Pass {
			mark = "MISS"
		}
		note := ""
		if t.Note != "" {
			note = "  (" + t.Note + ")"
		}
		fmt.Fprintf(w, "  %s  %-55s %10.3f %-3s want %s%s\n", mark, t.Name, t.Measured, t.Unit, t.Want, note)
	}
}

// write puts results.json and latency.svg under dir.
func (r *Result) write(dir string, phases map[byte]*phase, d *daemon, main *phase) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	series := []svgSeries{{"screenpop end to end", r.Phases["screenpop"].e2e, "#d62728"}}
	var hits []float64
	for i := range main.slots {
		s := &main.slots[i]
		if s.repeat && s.t1.Load() != 0 {
			hits = append(hits, float64(s.t1.Load()-s.t0.Load())/1e6)
		}
	}
	if len(hits) > 0 {
		series = append(series, svgSeries{"screenpop, cache hits (pipeline overhead)", hits, "#ff7f0e"})
	}
	if f := r.Phases["nats_floor"]; f != nil {
		series = append(series, svgSeries{"NATS floor", f.e2e, "#2ca02c"})
	}
	if b := r.Phases["browser_baseline"]; b != nil {
		series = append(series, svgSeries{"browser baseline (1 Dataverse query)", b.e2e, "#1f77b4"})
	}
	title := fmt.Sprintf("screenpop latency: %d agents, %d/s for %gs, Dataverse +%gms, %.0f%% repeat callers",
		r.Options.Agents, r.Options.Rate, r.Options.DurationS, r.Options.DVLatencyMS, r.Options.HitRatio*100)
	return os.WriteFile(filepath.Join(dir, "latency.svg"), []byte(histogramSVG(title, series)), 0o644)
}

type svgSeries struct {
	name  string
	v     []float64
	color string
}

// histogramSVG draws each series as a step line over logarithmic latency
// buckets (0.05 ms .. 5 s), normalised to the share of its pops.
func histogramSVG(title string, series []svgSeries) string {
	const (
		w, h           = 900, 420
		left, right    = 60, 20
		top, bottom    = 40, 60
		lo, hi         = 0.05, 5000.0
		bucketsPerDec  = 10
		decades        = 5
		nb             = bucketsPerDec * decades
		plotW, plotH   = w - left - right, h - top - bottom
		legendLineStep = 16
	)
	x := func(v float64) float64 {
		return left + plotW*math.Log10(v/lo)/math.Log10(hi/lo)
	}
	shares := make([][]float64, len(series))
	ymax := 0.0
	for i, s := range series {
		c := make([]float64, nb)
		for _, v := range s.v {
			k := int(math.Floor(math.Log10(max(v, lo)/lo) * bucketsPerDec))
			c[max(0, min(k, nb-1))]++
		}
		for k := range c {
			if len(s.v) > 0 {
				c[k] /= float64(len(s.v))
			}
			ymax = max(ymax, c[k])
		}
		shares[i] = c
	}
	if ymax == 0 {
		ymax = 1
	}
	y := func(f float64) float64 { return top + plotH - plotH*f/ymax }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%d" y="20" font-size="14">%s</text>`+"\n", left, escape(title))
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`, left, top+plotH, left+plotW, top+plotH)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", left, top, left, top+plotH)
	for _, t := range []float64{0.1, 0.3, 1, 3, 10, 30, 100, 300, 1000, 3000} {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/><text x="%.1f" y="%d" text-anchor="middle">%g</text>`+"\n", x(t), top, x(t), top+plotH, x(t), top+plotH+16, t)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">latency, ms (log scale)</text>`+"\n", left+plotW/2, h-18)
	fmt.Fprintf(&b, `<text x="14" y="%d" transform="rotate(-90 14 %d)" text-anchor="middle">share of pops per bucket</text>`+"\n", top+plotH/2, top+plotH/2)
	for i, s := range series {
		var pts []string
		for k, f := range shares[i] {
			x0 := x(lo * math.Pow(10, float64(k)/bucketsPerDec))
			x1 := x(lo * math.Pow(10, float64(k+1)/bucketsPerDec))
			pts = append(pts, fmt.Sprintf("%.1f,%.1f %.1f,%.1f", x0, y(f), x1, y(f)))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", s.color, strings.Join(pts, " "))
		d := dist(s.v)
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="3" fill="%s"/><text x="%d" y="%d">%s: n=%d p50 %.2f p99 %.2f max %.1f ms</text>`+"\n",
			w-right-430, top+10+i*legendLineStep, s.color, w-right-412, top+14+i*legendLineStep, escape(s.name), d.N, d.P50, d.P99, d.Max)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// writeSamples writes every expected pop: phase, conversation id, agent,
// repeat caller, send and receive times (unix ns; 0 = not received) and
// how often it arrived on its agent's socket, and on another agent's
// (misrouted).
func writeSamples(path string, phases map[byte]*phase) error {
	var b strings.Builder
	b.WriteString("phase,conversation_id,agent,repeat,queued_ns,t0_ns,t1_ns,received,misrouted\n")
	for _, k := range []byte{phaseWarmup, phaseFloor, phaseMain, phaseBaseline} {
		p := phases[k]
		if p == nil {
			continue
		}
		for i := range p.slots {
			s := &p.slots[i]
			fmt.Fprintf(&b, "%s,%s,%d,%t,%d,%d,%d,%d,%d\n", p.name, convID(k, i), s.agent.Load(), s.repeat, s.queued.Load(), s.t0.Load(), s.t1.Load(), s.n.Load(), s.wrong.Load())
		}
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
