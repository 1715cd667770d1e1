package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/screenpop/screenpop/dataverse/dataversetest"
	"github.com/screenpop/screenpop/internal/syncbuf"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// The on-call engineer's log during an outage (docs/operations.md 3): a
// dependency failing while calls keep coming must not turn one cause into
// a line per pop or per request. These tests run the daemon as it runs in
// production (NewLogger, JSON, info) against the real emulators and count
// the warn and error lines per message per second during the failure.

// stormEnv is a daemon on both emulators with n agents, logging as
// screenpopd does at LOG_LEVEL=info.
type stormEnv struct {
	m    *Main
	g    *notificationstest.Emulator
	dv   *dataversetest.Server
	ids  []string
	logs *syncbuf.Buffer
}

func startStorm(t *testing.T, n int, vars map[string]string) *stormEnv {
	t.Helper()
	cfg, g, dv, ids := emulatedConfig(t, n, 700, notificationstest.Config{Forget: time.Minute}, vars)
	logs := &syncbuf.Buffer{}
	m, _ := runDaemonLog(t, cfg, NewLogger("info", "json", logs))
	return &stormEnv{m: m, g: g, dv: dv, ids: ids, logs: logs}
}

// stormCaller is a unique caller number; each is a cache miss.
var stormCaller atomic.Int64

// callFeed alerts inbound calls from distinct callers at rate per second,
// round-robin over the agents, each ended a few seconds after it alerted,
// until the returned stop is called. It returns the numbers it used.
func (e *stormEnv) callFeed(t *testing.T, rate int) (stop func() (calls int, numbers []string)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var nums []string
	calls := 0
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		var live []*notificationstest.Conversation
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			num := fmt.Sprintf("+1317%07d", 2000000+stormCaller.Add(1))
			c := e.g.InboundCall(e.ids[i%len(e.ids)], num, notificationstest.Options{Name: "Storm Caller"})
			c.Alert()
			live = append(live, c)
			if len(live) > 3*rate {
				live[0].Disconnect()
				live = live[1:]
			}
			mu.Lock()
			nums = append(nums, num)
			calls++
			mu.Unlock()
		}
	})
	return func() (int, []string) {
		cancel()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return calls, nums
	}
}

type stormLine struct {
	Level     string `json:"level"`
	Message   string `json:"message"`
	Component string `json:"component"`
	Time      string `json:"time"`
}

// stormCount is one message's lines in a window: the total and the most
// in any one second.
type stormCount struct {
	total, maxPerSec int
	sample           string
}

// stormCounts counts the lines of logs written within [from, to) by
// (level, component, message).
func stormCounts(t *testing.T, logs *syncbuf.Buffer, from, to time.Time) map[string]*stormCount {
	t.Helper()
	perSec := map[string]map[int64]int{}
	out := map[string]*stormCount{}
	for _, l := range strings.Split(logs.String(), "\n") {
		if l == "" {
			continue
		}
		var sl stormLine
		if err := json.Unmarshal([]byte(l), &sl); err != nil {
			t.Errorf("not a JSON log line: %q", l)
			continue
		}
		at, err := time.Parse("2006-01-02T15:04:05.000Z07:00", sl.Time)
		if err != nil || at.Before(from) || !at.Before(to) {
			continue
		}
		k := sl.Level + " " + sl.Component + " " + sl.Message
		c := out[k]
		if c == nil {
			c = &stormCount{sample: l}
			out[k] = c
			perSec[k] = map[int64]int{}
		}
		c.total++
		perSec[k][at.Unix()]++
		c.maxPerSec = max(c.maxPerSec, perSec[k][at.Unix()])
	}
	return out
}

func logStormReport(t *testing.T, what string, counts map[string]*stormCount) {
	t.Helper()
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		c := counts[k]
		fmt.Fprintf(&b, "  %5d total, %4d max/s  %s\n", c.total, c.maxPerSec, k)
	}
	t.Logf("%s:\n%s", what, b.String())
}

// checkStorm fails for every warn or error message logged more than
// perSec times in a second, or more than total times, in the window; and
// for any line carrying one of secrets (caller numbers, tokens).
func checkStorm(t *testing.T, logs *syncbuf.Buffer, counts map[string]*stormCount, perSec, total int, secrets []string) {
	t.Helper()
	for k, c := range counts {
		if !strings.HasPrefix(k, "warn ") && !strings.HasPrefix(k, "error ") {
			continue
		}
		if c.maxPerSec > perSec || c.total > total {
			t.Errorf("log storm: %q logged %d times (up to %d in one second) during one outage; e.g.\n%s", k, c.total, c.maxPerSec, c.sample)
		}
	}
	all := logs.String()
	for _, s := range append(secrets, "Storm Caller") {
		if s != "" && strings.Contains(all, s) {
			for _, l := range strings.Split(all, "\n") {
				if strings.Contains(l, s) {
					t.Errorf("a log line carries customer data or a token (%q): %s", s, l)
					break
				}
			}
		}
	}
}

// stormWindow runs calls at rate through fail (started after a second of
// healthy traffic) for d, then heal, and returns the counts of the lines
// logged from the failure's start to a few seconds after it was healed,
// the calls made and their callers' numbers.
func (e *stormEnv) stormWindow(t *testing.T, rate int, d time.Duration, fail, heal func()) (map[string]*stormCount, int, []string) {
	t.Helper()
	stop := e.callFeed(t, rate)
	time.Sleep(time.Second)
	from := time.Now()
	fail()
	time.Sleep(d)
	heal()
	time.Sleep(3 * time.Second)
	calls, nums := stop()
	time.Sleep(3 * time.Second)
	return stormCounts(t, e.logs, from, time.Now()), calls, nums
}

// Dataverse failing at 100 pops a second: the breaker's line and the
// lookups that opened it, not one warning per lookup in flight when it
// failed (68, 63 in one second, before the fix: a few hundred at a few
// hundred pops a second); a table the role can no longer read, which does
// not open the breaker, once a minute (a warning per pop of every unknown
// caller before the fix). Every call still has its one pop line.
func TestLogStorm_DataverseDown(t *testing.T) {
	t.Parallel() // waits most of its time: see TestMain
	for _, tc := range []struct {
		name       string
		fail, heal func(dv *dataversetest.Server)
	}{
		{"500", func(dv *dataversetest.Server) { dv.FailNext(1<<30, 500) }, func(dv *dataversetest.Server) { dv.FailNext(0, 500) }},
		{"403lead", func(dv *dataversetest.Server) { dv.DenyRead("leads", true) }, func(dv *dataversetest.Server) { dv.DenyRead("leads", false) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startStorm(t, 40, nil)
			counts, calls, nums := e.stormWindow(t, 100, 12*time.Second, func() { tc.fail(e.dv) }, func() { tc.heal(e.dv) })
			logStormReport(t, fmt.Sprintf("Dataverse %s, %d calls", tc.name, calls), counts)
			checkStorm(t, e.logs, counts, 8, 12, nums)
			if n := strings.Count(e.logs.String(), `"message":"pop"`); n != calls {
				t.Errorf("%d pop lines for %d calls, want one each", n, calls)
			}
		})
	}
}

// NATS (external) unreachable for 45 s, calls coming, every agent's page
// open, and a page per agent opened during the outage (a reload, the next
// shift signing in) that reconnects as screenpop.js does after a 1013. Each
// such hello waits 30 s for the agent's latest pop and was then a warning
// of its own: one per page per try (60 here in one second; 10,000 agents'
// pages were some 300 a second for as long as NATS was away). The event
// publisher warns once per lane (16) at the start, a bounded number.
func TestLogStorm_NATSDown(t *testing.T) {
	t.Parallel() // waits most of its time: see TestMain
	x := startExternalNATS(t)
	e := startStorm(t, 60, map[string]string{"NATS_URL": x.url()})
	var tokens []string
	for _, id := range e.ids {
		tok := e.g.AgentToken(id)
		tokens = append(tokens, tok)
		openAgentPage(t, e.m.AgentURL(), tok)
	}
	// Pages opened during the outage (a reload, the next shift signing
	// in), reconnecting as screenpop.js does after a 1013.
	down := func() {
		x.stop()
		for _, id := range e.ids {
			openAgentPage(t, e.m.AgentURL(), e.g.AgentToken(id))
		}
	}
	counts, calls, nums := e.stormWindow(t, 100, 45*time.Second, down, x.start)
	logStormReport(t, fmt.Sprintf("NATS down, %d calls", calls), counts)
	// The event publisher warns once per lane (16) at the outage's start.
	checkStorm(t, e.logs, counts, 20, 60, append(nums, tokens...))
}
