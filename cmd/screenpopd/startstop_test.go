package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/screenpop/screenpop/internal/syncbuf"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// silentJetStream is a NATS server whose JetStream API never answers the
// daemon (its user may not publish to $JS.API.>): as a cluster electing its
// JetStream leader, or a NATS slow to answer, looks at start-up.
func silentJetStream(t *testing.T) string {
	t.Helper()
	ns := startNATSWith(t, &server.Options{JetStream: true, Users: []*server.User{{Username: "screenpop", Password: "pw",
		Permissions: &server.Permissions{Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: []string{"$JS.API.>"}}}}}})
	return natsUserURL(ns)
}

// SIGINT/SIGTERM while the daemon starts (systemctl stop or restart, an
// admin's Ctrl-C, a deploy) is a stop asked for, not a failure: like a stop
// once started it must end with exit 0 and "screenpopd stopped", not with
// exit 1 and an error that blames what start-up was waiting on. Here the
// stop comes while the stream is made: the built-in server's store has
// just been opened (opening it, seconds per GB, takes no signal, so the
// stop is seen right after), or an external NATS is slow to answer. It
// used to exit 1 with "screenpopd run: create or update stream SCREENPOP:
// context canceled (… check that disk's free space …)" or "(check
// SCREENPOP_STREAM* and the NATS account's JetStream limits)": under
// systemd the unit is left failed, and on-call checks a disk or NATS limits
// that are fine.
func TestRun_StopDuringStartUpIsACleanStop(t *testing.T) {
	for _, tc := range []struct {
		name  string
		nats  func(t *testing.T) string // NATS_URL; nil: the built-in server
		after time.Duration             // the stop comes this long after the start
	}{
		{"BuiltInStoreJustOpened", nil, 0},
		{"ExternalNATSSlowToAnswer", silentJetStream, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _, _ := demoEmulators(t, testEnv(t))
			vars := runVars(d, freeLoopbackAddr(t), t.TempDir())
			if tc.nats != nil {
				vars["NATS_URL"] = tc.nats(t)
			}
			stderr := &syncbuf.Buffer{}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.after == 0 {
				cancel()
			}
			done := make(chan int, 1)
			go func() { done <- run(ctx, []string{"run"}, env(vars), &syncbuf.Buffer{}, stderr) }()
			time.Sleep(tc.after)
			cancel()
			var code int
			select {
			case code = <-done:
			case <-time.After(shutdownBudget):
				t.Fatalf("run did not return within %v of the stop:\n%s", shutdownBudget, stderr.String())
			}
			out := stderr.String()
			if code != 0 || strings.Contains(out, "context canceled") || !strings.Contains(out, "screenpopd stopped") {
				t.Errorf("a stop during start-up exited %d (want 0, with \"screenpopd stopped\" and no error blaming NATS or the disk); log:\n%s",
					code, logLines(stderr, `"level":"warn"`, `"level":"error"`, "stopped", "screenpopd run"))
			}
		})
	}
}

// The same stop as systemd sends it: SIGTERM by PID to `screenpopd run`
// still waiting on NATS (its admin listener answers /healthz from the
// start). The process must end by its graceful stop, exit 0, within the
// unit's 10 s; it exited 1, which leaves the unit failed.
func TestMain_SIGTERMWhileNATSIsSlowAtStart(t *testing.T) {
	d, _, _ := demoEmulators(t, testEnv(t))
	vars := runVars(d, freeLoopbackAddr(t), t.TempDir())
	vars["NATS_URL"] = silentJetStream(t)
	vars["SCREENPOP_ADMIN_LISTEN"] = freeLoopbackAddr(t)
	p := execMain(t, "run", vars)
	waitFor(t, 30*time.Second, "the admin listener answering /healthz", func() bool {
		resp, err := http.Get("http://" + vars["SCREENPOP_ADMIN_LISTEN"] + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	http.DefaultClient.CloseIdleConnections()
	if strings.Contains(p.logs.String(), "screenpopd started") {
		t.Fatal("started already (the test proves nothing)")
	}
	time.Sleep(500 * time.Millisecond) // into the stream's creation
	stop := time.Now()
	p.signal(t, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("no exit within 10s of SIGTERM:\n%s", p.logs.String())
	}
	ws, _ := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() || ws.ExitStatus() != 0 {
		t.Errorf("SIGTERM during start-up: the process ended %v after it (%v), want exit 0; its last lines:\n%s",
			time.Since(stop).Round(time.Millisecond), p.err, logLines(p.logs, `"level":"warn"`, `"level":"error"`, "stopped", "screenpopd run"))
	}
}

// A second screenpopd started on the SCREENPOP_DATA_DIR of one that runs
// with the built-in NATS (a deploy that starts the new version before the
// old one has gone, or an admin who follows the "port in use" hint: "a
// second instance also needs its own SCREENPOP_ADMIN_LISTEN and
// SCREENPOP_NATS_LISTEN") must be refused at start: two built-in NATS
// servers on one JetStream store write over each other's blocks. It
// started without a word, both ran and popped, and after both stopped the
// next start's stream held none of the first one's pops (0 of 10, a
// minute old, in a stream that keeps 24 h), and nats-server said only
// "could not locate msg block 1" at warn.
func TestDaemon_SecondInstanceOnOneDataDir(t *testing.T) {
	d, _, _ := demoEmulators(t, testEnv(t))
	dir := t.TempDir()
	a0, a1 := demoAgents[0].ID, demoAgents[1].ID
	varsA := runVars(d, freeLoopbackAddr(t), dir)
	varsB := runVars(d, freeLoopbackAddr(t), dir) // its own ports, the same data dir
	varsA["GENESYS_AGENTS"], varsB["GENESYS_AGENTS"] = a0, a1
	a := startMain(t, "run", varsA)
	pageA := openAgentPage(t, "http://"+varsA["SCREENPOP_LISTEN"], d.Genesys.AgentToken(a0))
	b, started := spawnMainOrExit(t, "run", varsB)
	if !started {
		if !strings.Contains(b.logs.String(), "SCREENPOP_DATA_DIR") {
			t.Fatalf("B exited at start, but not for the data dir:\n%s", b.logs.String())
		}
		return // refused: the store is A's alone
	}
	pageB := openAgentPage(t, "http://"+varsB["SCREENPOP_LISTEN"], d.Genesys.AgentToken(a1))
	// Calls for the agents of both: each instance stores its pops.
	pops := map[string][]string{} // agent: the conversations popped
	for i := range 10 {
		ca := d.Genesys.InboundCall(a0, fmt.Sprintf("+131755501%02d", i), notificationstest.Options{})
		cb := d.Genesys.InboundCall(a1, fmt.Sprintf("+131755502%02d", i), notificationstest.Options{})
		ca.Alert()
		cb.Alert()
		if pageA.waitPop(ca.ID(), 10*time.Second).IsZero() || pageB.waitPop(cb.ID(), 10*time.Second).IsZero() {
			t.Fatalf("call %d: no pop", i)
		}
		pops[a0], pops[a1] = append(pops[a0], ca.ID()), append(pops[a1], cb.ID())
	}
	stopProc(t, b, false)
	stopProc(t, a, false)

	// A again, alone on its store: every pop either instance stored
	// is in the stream (the replay window is 2 m, the stream keeps 24 h).
	varsA["SCREENPOP_NATS_LISTEN"] = freeLoopbackAddr(t)
	a = startMain(t, "run", varsA)
	js := jetStreamAt(t, "nats://"+varsA["SCREENPOP_NATS_LISTEN"])
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "SCREENPOP")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter("screenpop.pops.>"))
	if err != nil {
		t.Fatal(err)
	}
	for _, agent := range []string{a0, a1} {
		if have := info.State.Subjects["screenpop.pops."+agent]; have != uint64(len(pops[agent])) {
			t.Errorf("a second screenpopd ran on the first's SCREENPOP_DATA_DIR; after both stopped, the stream holds %d of the %d pops stored for agent %s; nats-server at the next start:\n%s",
				have, len(pops[agent]), agent, logLines(a.logs, `"component":"nats-server"`))
		}
	}
}

// spawnMainOrExit is spawnMain that also returns when the process exits
// at start (a refusal): started says which.
func spawnMainOrExit(t *testing.T, command string, vars map[string]string) (p *mainProcess, started bool) {
	t.Helper()
	p = execMain(t, command, vars)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		select {
		case <-p.exited:
			t.Logf("refused at start (%v): %s", p.err, logLines(p.logs, "screenpopd "+command))
			return p, false
		default:
		}
		if strings.Contains(p.logs.String(), "screenpopd started") {
			return p, true
		}
		if time.Now().After(deadline) {
			t.Fatalf("screenpopd %s neither started nor exited in 30s:\n%s", command, p.logs.String())
		}
	}
}

// Ctrl-C while `screenpopd demo` starts (its emulators up, the daemon
// opening its store) is a stop too: exit 0 and "screenpopd stopped", not
// an error about NATS.
func TestDemo_StopDuringStartUpIsACleanStop(t *testing.T) {
	vars := testEnv(t)
	vars["SCREENPOP_LISTEN"], vars["SCREENPOP_ADMIN_LISTEN"], vars["SCREENPOP_NATS_LISTEN"] = freeLoopbackAddr(t), freeLoopbackAddr(t), freeLoopbackAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	stderr := &syncbuf.Buffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"demo"}, env(vars), &syncbuf.Buffer{}, stderr) }()
	var code int
	select {
	case code = <-done:
	case <-time.After(shutdownBudget):
		t.Fatalf("demo did not return within %v of the stop:\n%s", shutdownBudget, stderr.String())
	}
	if out := stderr.String(); code != 0 || strings.Contains(out, "context canceled") || !strings.Contains(out, "screenpopd stopped") {
		t.Errorf("a stop while the demo started exited %d (want 0, with \"screenpopd stopped\" and no error); log:\n%s", code, out)
	}
}
