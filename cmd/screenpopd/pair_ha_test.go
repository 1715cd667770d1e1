package main

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// lbProxy is a layer-4 load balancer on loopback in front of screenpopd
// instances' agent listeners: each connection goes to the first backend in
// its order that accepts it, and is cut when that backend's side ends (an
// instance stopped or killed), as a TCP load balancer does.
type lbProxy struct {
	ln       net.Listener
	backends []string

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// startLB starts an lbProxy over backends (host:port, in order of
// preference) and returns its base URL.
func startLB(t *testing.T, backends ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &lbProxy{ln: ln, backends: backends, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return "http://" + ln.Addr().String()
}

func (p *lbProxy) track(c net.Conn, on bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		if p.conns == nil {
			return false
		}
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
	return true
}

func (p *lbProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer c.Close()
			var up net.Conn
			for _, b := range p.backends {
				if up, err = net.DialTimeout("tcp", b, time.Second); err == nil {
					break
				}
			}
			if up == nil {
				return
			}
			defer up.Close()
			p.track(c, true)
			p.track(up, true)
			defer p.track(c, false)
			defer p.track(up, false)
			done := make(chan struct{}, 2)
			go func() { io.Copy(up, c); done <- struct{}{} }()
			go func() { io.Copy(c, up); done <- struct{}{} }()
			<-done
			c.Close()
			up.Close()
			<-done
		}()
	}
}

// haPair is two `screenpopd run` processes on one external NATS, each
// with its own Genesys OAuth client, both watching every demo agent (the
// redundant pair of docs/architecture.md, "Several instances on a NATS
// cluster"), one Dataverse, and two tabs per agent: one behind a load
// balancer that prefers A, one behind one that prefers B.
type haPair struct {
	d            *Demo
	varsA, varsB map[string]string
	a, b         *mainProcess
	tabs         map[string][]*agentPage // agent -> its tabs

	natsURL string

	mu    sync.Mutex
	owner map[string]string // conversation -> the agent it was offered to
}

// call alerts a call for agent and records whose it is.
func (h *haPair) call(agent string) *notificationstest.Conversation {
	c := alertCall(h.d, agent)
	h.mu.Lock()
	h.owner[c.ID()] = agent
	h.mu.Unlock()
	return c
}

func newHAPair(t *testing.T) *haPair {
	t.Helper()
	d, _, _ := demoEmulators(t, testEnv(t))
	d.Genesys.AddClient("screenpop-client-b", "screenpop-secret-b")
	x := startExternalNATS(t)
	h := &haPair{d: d, tabs: map[string][]*agentPage{}, owner: map[string]string{}}
	h.varsA = runVars(d, freeLoopbackAddr(t), t.TempDir())
	h.varsB = runVars(d, freeLoopbackAddr(t), t.TempDir())
	h.varsA["NATS_URL"], h.varsB["NATS_URL"] = x.url(), x.url()
	h.natsURL = x.url()
	h.varsB["GENESYS_CLIENT_ID"], h.varsB["GENESYS_CLIENT_SECRET"] = "screenpop-client-b", "screenpop-secret-b"
	h.a = startMain(t, "run", h.varsA)
	h.b = startMain(t, "run", h.varsB)
	// Both instances hear every agent: two connected channels, each with
	// every agent's topic.
	waitFor(t, 20*time.Second, "both instances subscribed", func() bool {
		n := 0
		for _, c := range d.Genesys.Channels() {
			if c.Connected && c.Topics == len(demoAgents) {
				n++
			}
		}
		return n == 2
	})
	lbAB := startLB(t, h.varsA["SCREENPOP_LISTEN"], h.varsB["SCREENPOP_LISTEN"])
	lbBA := startLB(t, h.varsB["SCREENPOP_LISTEN"], h.varsA["SCREENPOP_LISTEN"])
	for _, a := range demoAgents {
		tok := d.Genesys.AgentToken(a.ID)
		h.tabs[a.ID] = []*agentPage{openAgentPage(t, lbAB, tok), openAgentPage(t, lbBA, tok)}
	}
	// Every tab connected: a warm-up call per agent reaches both its tabs.
	for _, a := range demoAgents {
		c := h.call(a.ID)
		for i, p := range h.tabs[a.ID] {
			if p.waitPop(c.ID(), 20*time.Second).IsZero() {
				t.Fatalf("agent %s tab %d: no warm-up pop", a.ID, i)
			}
		}
	}
	return h
}

// burst alerts n calls for every agent, recorded in calls.
func (h *haPair) burst(n int, calls map[string][]*notificationstest.Conversation) {
	for range n {
		for _, a := range demoAgents {
			calls[a.ID] = append(calls[a.ID], h.call(a.ID))
		}
	}
}

// check waits for each call's pop on each of its agent's tabs, then for a
// sentinel call per agent, and reports every call that did not reach a tab
// exactly once, every pop a tab got of another agent's call, and every call
// with more than one pop line over the instances' runs (none is possible
// when the instance that popped it was killed before writing it).
func (h *haPair) check(t *testing.T, calls map[string][]*notificationstest.Conversation, logs ...*mainProcess) {
	t.Helper()
	for agent, cs := range calls {
		for i, p := range h.tabs[agent] {
			for _, c := range cs {
				if p.waitPop(c.ID(), 30*time.Second).IsZero() {
					t.Errorf("agent %s tab %d: no pop for %s", agent, i, c.ID())
				}
			}
		}
	}
	for agent := range calls {
		s := h.call(agent)
		for i, p := range h.tabs[agent] {
			if p.waitPop(s.ID(), 20*time.Second).IsZero() {
				t.Errorf("agent %s tab %d: no pop for the sentinel call", agent, i)
			}
		}
	}
	h.mu.Lock()
	for agent, tabs := range h.tabs {
		for i, p := range tabs {
			p.mu.Lock()
			for _, g := range p.got {
				if o := h.owner[g.ConversationID]; o != agent {
					t.Errorf("agent %s tab %d: pop of %s, a call of %q", agent, i, g.ConversationID, o)
				}
			}
			p.mu.Unlock()
		}
	}
	h.mu.Unlock()
	var all strings.Builder
	for _, p := range logs {
		all.WriteString(p.logs.String())
	}
	for agent, cs := range calls {
		for _, c := range cs {
			for i, p := range h.tabs[agent] {
				if n, _ := p.pops(c.ID()); n != 1 {
					t.Errorf("agent %s tab %d: %d pops for %s, want 1", agent, i, n, c.ID())
				}
			}
			n := 0
			for _, l := range strings.Split(all.String(), "\n") {
				if strings.Contains(l, `"message":"pop"`) && strings.Contains(l, c.ID()) {
					n++
				}
			}
			if n > 1 {
				t.Errorf("agent %s: %d pop lines for %s over both instances, want 1", agent, n, c.ID())
			}
		}
	}
}

// An HA pair under load: both instances hear every call (the same Genesys
// notification reaches both), and one is stopped (SIGTERM) or killed in
// the middle of a burst while Dataverse is slow; its tabs reconnect to the
// other through the load balancer. Every call pops once, on each of the
// agent's tabs, and has at most one pop line (an instance killed between
// a pop's publish and its line loses the line); calls that alert while it is down,
// and after it is back, too.
func TestDaemon_HAPairStopMidBurst(t *testing.T) {
	t.Parallel() // waits most of its time: see TestMain
	for _, kill := range []bool{false, true} {
		t.Run(map[bool]string{false: "SIGTERM", true: "SIGKILL"}[kill], func(t *testing.T) {
			h := newHAPair(t)
			const n = 5
			h.d.Dataverse.SetLatency(300 * time.Millisecond)
			calls := map[string][]*notificationstest.Conversation{}
			h.burst(n, calls)
			time.Sleep(400 * time.Millisecond)
			h.burst(n, calls)
			stopProc(t, h.a, kill)
			h.burst(2, calls) // while A is down: B alone hears them
			h.d.Dataverse.SetLatency(0)
			a1 := h.a
			h.a = startMain(t, "run", h.varsA)
			h.burst(2, calls)
			h.check(t, calls, a1, h.a, h.b)
			// Both instances published every event: JetStream kept one of
			// each (the restart is well inside the duplicate window), and
			// one pop per leg.
			for _, f := range []string{"screenpop.events.>", "screenpop.pops.>"} {
				for id, n := range storedIDs(t, h.natsURL, f) {
					if n > 1 {
						t.Errorf("%s stored %d times", id, n)
					}
				}
			}
			if t.Failed() {
				sel := []string{`"message":"pop"`, `"level":"warn"`, `"level":"error"`, "no pop", "stopped"}
				t.Logf("A:\n%s\nA restarted:\n%s\nB:\n%s", logLines(a1.logs, sel...), logLines(h.a.logs, sel...), logLines(h.b.logs, sel...))
			}
		})
	}
}

// stopProc ends p with SIGTERM, or SIGKILL when kill is set, and waits.
func stopProc(t *testing.T, p *mainProcess, kill bool) {
	t.Helper()
	if kill {
		p.kill()
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("no exit within 15s of SIGTERM")
	}
}

// A rolling restart of the pair under load: A stopped and started again,
// then B; every tab ends up on A while B is down, and back. Every call
// pops once on each of its agent's tabs.
func TestDaemon_HAPairRollingRestart(t *testing.T) {
	t.Parallel() // waits most of its time: see TestMain
	for _, kill := range []bool{false, true} {
		t.Run(map[bool]string{false: "SIGTERM", true: "SIGKILL"}[kill], func(t *testing.T) {
			h := newHAPair(t)
			h.d.Dataverse.SetLatency(500 * time.Millisecond)
			calls := map[string][]*notificationstest.Conversation{}
			procs := []*mainProcess{h.a, h.b}
			h.burst(5, calls)
			stopProc(t, h.a, kill)
			h.burst(3, calls)
			h.a = startMain(t, "run", h.varsA)
			procs = append(procs, h.a)
			h.burst(5, calls)
			stopProc(t, h.b, kill)
			h.burst(3, calls)
			h.b = startMain(t, "run", h.varsB)
			procs = append(procs, h.b)
			h.burst(5, calls)
			h.d.Dataverse.SetLatency(0)
			h.check(t, calls, procs...)
			if t.Failed() {
				sel := []string{`"message":"pop"`, `"level":"warn"`, `"level":"error"`, "no pop", "stopped", "agent connected"}
				for i, p := range procs {
					t.Logf("proc %d:\n%s", i, logLines(p.logs, sel...))
				}
			}
		})
	}
}

// storedIDs counts the stored messages on filter by Nats-Msg-Id.
func storedIDs(t *testing.T, url, filter string) map[string]int {
	t.Helper()
	js := jetStreamAt(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, "SCREENPOP", jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int{}
	for n := info.NumPending; n > 0; n-- {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		ids[msg.Headers().Get(jetstream.MsgIDHeader)]++
	}
	return ids
}
