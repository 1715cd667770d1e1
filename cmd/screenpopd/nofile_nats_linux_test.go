package main

import (
	"encoding/json"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/screenpop/screenpop/internal/testenv"
)

// Out of descriptors with a local service connecting to the embedded NATS
// server (SCREENPOP_NATS_LISTEN, on by default: the consumers of the
// events reconnect to it): its accept fails like the agent listener's.
// On-call is told as for the agent and admin listeners, once every 10 s
// with the limit and LimitNOFILE, not by nats-server's "Temporary Client
// Accept Error ... sleeping 1000ms" at error level for every retry (about
// one a second for as long as it lasts); and once the limit is raised the
// service connects again.
func TestDaemon_NATSListenerOutOfFileDescriptors(t *testing.T) {
	t.Parallel() // the daemon is a process of its own, its limit lowered alone
	if _, err := exec.LookPath("prlimit"); err != nil {
		testenv.Missing(t, "util-linux's prlimit (apt-get install -y util-linux)")
	}
	d, _, _ := demoEmulators(t, testEnv(t))
	vars := runVars(d, freeLoopbackAddr(t), t.TempDir())
	vars["LOG_LEVEL"] = "info"
	natsAddr := freeLoopbackAddr(t)
	vars["SCREENPOP_NATS_LISTEN"] = natsAddr
	p := startMain(t, "run", vars)
	pid := p.cmd.Process.Pid

	setNoFile(t, pid, openFDs(t, pid)-10, 4096) // below what it holds: no new descriptor at all
	// A local consumer of the events connecting (as its client library
	// does, again and again): the connection waits in the accept queue.
	c, err := net.DialTimeout("tcp", natsAddr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(6 * time.Second)

	var exhausted []map[string]any
	for _, l := range strings.Split(p.logs.String(), "\n") {
		if !strings.Contains(l, "too many open files") {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("not a JSON line: %q", l)
			continue
		}
		exhausted = append(exhausted, m)
	}
	if len(exhausted) == 0 {
		t.Fatalf("no line says the NATS listener's accepts fail for too many open files")
	}
	if len(exhausted) > 1 {
		t.Errorf("%d lines in 6 s for the NATS listener out of descriptors, want 1 (once every 10 s, as the agent and admin listeners), e.g.:\n%s",
			len(exhausted), strings.Join(first(logLinesOf(exhausted), 3), "\n"))
	}
	told := false
	for _, m := range exhausted {
		s, _ := json.Marshal(m)
		told = told || strings.Contains(string(s), "LimitNOFILE")
	}
	if !told {
		t.Errorf("no line about the NATS listener's failed accepts names LimitNOFILE: on-call is not told what to raise")
	}

	// Recovery: the limit raised, a local consumer connects.
	setNoFile(t, pid, 4096, 4096)
	nc, err := nats.Connect("nats://"+natsAddr, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("after the limit was raised, a NATS client could not connect: %v", err)
	}
	nc.Close()
}

func logLinesOf(ms []map[string]any) []string {
	var out []string
	for _, m := range ms {
		b, _ := json.Marshal(m)
		out = append(out, string(b))
	}
	return out
}

// The daemon out of descriptors for a couple of minutes (the limit
// lowered on the running process, or something else took them): the
// built-in NATS store's periodic sync cannot open its files, nats-server
// keeps that as the stream's write error, and screenpopd's store watcher
// reports it. On-call must be told what ran out (the open-file limit,
// LimitNOFILE), not sent to free disk space or fix a mount that are fine;
// and once the limit is raised the store writes again and calls pop.
// Slow (80-105 s, waiting): nats-server closes a block file idle for a
// while and fails when it opens it again at a later write or sync. The
// daemon is a process of its own, its limit lowered alone: parallel.
func TestDaemon_StoreOutOfFileDescriptorsIsNotADiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 80-105 s for the store to open a block file again")
	}
	t.Parallel()
	d, p, base, _ := startFDDaemon(t)
	pid := p.cmd.Process.Pid
	a1 := demoAgents[1].ID
	setNoFile(t, pid, openFDs(t, pid)-10, 4096) // below what it holds: no new descriptor at all

	var line map[string]any
	waitFor(t, 4*time.Minute, "the store watcher's line", func() bool {
		for _, l := range strings.Split(p.logs.String(), "\n") {
			if strings.Contains(l, "the built-in NATS store cannot") && strings.Contains(l, `"level":"error"`) {
				if err := json.Unmarshal([]byte(l), &line); err != nil {
					t.Fatalf("not a JSON line: %q", l)
				}
				return true
			}
		}
		return false
	})
	b, _ := json.Marshal(line)
	t.Logf("store line: %s", b)
	if msg, _ := line["message"].(string); strings.Contains(msg, "disk full") || strings.Contains(msg, "free disk space") || !strings.Contains(string(b), "LimitNOFILE") {
		t.Errorf("the store failed for too many open files, but on-call is told %q (detail %q): want the open-file limit and LimitNOFILE, not a full disk", line["message"], line["detail"])
	}

	setNoFile(t, pid, 4096, 4096)
	waitFor(t, 30*time.Second, "the store writing again", func() bool {
		return strings.Contains(p.logs.String(), "the built-in NATS store writes again")
	})
	page := openAgentPage(t, base, d.Genesys.AgentToken(a1))
	if page.waitPop(alertCall(d, a1).ID(), 20*time.Second).IsZero() {
		t.Errorf("after the limit was raised, no pop")
	}
}
