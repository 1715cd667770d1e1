//go:build linux

package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/bridge/bus/bustest"
	"github.com/screenpop/screenpop/internal/syncbuf"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// NATS_CREDS is read again at every reconnect to an external NATS (so a
// renewed file is picked up). On a hung file system that read never
// returns, and nats.go makes it holding its connection's lock: every
// publish (every event, every pop, for every agent), /readyz and the close
// at the stop wait on it for good, though NATS itself is up and the
// credentials read at the last connect are still good.
func TestRun_HungCredsFileAtReconnectStopsNoPop(t *testing.T) {
	d, _, _ := demoEmulators(t, testEnv(t))
	ns := startNATS(t, true)
	proxy := bustest.StartProxy(t, ns.Addr().String(), nil, nil)
	dir := t.TempDir()
	creds := filepath.Join(dir, "screenpop.creds")
	good := natsCredsFile(t)
	if err := os.WriteFile(creds, good, 0o600); err != nil {
		t.Fatal(err)
	}
	vars := runVars(d, freeLoopbackAddr(t), t.TempDir())
	vars["LOG_LEVEL"] = "info"
	vars["NATS_URL"], vars["NATS_CREDS"] = proxy.URL(), creds
	stderr := &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"run"}, env(vars), &syncbuf.Buffer{}, stderr) }()
	waitFor(t, 30*time.Second, "screenpopd ready", func() bool { return strings.Contains(stderr.String(), "screenpopd ready") })

	agent := demoAgents[0].ID
	page := openAgentPage(t, "http://"+vars["SCREENPOP_LISTEN"], d.Genesys.AgentToken(agent))
	warm := alertCall(d, agent)
	if page.waitPop(warm.ID(), 10*time.Second).IsZero() {
		t.Fatal("no pop before the creds file hangs")
	}
	warm.Disconnect()

	// The file system holding NATS_CREDS hangs; then the connection to
	// NATS drops (a node restarted, a load balancer's idle timeout).
	waitReader, release := bustest.HangFile(t, creds, good)
	proxy.Cut()
	waitFor(t, 10*time.Second, "the reconnect reading NATS_CREDS", waitReader)

	// NATS is up and the credentials read at the last connect are still
	// good: calls must still pop.
	for i := range 3 {
		call := alertCall(d, agent)
		if page.waitPop(call.ID(), 15*time.Second).IsZero() {
			t.Errorf("call %d: no pop within 15 s while NATS_CREDS hangs; log:\n%s", i+1, logLines(stderr, "nats", `"level":"warn"`, `"level":"error"`, `"message":"pop"`))
			break
		}
		call.Disconnect()
	}

	stop := time.Now()
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("run exited %d", code)
		}
		t.Logf("stopped in %v", time.Since(stop).Round(time.Millisecond))
	case <-time.After(shutdownBudget + 2*time.Second):
		release()
		<-done
		t.Fatalf("run did not return within %v of the stop while NATS_CREDS hung", shutdownBudget+2*time.Second)
	}
}

// systemd that does not read its notification socket (PID 1 busy: a
// daemon-reload of many units, a hung mount it waits on) fills the
// socket's queue. A notification sent then waits until systemd reads
// again: READY=1 at start-up and STOPPING=1 at the stop are sent from the
// goroutine that stops the daemon, so SIGTERM does not stop it within its
// 10 s (nor at all, until systemd reads).
func TestMain_SystemdNotifySocketNotReadStopsInTime(t *testing.T) {
	sock, _ := notifySocket(t)
	// Its queue full: a write now waits for a read.
	w, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; ; n++ {
		w.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := w.Write([]byte("STATUS=filler")); err != nil {
			t.Logf("queue full after %d datagrams", n)
			break
		}
	}
	w.Close()

	vars := newCheckRig(t).vars
	vars["SCREENPOP_NATS_LISTEN"] = "off"
	vars["SCREENPOP_DATA_DIR"] = t.TempDir()
	vars["LOG_LEVEL"] = "info"
	vars["NOTIFY_SOCKET"] = sock
	p := startMain(t, "run", vars)
	stop := time.Now()
	p.signal(t, syscall.SIGTERM)
	select {
	case <-p.exited:
		t.Logf("stopped in %v (%v)", time.Since(stop).Round(time.Millisecond), p.err)
		if p.err != nil {
			t.Errorf("exit: %v", p.err)
		}
	case <-time.After(shutdownBudget + 2*time.Second):
		t.Fatalf("still running %v after SIGTERM while systemd does not read NOTIFY_SOCKET; log:\n%s", shutdownBudget+2*time.Second, logLines(p.logs, "stopp", `"level":"error"`, `"level":"warn"`))
	}
}

// GENESYS_AGENTS_FILE on a file system that hangs: the watcher's read of
// it never returns. The pops go on (the agents watched stay watched), but
// the stop must not wait on the read: the Genesys input's stage never
// ended, and every stop was cut short at the budget, exit 1 ("the genesys
// input had not stopped") with the later stages (the publisher's flush,
// the pops in flight) given no time to finish.
func TestDaemon_HungAgentsFileDoesNotHoldTheStop(t *testing.T) {
	cfg, g, _, ids := emulatedConfig(t, 2, 720, notificationstest.Config{}, nil)
	cfg.GenesysAgents = nil
	file := filepath.Join(t.TempDir(), "agents.txt")
	writeAgentsFile(t, file, ids...)
	cfg.GenesysAgentsFile, cfg.agentsFilePoll = file, 50*time.Millisecond
	logs := &syncbuf.Buffer{}
	m, stop := runDaemonLog(t, cfg, zerolog.New(logs).Level(zerolog.InfoLevel))
	r := connectAgents(t, m, g, ids)

	content, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	waitReader, release := bustest.HangFile(t, file, content)
	waitFor(t, 10*time.Second, "the watcher reading GENESYS_AGENTS_FILE", waitReader)
	r.await(t, g.InboundCall(ids[1], "+13175557101", notificationstest.Options{}).Alert().ID())

	begun := time.Now()
	stop() // fails the test when Run returns an error or takes 15 s
	t.Logf("stopped in %v", time.Since(begun).Round(time.Millisecond))
	if t.Failed() {
		t.Logf("log:\n%s", logLines(logs, "stop", `"level":"error"`))
	}
	release()
}

// check on a host whose NATS_CREDS mount hangs: it must end, with the
// file named on its FAIL line, rather than hang (it read the file with
// nats.go's own option, unbounded, as run did before).
func TestCheck_HungNATSCredsFileIsAFailNotAHang(t *testing.T) {
	ns := startNATS(t, true)
	r := newCheckRig(t)
	creds := filepath.Join(t.TempDir(), "screenpop.creds")
	good := natsCredsFile(t)
	if err := os.WriteFile(creds, good, 0o600); err != nil {
		t.Fatal(err)
	}
	bustest.HangFile(t, creds, good)
	r.vars["NATS_URL"], r.vars["NATS_CREDS"] = ns.ClientURL(), creds
	type result struct {
		code int
		out  string
	}
	done := make(chan result, 1)
	go func() {
		code, out := r.check(t)
		done <- result{code, out}
	}()
	select {
	case res := <-done:
		if res.code != 1 {
			t.Errorf("exit %d, want 1", res.code)
		}
		wantLine(t, res.out, "FAIL nats connect:", creds, "no answer")
	case <-time.After(60 * time.Second):
		t.Fatal("check still running 60 s into a hung NATS_CREDS")
	}
}
