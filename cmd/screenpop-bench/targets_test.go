package main

import (
	"testing"
	"time"
)

// A run in which no pop of the screenpop phase arrived has no latency and
// no requests per pop to hold against the targets: an empty distribution's
// zeros must not pass them.
func TestTargets_NothingReceivedPassesNoLatencyTarget(t *testing.T) {
	p := newPhase("screenpop", 10)
	for i := range p.slots {
		p.slots[i].queued.Store(time.Now().UnixNano()) // sent, never received
	}
	r := &Result{Phases: map[string]*PhaseResult{"screenpop": phaseResult(p)}}
	r.Lost = r.Phases["screenpop"].Lost // as Run adds them up
	r.Memory.RSSPerConnKB = 10
	r.targets(defaultOptions())
	for _, tg := range r.Targets {
		if tg.Pass && tg.Name != "daemon RSS per idle agent connection" {
			t.Errorf("target %q passes with nothing received (measured %g)", tg.Name, tg.Measured)
		}
	}
}
