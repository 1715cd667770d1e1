package main

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/screenpop/screenpop/notifications/notificationstest"
	"github.com/screenpop/screenpop/push"
)

// freeLoopbackAddr returns a loopback address free now, so that a daemon
// started again takes the same agent listener (a page's URL stays). The
// port is below the kernel's ephemeral range: one from that range could be
// taken, while the daemon is down, by another test's listener on port 0 or
// by the local end of its outgoing connection (bind: address already in
// use, seen with four tests in parallel), and none is handed out twice.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				lo = n
			}
		}
	}
	if lo < 12000 {
		lo = 65536 // no room below the range: take what the kernel gives
	}
	fixedPorts.Lock()
	defer fixedPorts.Unlock()
	for range 1000 {
		port := 0
		if lo <= 65535 {
			port = 10000 + rand.IntN(lo-10000)
			if fixedPorts.given[port] {
				continue
			}
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		port = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		fixedPorts.given[port] = true
		return "127.0.0.1:" + strconv.Itoa(port)
	}
	t.Fatal("no free loopback port below the ephemeral range in 1000 tries")
	return ""
}

var fixedPorts = struct {
	sync.Mutex
	given map[int]bool
}{given: map[int]bool{}}

// awaitExactlyOnce waits for one pop of each conversation on its page and
// then for each page's sentinel call: no conversation pops twice.
func awaitExactlyOnce(t *testing.T, d *Demo, pages map[string]*agentPage, calls map[string][]*notificationstest.Conversation) {
	t.Helper()
	for agent, cs := range calls {
		p := pages[agent]
		for _, c := range cs {
			if p.waitPop(c.ID(), 30*time.Second).IsZero() {
				t.Errorf("agent %s: no pop for %s", agent, c.ID())
			}
		}
		s := alertCall(d, agent)
		if p.waitPop(s.ID(), 20*time.Second).IsZero() {
			t.Errorf("agent %s: no pop for the sentinel call", agent)
		}
		for _, c := range cs {
			if n, _ := p.pops(c.ID()); n != 1 {
				t.Errorf("agent %s: %d pops for %s, want 1", agent, n, c.ID())
			}
		}
	}
}

// SIGTERM while lookups are in flight (Dataverse slow): the pops in flight
// reach the agents once, live or by replay after the restart, and a call
// that alerts while the daemon is down pops once after it.
func TestDaemon_RestartSIGTERMWhileLookupsInFlight(t *testing.T) {
	d, cfg, logs := demoEmulators(t, testEnv(t))
	cfg.Listen = freeLoopbackAddr(t)
	a0, a1 := demoAgents[0].ID, demoAgents[1].ID

	m1, stop1 := runDaemon(t, cfg, logs)
	pages := map[string]*agentPage{
		a0: openAgentPage(t, m1.AgentURL(), d.Genesys.AgentToken(a0)),
		a1: openAgentPage(t, m1.AgentURL(), d.Genesys.AgentToken(a1)),
	}
	waitFor(t, 10*time.Second, "pages connected", func() bool { return m1.Push.Status().(push.Status).Agents == 2 })
	d.Dataverse.SetLatency(1500 * time.Millisecond)
	d.Dataverse.ResetLog()
	c1 := alertCall(d, a0)
	waitFor(t, 10*time.Second, "lookup in flight", func() bool { return d.Dataverse.MaxConcurrent() > 0 })
	c2 := alertCall(d, a1)
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	stop1()
	t.Logf("stopped in %v", time.Since(start))
	d.Dataverse.SetLatency(0)
	c3 := alertCall(d, a0)

	runDaemon(t, cfg, logs)
	awaitExactlyOnce(t, d, pages, map[string][]*notificationstest.Conversation{a0: {c1, c3}, a1: {c2}})
	if t.Failed() {
		t.Logf("logs:\n%s", logLines(logs, `"message":"pop"`, `"level":"warn"`, `"level":"error"`, "no pop"))
	}
}

// runVars is the environment of `screenpopd run` pointed at d's emulators,
// with the agent listener on listen and the store in dataDir.
func runVars(d *Demo, listen, dataDir string) map[string]string {
	gc, dc := d.Genesys.Config(), d.Dataverse.Config()
	var ids []string
	for _, a := range demoAgents {
		ids = append(ids, a.ID)
	}
	return map[string]string{
		"GENESYS_API_URL": d.Genesys.URL(), "GENESYS_CLIENT_ID": gc.ClientID, "GENESYS_CLIENT_SECRET": gc.ClientSecret,
		"GENESYS_AGENTS": strings.Join(ids, ","),
		"DATAVERSE_URL":  d.Dataverse.URL(), "DATAVERSE_TOKEN_URL": d.Dataverse.TokenURL(), "DATAVERSE_TENANT_ID": dc.TenantID,
		"DATAVERSE_CLIENT_ID": dc.ClientID, "DATAVERSE_CLIENT_SECRET": dc.ClientSecret,
		"DATAVERSE_APP_ID": "00000000-0000-4000-8000-0000000000de",
		"SCREENPOP_LISTEN": listen, "SCREENPOP_ADMIN_LISTEN": "127.0.0.1:0", "SCREENPOP_NATS_LISTEN": "off",
		"SCREENPOP_DATA_DIR": dataDir, "LOG_LEVEL": "debug", "LOG_FORMAT": "json",
	}
}

// A crash (SIGKILL) while a pop's lookup is in flight (Dataverse slow):
// the event, delivered and not acknowledged, comes back to the restarted
// daemon, which pops it once.
func TestDaemon_RestartAfterKillWhileLookupInFlight(t *testing.T) {
	t.Parallel() // waits most of its time: see TestMain
	for _, external := range []bool{false, true} {
		t.Run(map[bool]string{false: "EmbeddedNATS", true: "ExternalNATS"}[external], func(t *testing.T) {
			d, _, _ := demoEmulators(t, testEnv(t))
			vars := runVars(d, freeLoopbackAddr(t), t.TempDir())
			if external {
				vars["NATS_URL"] = startExternalNATS(t).url()
			}
			a0 := demoAgents[0].ID
			p1 := startMain(t, "run", vars)
			page := openAgentPage(t, "http://"+vars["SCREENPOP_LISTEN"], d.Genesys.AgentToken(a0))
			warm := alertCall(d, a0)
			if page.waitPop(warm.ID(), 10*time.Second).IsZero() {
				t.Fatal("no first pop")
			}
			d.Dataverse.SetLatency(1500 * time.Millisecond)
			d.Dataverse.ResetLog()
			c1 := alertCall(d, a0)
			waitFor(t, 10*time.Second, "lookup in flight", func() bool { return d.Dataverse.MaxConcurrent() > 0 })
			p1.kill()
			d.Dataverse.SetLatency(0)
			c2 := alertCall(d, a0) // alerts while the daemon is down
			p2 := startMain(t, "run", vars)
			awaitExactlyOnce(t, d, map[string]*agentPage{a0: page}, map[string][]*notificationstest.Conversation{a0: {warm, c1, c2}})
			if t.Failed() {
				t.Logf("first daemon:\n%s\nsecond daemon:\n%s", logLines(p1.logs, `"message":"pop"`, `"level":"warn"`, `"level":"error"`, "no pop"),
					logLines(p2.logs, `"message":"pop"`, `"level":"warn"`, `"level":"error"`, "no pop"))
			}
		})
	}
}

// natsDenying is an external NATS whose user screenpop may publish
// everywhere but on deny; set changes deny on the running server.
func natsDenying(t *testing.T) (url string, set func(deny ...string)) {
	t.Helper()
	user := func(deny ...string) []*server.User {
		return []*server.User{{Username: "screenpop", Password: "pw", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: deny}}}}
	}
	o := &server.Options{JetStream: true, Users: user()}
	ns := startNATSWith(t, o)
	port := ns.Addr().(*net.TCPAddr).Port
	return natsUserURL(ns), func(deny ...string) {
		n := *o
		n.Port = port
		n.Users = user(deny...)
		if err := ns.ReloadOptions(&n); err != nil {
			t.Fatal(err)
		}
	}
}

// A crash after the pop marker was written and before the pop was
// stored (its publish unanswered), and a crash while a conversation
// event waits in the event publisher (its publish unanswered): after the
// restart each call pops once.
func TestDaemon_RestartAfterKillBeforePublish(t *testing.T) {
	t.Parallel() // waits most of its time: see TestMain
	for _, tc := range []struct{ name, deny, waitLog string }{
		{"PopMarkedNotPublished", "screenpop.pops.>", `Publish to \"screenpop.pops.`},
		{"EventNotPublished", "screenpop.events.>", `Publish to \"screenpop.events.voice.alerting.`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _, _ := demoEmulators(t, testEnv(t))
			vars := runVars(d, freeLoopbackAddr(t), t.TempDir())
			url, deny := natsDenying(t)
			vars["NATS_URL"] = url
			a0 := demoAgents[0].ID
			p1 := startMain(t, "run", vars)
			page := openAgentPage(t, "http://"+vars["SCREENPOP_LISTEN"], d.Genesys.AgentToken(a0))
			warm := alertCall(d, a0)
			if page.waitPop(warm.ID(), 10*time.Second).IsZero() {
				t.Fatal("no first pop")
			}
			deny(tc.deny)
			c1 := alertCall(d, a0)
			waitFor(t, 10*time.Second, "the publish refused", func() bool { return strings.Contains(p1.logs.String(), tc.waitLog) })
			p1.kill()
			deny()
			p2 := startMain(t, "run", vars)
			awaitExactlyOnce(t, d, map[string]*agentPage{a0: page}, map[string][]*notificationstest.Conversation{a0: {warm, c1}})
			if t.Failed() {
				t.Logf("first daemon:\n%s\nsecond daemon:\n%s", logLines(p1.logs, `"message":"pop"`, `"level":"warn"`, `"level":"error"`, "no pop"),
					logLines(p2.logs, `"message":"pop"`, `"level":"warn"`, `"level":"error"`, "no pop"))
			}
		})
	}
}

// A burst of calls for every agent, the daemon stopped in the middle of
// it (SIGTERM, or SIGKILL), started again: every call pops once.
func TestDaemon_RestartMidBurst(t *testing.T) {
	t.Parallel() // waits most of its time: see TestMain
	for _, kill := range []bool{false, true} {
		t.Run(map[bool]string{false: "SIGTERM", true: "SIGKILL"}[kill], func(t *testing.T) {
			d, _, _ := demoEmulators(t, testEnv(t))
			vars := runVars(d, freeLoopbackAddr(t), t.TempDir())
			p1 := startMain(t, "run", vars)
			pages := map[string]*agentPage{}
			for _, a := range demoAgents {
				pages[a.ID] = openAgentPage(t, "http://"+vars["SCREENPOP_LISTEN"], d.Genesys.AgentToken(a.ID))
			}
			d.Dataverse.SetLatency(300 * time.Millisecond)
			calls := map[string][]*notificationstest.Conversation{}
			burst := func(n int) {
				for range n {
					for _, a := range demoAgents {
						calls[a.ID] = append(calls[a.ID], alertCall(d, a.ID))
					}
				}
			}
			burst(5)
			time.Sleep(400 * time.Millisecond)
			burst(5)
			if kill {
				p1.kill()
			} else {
				start := time.Now()
				_ = p1.cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-p1.exited:
				case <-time.After(15 * time.Second):
					t.Fatal("no exit within 15s of SIGTERM")
				}
				t.Logf("SIGTERM: exited in %v: %v", time.Since(start), p1.cmd.ProcessState)
			}
			burst(2) // while it is down
			d.Dataverse.SetLatency(0)
			p2 := startMain(t, "run", vars)
			awaitExactlyOnce(t, d, pages, calls)
			if t.Failed() {
				t.Logf("first daemon:\n%s\nsecond daemon:\n%s", logLines(p1.logs, `"message":"pop"`, `"level":"warn"`, `"level":"error"`, "no pop", "stopped"),
					logLines(p2.logs, `"message":"pop"`, `"level":"warn"`, `"level":"error"`, "no pop"))
			}
		})
	}
}

// SIGTERM while JetStream does not answer: a pop marked and not stored
// (kept in memory, lost at the stop), and an event left in the event
// publisher (dropped at the stop). JetStream answers again and the daemon
// is started again at once: each call pops once.
func TestDaemon_RestartSIGTERMWhileJetStreamDoesNotAnswer(t *testing.T) {
	t.Parallel() // waits most of its time: see TestMain
	d, cfg, logs := demoEmulators(t, testEnv(t))
	cfg.Listen = freeLoopbackAddr(t)
	url, deny := natsDenying(t)
	cfg.NatsURL = url
	a0, a1 := demoAgents[0].ID, demoAgents[1].ID
	m1, stop1 := runDaemon(t, cfg, logs)
	pages := map[string]*agentPage{
		a0: openAgentPage(t, m1.AgentURL(), d.Genesys.AgentToken(a0)),
		a1: openAgentPage(t, m1.AgentURL(), d.Genesys.AgentToken(a1)),
	}
	warm := alertCall(d, a0)
	if pages[a0].waitPop(warm.ID(), 10*time.Second).IsZero() {
		t.Fatal("no first pop")
	}
	// The reload waits until the resolver is in the lookup, past its reads
	// (a reload while the server answers a direct get races inside it).
	d.Dataverse.SetLatency(time.Second)
	d.Dataverse.ResetLog()
	c1 := alertCall(d, a0)
	waitFor(t, 10*time.Second, "the lookup in flight", func() bool { return d.Dataverse.MaxConcurrent() > 0 })
	deny("screenpop.>", "$JS.API.DIRECT.GET.>", "$JS.API.STREAM.MSG.GET.>")
	waitFor(t, 10*time.Second, "the pop's publish refused", func() bool {
		return strings.Contains(logs.String(), `Publish to \"screenpop.pops.`+a0)
	})
	c2 := alertCall(d, a1)
	waitFor(t, 10*time.Second, "the event's publish refused", func() bool {
		return strings.Contains(logs.String(), `Publish to \"screenpop.events.voice.alerting.`+a1)
	})
	start := time.Now()
	stop1()
	t.Logf("stopped in %v", time.Since(start))
	deny()
	d.Dataverse.SetLatency(0)
	runDaemon(t, cfg, logs)
	awaitExactlyOnce(t, d, pages, map[string][]*notificationstest.Conversation{a0: {warm, c1}, a1: {c2}})
}
