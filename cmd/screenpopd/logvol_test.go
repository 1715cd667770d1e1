package main

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/screenpop/screenpop/internal/syncbuf"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// The on-call engineer's log in each failure mode of docs/operations.md 3
// and 7, driven at volume (a few hundred events or connections in ~10 s)
// against the real emulators: no message, at info or above, may be
// logged once per event or per connection while the failure lasts, other
// than the documented one line per call (`pop`, `no pop`) and the
// documented agent lifecycle lines.

// logVolPerEvent are the lines the docs promise once per call or per
// page: not a storm.
var logVolPerEvent = map[string]bool{
	"info resolver pop":            true,
	"info resolver no pop":         true,
	"info push agent connected":    true,
	"info push agent disconnected": true,
}

// checkLogVol fails for every message at info or above (other than those
// of logVolPerEvent) logged more than total times in the window.
func checkLogVol(t *testing.T, counts map[string]*stormCount, total int) {
	t.Helper()
	for k, c := range counts {
		if strings.HasPrefix(k, "debug ") || strings.HasPrefix(k, "trace ") || logVolPerEvent[k] {
			continue
		}
		if c.total > total {
			t.Errorf("log storm: %q logged %d times (up to %d in one second) in one failure; e.g.\n%s", k, c.total, c.maxPerSec, c.sample)
		}
	}
}

// Genesys frames on an agent's conversation topic that the normalizer
// cannot read (a payload change, a proxy that mangles frames), at the rate
// calls come: one cause, so the on-call engineer needs its first line and
// a count, not a warning per frame.
func TestLogVol_MalformedSnapshots(t *testing.T) {
	t.Parallel() // waits most of its time: see TestMain
	e := startStorm(t, 40, nil)
	var sent atomic.Int64
	counts, calls, nums := e.stormWindow(t, 50, 8*time.Second, func() {
		go func() {
			for i := 0; i < 400; i++ {
				id := e.ids[i%len(e.ids)]
				e.g.Publish("v2.users."+id+".conversations", []byte(`{"participants":[{"id":"p","purpose":"agent","userId":"`+id+`"}]}`))
				sent.Add(1)
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}, func() {})
	logStormReport(t, fmt.Sprintf("malformed snapshots (%d sent), %d calls", sent.Load(), calls), counts)
	checkStorm(t, e.logs, counts, 8, 12, nums)
	checkLogVol(t, counts, 20)
}

// Events reaching the resolver older than SCREENPOP_MAX_EVENT_AGE (NATS
// away longer than it, calls ringing meanwhile): one `no pop` line each
// (documented), and nothing else per event.
func TestLogVol_StaleEvents(t *testing.T) {
	t.Parallel() // waits most of its time: see TestMain
	x := startExternalNATS(t)
	e := startStorm(t, 40, map[string]string{"NATS_URL": x.url(), "SCREENPOP_MAX_EVENT_AGE": "4s"})
	counts, calls, nums := e.stormWindow(t, 50, 8*time.Second, x.stop, x.start)
	logStormReport(t, fmt.Sprintf("stale events, %d calls", calls), counts)
	checkStorm(t, e.logs, counts, 20, 60, nums)
	checkLogVol(t, counts, 20)
}

// At LOG_LEVEL=debug (docs/operations.md 3.2: set to see the routine
// lines) through every Dataverse fault: the debug lines still carry no
// caller's number or name (section 3: customer data never appears).
func TestLogVol_DebugCarriesNoCustomerData(t *testing.T) {
	t.Parallel() // waits most of its time: see TestMain
	cfg, g, dv, ids := emulatedConfig(t, 20, 700, notificationstest.Config{Forget: time.Minute}, nil)
	logs := &syncbuf.Buffer{}
	m, _ := runDaemonLog(t, cfg, NewLogger("debug", "json", logs))
	e := &stormEnv{m: m, g: g, dv: dv, ids: ids, logs: logs}
	step := func(on, off func()) { on(); time.Sleep(1500 * time.Millisecond); off() }
	counts, calls, nums := e.stormWindow(t, 40, 100*time.Millisecond, func() {
		step(func() { dv.FailNext(1<<30, 500) }, func() { dv.FailNext(0, 500) })
		time.Sleep(1500 * time.Millisecond) // the breaker closes
		step(func() { dv.FailNext(1<<30, 400) }, func() { dv.FailNext(0, 400) })
		time.Sleep(1500 * time.Millisecond)
		step(func() { dv.DenyRead("leads", true) }, func() { dv.DenyRead("leads", false) })
		step(func() { dv.FailNextHTML(1<<30, 502) }, func() { dv.FailNextHTML(0, 502) })
		time.Sleep(1500 * time.Millisecond)
		step(func() { dv.ThrottleNext(1<<30, time.Second) }, func() { dv.ThrottleNext(0, time.Second) })
		step(func() { dv.SetLatency(3 * time.Second) }, func() { dv.SetLatency(0) })
	}, func() {})
	logStormReport(t, fmt.Sprintf("debug, Dataverse faults, %d calls", calls), counts)
	checkStorm(t, logs, map[string]*stormCount{}, 0, 0, nums)
}

// Another program publishing what screenpop cannot read on its subjects
// (docs/operations.md 3.3, "another publisher?"): malformed events on
// screenpop.events.> and pops on screenpop.pops.<agent> for agents whose
// pages are open, at the rate calls come. One cause: its first line and a
// count, not a warning per message.
func TestLogVol_ForeignPublisher(t *testing.T) {
	t.Parallel() // waits most of its time: see TestMain
	x := startExternalNATS(t)
	e := startStorm(t, 20, map[string]string{"NATS_URL": x.url()})
	for _, id := range e.ids {
		openAgentPage(t, e.m.AgentURL(), e.g.AgentToken(id))
	}
	nc, err := nats.Connect(x.url())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int64
	counts, calls, nums := e.stormWindow(t, 50, 8*time.Second, func() {
		go func() {
			for i := 0; i < 300; i++ {
				id := e.ids[i%len(e.ids)]
				js.Publish("screenpop.events.voice.alerting."+id, []byte(`{"specversion":"0.1","junk":true}`))
				js.Publish("screenpop.pops."+id, []byte(`{"junk":true}`))
				sent.Add(1)
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}, func() {})
	logStormReport(t, fmt.Sprintf("foreign publisher (%d of each sent), %d calls", sent.Load(), calls), counts)
	checkStorm(t, e.logs, counts, 8, 12, nums)
	checkLogVol(t, counts, 20)
}
