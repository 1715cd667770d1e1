//go:build unix

package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/screenpop/screenpop/bridge/bus"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// One instance of an HA pair hangs: its process and its connections stay,
// nothing in it runs (SIGSTOP by its PID, as a paused VM or a host stalled
// on its disk). The other instance hears every call too, and
// architecture.md promises that what the failed one held comes back after
// the resolver consumer's ack wait, inside the max event age, so every
// call still pops. But NATS hands events to any waiting pull of the shared
// consumer, and the hung instance's pulls stay until they expire: with
// nats.go's default expiry (30 s) the calls of that half minute popped 10
// to 20 s late, or not at all (handed to the hung instance twice, older
// than the max event age when they came back).
func TestDaemon_HAPairPeerHangs(t *testing.T) {
	t.Parallel() // waits most of its time: see TestMain
	h := newHAPair(t)
	agent := demoAgents[0].ID
	tab := h.tabs[agent][1] // behind the balancer that prefers B
	// A started again: its resolver's pull is fresh when it hangs, so it
	// has its whole expiry still to run (hung at any other moment, less of
	// it: the test would then show the fault only sometimes).
	stopProc(t, h.a, false)
	h.a = startMain(t, "run", h.varsA)
	js := jetStreamAt(t, h.natsURL)
	waitFor(t, 10*time.Second, "both instances' pulls waiting", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		cons, err := js.Consumer(ctx, "SCREENPOP", bus.DefaultDurable)
		if err != nil {
			return false
		}
		info, err := cons.Info(ctx)
		return err == nil && info.NumWaiting >= 2
	})
	h.a.signal(t, syscall.SIGSTOP)
	t.Cleanup(func() { _ = h.a.cmd.Process.Signal(syscall.SIGCONT) }) // before its kill
	hung := time.Now()
	var calls []*notificationstest.Conversation
	var alerted []time.Time
	for time.Since(hung) < 32*time.Second {
		alerted = append(alerted, time.Now())
		calls = append(calls, h.call(agent))
		time.Sleep(1500 * time.Millisecond)
	}
	// What an event in the hands of a failed instance may take: the ack
	// wait, once, and a little.
	limit := bus.DefaultAckWait + 5*time.Second
	for i, c := range calls {
		at := tab.waitPop(c.ID(), time.Until(alerted[i].Add(limit)))
		if at.IsZero() {
			at = tab.waitPop(c.ID(), 15*time.Second) // how late, if at all
		}
		switch {
		case at.IsZero():
			t.Errorf("call alerted %v after A hung: no pop on B, want one within %v", alerted[i].Sub(hung).Round(time.Second), limit)
		case at.Sub(alerted[i]) > limit:
			t.Errorf("call alerted %v after A hung: popped on B after %v, want within %v", alerted[i].Sub(hung).Round(time.Second), at.Sub(alerted[i]).Round(time.Second), limit)
		}
	}
}

// The suggested alerts (docs/operations.md section 5), run by Prometheus'
// own rule engine (promtool test rules), page on-call when an instance
// hangs: its /metrics can no longer be scraped (up 0) and its series go
// stale. Alone, ScreenpopNotReady's absent(screenpop_ready) fires. Beside
// another instance (a pair, or instances splitting the agents, whose hung
// one's agents then get no pop at all) the other's screenpop_ready keeps
// absent() empty and no rule fired. A quiet night (healthy, no calls)
// pages no one.
func TestRunbookDoc_AlertsPageForAHungInstance(t *testing.T) {
	promtool, dir := suggestedAlertRules(t)
	// Instance a hangs at minute 5; b stays healthy. No calls: every
	// counter the rules read is flat.
	const tests = `rule_files: [rules.yml]
evaluation_interval: 1m
tests:
- name: one instance hangs
  interval: 1m
  input_series:
  - {series: 'up{job="screenpop",instance="a"}', values: '1x5 0x20'}
  - {series: 'screenpop_ready{job="screenpop",instance="a"}', values: '1x5 stale'}
  promql_expr_test:
  - {expr: '(count(ALERTS{alertstate="firing"}) or vector(0)) > bool 0', eval_time: 15m, exp_samples: [{value: 1}]}
- name: one instance of two hangs
  interval: 1m
  input_series:
  - {series: 'up{job="screenpop",instance="a"}', values: '1x5 0x20'}
  - {series: 'screenpop_ready{job="screenpop",instance="a"}', values: '1x5 stale'}
  - {series: 'up{job="screenpop",instance="b"}', values: '1x25'}
  - {series: 'screenpop_ready{job="screenpop",instance="b"}', values: '1x25'}
  promql_expr_test:
  - {expr: '(count(ALERTS{alertstate="firing"}) or vector(0)) > bool 0', eval_time: 15m, exp_samples: [{value: 1}]}
- name: a quiet night
  interval: 1m
  input_series:
  - {series: 'up{job="screenpop",instance="a"}', values: '1x600'}
  - {series: 'screenpop_ready{job="screenpop",instance="a"}', values: '1x600'}
  - {series: 'up{job="screenpop",instance="b"}', values: '1x600'}
  - {series: 'screenpop_ready{job="screenpop",instance="b"}', values: '1x600'}
  promql_expr_test:
  - {expr: 'count(ALERTS{alertstate="firing"}) or vector(0)', eval_time: 8h, exp_samples: [{value: 0}]}
`
	if err := os.WriteFile(filepath.Join(dir, "tests.yml"), []byte(tests), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(promtool, "test", "rules", "tests.yml")
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Errorf("promtool test rules over docs/operations.md section 5 (%v): a hung instance does not page on-call, or a healthy one does:\n%s", err, out.String())
	}
}
