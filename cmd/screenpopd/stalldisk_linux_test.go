package main

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/screenpop/screenpop/bridge/bus/bustest"
)

// probeGet reads path of a daemon's admin listener with a client timeout,
// as a monitor's probe does: code 0 when it did not answer.
func probeGet(base, path string) (code int, body string) {
	hc := &http.Client{Timeout: 3 * time.Second}
	resp, err := hc.Get(base + path)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// runOnStallDisk starts `screenpopd run` in a child process with its data
// directory on a disk that can be made to stall.
func runOnStallDisk(t *testing.T) (*bustest.StallDisk, *Demo, map[string]string, *mainProcess) {
	t.Helper()
	disk := bustest.MountStallDisk(t)
	d, _, _ := demoEmulators(t, testEnv(t))
	vars := runVars(d, freeLoopbackAddr(t), filepath.Join(disk.Dir, "data"))
	vars["LOG_LEVEL"] = "info"
	p := startMain(t, "run", vars)
	// Runs before p's kill (cleanups run last first): a process blocked
	// on the disk cannot end until the disk answers.
	t.Cleanup(disk.Resume)
	return disk, d, vars, p
}

// The disk under SCREENPOP_DATA_DIR stops answering for 30 s (a stalled
// EBS volume, an NFS server gone away): writes and fsyncs wait instead
// of failing, so no publish is acknowledged and calls do not pop, while
// NATS stays connected. On-call is told within seconds, by an error line,
// /status and the store_write_failed gauge, each naming the disk; pops
// come back by themselves once it answers. Before: only "publish failed,
// retrying" (warn) named nothing, and /status said "context deadline
// exceeded".
//
// The disk is a real file system: a FUSE passthrough served by this test
// process whose writing calls block in the kernel while it is stalled;
// the daemon runs in a child process.
func TestDaemon_StalledDataDir(t *testing.T) {
	t.Parallel() // waits most of its time; holds nothing process-wide: see TestMain
	disk, d, vars, p := runOnStallDisk(t)
	t.Cleanup(func() { // after a Fatal too
		if t.Failed() {
			t.Logf("log:\n%s", logLines(p.logs, `"level":"warn"`, `"level":"error"`, `"message":"pop"`, "no pop", "stop", "answers", "drain", "clos"))
		}
	})
	a0 := demoAgents[0].ID
	page := openAgentPage(t, "http://"+vars["SCREENPOP_LISTEN"], d.Genesys.AgentToken(a0))
	if page.waitPop(alertCall(d, a0).ID(), 10*time.Second).IsZero() {
		t.Fatal("no pop before the stall")
	}
	named := func() string {
		for _, l := range strings.Split(p.logs.String(), "\n") {
			if strings.Contains(l, `"level":"error"`) && strings.Contains(l, "SCREENPOP_DATA_DIR") && strings.Contains(l, "does not answer") {
				return l
			}
		}
		return ""
	}

	disk.Stall()
	stalled := time.Now()
	during := alertCall(d, a0)
	var told time.Duration
	for told == 0 && time.Since(stalled) < 20*time.Second {
		if named() != "" {
			told = time.Since(stalled)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if told == 0 {
		t.Errorf("20 s into the stall no error line names SCREENPOP_DATA_DIR and its disk not answering; warnings and errors:\n%s",
			logLines(p.logs, `"level":"warn"`, `"level":"error"`))
	} else {
		t.Logf("told %v into the stall: %s", told.Round(100*time.Millisecond), named())
	}
	code, body := probeGet(p.admin, "/status")
	var st struct {
		Components struct {
			NATS struct {
				Connected  bool   `json:"connected"`
				StoreError string `json:"storeError"`
			} `json:"nats"`
		} `json:"components"`
	}
	_ = json.Unmarshal([]byte(body), &st)
	if !strings.Contains(st.Components.NATS.StoreError, "SCREENPOP_DATA_DIR") {
		t.Errorf("/status (%d) during the stall: nats.storeError %q does not name the disk", code, st.Components.NATS.StoreError)
	}
	if _, m := probeGet(p.admin, "/metrics"); !strings.Contains(m, "\nscreenpop_bus_store_write_failed 1\n") {
		t.Errorf("screenpop_bus_store_write_failed is not 1 during the stall (ScreenpopStoreCannotWrite would not page):\n%s", grepLines(m, "screenpop_bus_store_write_failed"))
	}
	rc, _ := probeGet(p.admin, "/readyz")
	hc, _ := probeGet(p.admin, "/healthz")
	t.Logf("during the stall: /readyz %d, /healthz %d, %d calls blocked on the disk", rc, hc, disk.Blocked())
	if w := 30*time.Second - time.Since(stalled); w > 0 {
		time.Sleep(w)
	}
	if n, _ := page.pops(during.ID()); n != 0 {
		t.Logf("the call that rang as the disk stalled popped during the stall")
	}

	disk.Resume()
	resumed := time.Now()
	if at := page.waitPop(alertCall(d, a0).ID(), 15*time.Second); at.IsZero() {
		t.Errorf("no pop within 15 s of the disk answering again")
	} else {
		t.Logf("a call that rang once the disk answered popped %v later", at.Sub(resumed).Round(time.Millisecond))
	}
	n, _ := page.pops(during.ID())
	t.Logf("the call that rang as the disk stalled: %d pops (its event was %v old once stored: SCREENPOP_MAX_EVENT_AGE)", n, resumed.Sub(stalled).Round(time.Second))
	if n > 1 {
		t.Errorf("the call of the stall popped %d times", n)
	}
	waitFor(t, 15*time.Second, "store_write_failed back to 0", func() bool {
		_, m := probeGet(p.admin, "/metrics")
		return strings.Contains(m, "\nscreenpop_bus_store_write_failed 0\n")
	})
	if told != 0 && !strings.Contains(p.logs.String(), "answers again") {
		t.Errorf("no line tells that the disk answers again")
	}

	// A stop (SIGTERM) while the disk stalls again, with a call's publish
	// waiting on it: the daemon's own stop ends ("screenpopd stopped")
	// without waiting for the disk, leaving the store as a crash would.
	// The docs promise 10 s: 6.1 s here on an idle machine, but a CI
	// machine running four test binaries and Chromium at once stretched
	// it past 10 s twice in six runs (with no line logged late: the whole
	// child was slow, not one stage); a stop that waited on the disk
	// would not end before the disk answers, which it does not here until
	// after. So the test waits twice the promise.
	// The process itself ends only once the disk answers: its threads
	// whose writes the kernel handed to the disk cannot be stopped, not
	// even by SIGKILL (state D), as on a real stalled volume.
	retries := func() int { return strings.Count(p.logs.String(), "publish failed, retrying") }
	before := retries()
	disk.Stall()
	alertCall(d, a0)
	waitFor(t, 15*time.Second, "a call's publish waiting on the stalled disk", func() bool { return retries() > before })
	p.signal(t, syscall.SIGTERM)
	termed := time.Now()
	waitFor(t, 20*time.Second, `"screenpopd stopped" within 20 s of SIGTERM during a stall`, func() bool {
		return strings.Contains(p.logs.String(), `"message":"screenpopd stopped"`)
	})
	t.Logf("stopped %v after SIGTERM during the stall", time.Since(termed).Round(100*time.Millisecond))
	disk.Resume()
	p.awaitCleanExit(t, "SIGTERM during a stall")
}

// A disk that answers (here: after a second or two, a slow but working
// volume) while the daemon's process is paused for longer than the stall
// threshold (SIGSTOP, a frozen cgroup as docker pause does, a paused VM):
// the probe in flight when it was paused returns as soon as the process
// runs again, so the disk did answer. Before: the watcher measured the
// probe's wait on the clock, pause included, and said the disk does not
// answer (an error line and store_write_failed 1, which pages on-call)
// the moment the process ran again.
func TestDaemon_PausedProcessIsNoStalledDisk(t *testing.T) {
	t.Parallel() // waits most of its time; holds nothing process-wide: see TestMain
	disk, _, _, p := runOnStallDisk(t)
	t.Cleanup(func() { _ = p.cmd.Process.Signal(syscall.SIGCONT) }) // before its kill

	// The disk is slow for a moment, long enough for the store watcher's
	// probe (every 5 s) to be the one write waiting on it.
	disk.Stall()
	waitFor(t, 10*time.Second, "the store watcher's probe waiting on the disk", func() bool {
		return disk.BlockedOps()["Create"] > 0 && disk.Blocked() > 0
	})
	p.signal(t, syscall.SIGSTOP)
	time.Sleep(time.Second)
	disk.Resume() // answered; the process sees it once it runs again
	time.Sleep(12 * time.Second)
	p.signal(t, syscall.SIGCONT)
	time.Sleep(3 * time.Second)
	for _, l := range strings.Split(p.logs.String(), "\n") {
		if strings.Contains(l, "does not answer") {
			t.Errorf("a paused process whose disk answered is told as a stalled disk: %s", l)
		}
	}
}

// The disk under SCREENPOP_DATA_DIR does not answer as the daemon starts:
// on a first start (no data directory yet: making it and pii-hash.key
// wait) and on a restart (the built-in NATS store opening waits). The
// daemon can do nothing until the disk answers, but on-call is told: an
// error line names SCREENPOP_DATA_DIR and the step within seconds, the
// admin listener answers (/healthz 200, /readyz 503), and once the disk
// answers a line says so and the daemon becomes ready by itself. Before:
// the process logged nothing at all, and on a first start did not listen.
func TestDaemon_StalledDataDirAtStart(t *testing.T) {
	t.Parallel() // waits most of its time; holds nothing process-wide: see TestMain
	for _, tc := range []struct{ name, step string }{
		{"a first start", "pii-hash.key"},
		{"a restart", "the built-in NATS store"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			disk := bustest.MountStallDisk(t)
			d, _, _ := demoEmulators(t, testEnv(t))
			vars := runVars(d, freeLoopbackAddr(t), filepath.Join(disk.Dir, "data"))
			vars["LOG_LEVEL"] = "info"
			vars["SCREENPOP_ADMIN_LISTEN"] = freeLoopbackAddr(t)
			if tc.step != "pii-hash.key" {
				startMain(t, "run", vars).kill() // the store and the key exist
			}
			disk.Stall()
			p := execMain(t, "run", vars)
			// Registered after p's kill, so run before it: a process
			// blocked on the disk ends only once it answers.
			t.Cleanup(disk.Resume)
			p.admin = "http://" + vars["SCREENPOP_ADMIN_LISTEN"]
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("log:\n%s", p.logs.String())
				}
			})
			line := func(msg string) string {
				for _, l := range strings.Split(p.logs.String(), "\n") {
					if strings.Contains(l, msg) {
						return l
					}
				}
				return ""
			}
			const stalled = "the disk under SCREENPOP_DATA_DIR does not answer at start"
			waitFor(t, startDiskWait+10*time.Second, "an error line naming the stalled disk at start", func() bool { return line(stalled) != "" })
			if l := line(stalled); !strings.Contains(l, `"level":"error"`) || !strings.Contains(l, `"step":"`+tc.step+`"`) {
				t.Errorf("the line does not name the step (%s) at error level: %s", tc.step, l)
			}
			if code, _ := probeGet(p.admin, "/healthz"); code != http.StatusOK {
				t.Errorf("/healthz during the stall at start: %d, want 200 (a restart would wait on the same disk)", code)
			}
			if code, _ := probeGet(p.admin, "/readyz"); code != http.StatusServiceUnavailable {
				t.Errorf("/readyz during the stall at start: %d, want 503", code)
			}
			disk.Resume()
			waitFor(t, 30*time.Second, "ready once the disk answers", func() bool { code, _ := probeGet(p.admin, "/readyz"); return code == http.StatusOK })
			if line("the disk under SCREENPOP_DATA_DIR answers: screenpopd goes on starting") == "" {
				t.Error("no line tells that the disk answered and the start went on")
			}
		})
	}
}

// `screenpopd check` is what the runbook has on-call run when something
// looks wrong, and "the whole run is bounded at 60 s" (operations.md). On
// a data directory whose disk does not answer (a stalled volume, an NFS
// server gone: section 7.4) its write test waited in the kernel, and with
// it the whole check, for as long as the disk did; once it answered, the
// NATS checks ran on a spent context and blamed JetStream. Now the data
// directory's line says the disk does not answer, within the daemon's own
// start-up wait (10 s), and the other checks run as on any day.
func TestCheck_StalledDataDirIsToldWithinItsBound(t *testing.T) {
	t.Parallel() // waits most of its time; holds nothing process-wide: see TestMain
	disk := bustest.MountStallDisk(t)
	r := newCheckRig(t)
	r.vars["SCREENPOP_DATA_DIR"] = filepath.Join(disk.Dir, "data")
	disk.Stall()
	type result struct {
		code int
		out  string
	}
	done := make(chan result, 1)
	go func() { code, out := r.check(t); done <- result{code, out} }()
	// Registered after the check's start, so it runs before the wait
	// below would end: a check blocked on the disk ends once it answers.
	t.Cleanup(disk.Resume)
	var got result
	select {
	case got = <-done:
	case <-time.After(40 * time.Second):
		disk.Resume()
		<-done
		t.Fatal("screenpopd check had not ended 40 s into a stall of its data directory's disk")
	}
	wantLine(t, got.out, "FAIL data dir:", "does not answer", "7.4")
	if got.code == 0 {
		t.Errorf("check exited 0 with the data directory's disk not answering")
	}
	for _, bad := range []string{"FAIL nats", "skip nats"} {
		if strings.Contains(got.out, bad) {
			t.Errorf("the NATS checks failed or were skipped for a stalled data directory (their scratch store is elsewhere):\n%s", got.out)
		}
	}
}
