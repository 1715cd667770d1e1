package notifications_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// legStates records, per (conversation, agent), the states of the agent's
// leg in every snapshot handed on, and whether it came from a
// reconciliation.
type legStates struct {
	mu     sync.Mutex
	states map[[2]string][]legState
	done   chan struct{}
}

type legState struct {
	state      string
	reconciled bool
}

func recordStates(out <-chan bridge.Snapshot) *legStates {
	l := &legStates{states: map[[2]string][]legState{}, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for s := range out {
			conv := gjson.GetBytes(s.Body, "id").Str
			// The agent's newest participant is its leg.
			state := ""
			gjson.GetBytes(s.Body, "participants").ForEach(func(_, p gjson.Result) bool {
				if p.Get("userId").Str == string(s.Agent) {
					if st := p.Get("calls.0.state").Str; st != "" {
						state = st
					}
				}
				return true
			})
			l.mu.Lock()
			k := [2]string{conv, string(s.Agent)}
			l.states[k] = append(l.states[k], legState{state, s.Reconciled})
			l.mu.Unlock()
		}
	}()
	return l
}

// has reports whether a snapshot showed agent's leg of conv in state
// (reconciled only, with rec).
func (l *legStates) has(conv, agent, state string, rec bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.states[[2]string{conv, agent}] {
		if s.state == state && (s.reconciled || !rec) {
			return true
		}
	}
	return false
}

func (l *legStates) await(t *testing.T, d time.Duration, what, conv, agent, state string, rec bool) {
	t.Helper()
	waitFor(t, d, what, func() bool { return l.has(conv, agent, state, rec) })
}

// gets returns the paths of the conversation GETs so far, in order.
func gets(e *notificationstest.Emulator) []string {
	var out []string
	for _, r := range e.Requests() {
		if r.Method == http.MethodGet && strings.HasPrefix(r.Path, "/api/v2/conversations/") {
			out = append(out, strings.TrimPrefix(r.Path, "/api/v2/conversations/"))
		}
	}
	return out
}

// A leg open before a gap (ringing, or connected) that ends during it is
// no longer live after it: the activity query does not list it, so it was
// never fetched and its end (the `disconnected` event with legEnded) never
// handed on. Consumers held the leg open for ever, the resolver kept its
// pop marker 24 h instead of 15 minutes. The reconciliation must fetch the
// legs it remembers open and the activity query no longer lists.
func TestClient_ALegThatEndedDuringAGapIsHandedOnEnded(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before func(*notificationstest.Conversation) // what the socket saw before the gap
		during func(*notificationstest.Conversation) // what happens while it is down
		seen   string
	}{
		{"SeenRinging", func(c *notificationstest.Conversation) { c.Alert() },
			func(c *notificationstest.Conversation) { c.Connect().Disconnect() }, "alerting"},
		{"SeenConnected", func(c *notificationstest.Conversation) { c.Alert().Connect() },
			func(c *notificationstest.Conversation) { c.Disconnect() }, "connected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as := agents(1)
			h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
				func(c *notifications.Config) { c.Agents = ids(as) }, 256)
			l := recordStates(h.out)
			h.awaitStartupReconciliation()

			call := h.emu.InboundCall(as[0].ID, "+13175550160", notificationstest.Options{})
			tc.before(call)
			l.await(t, 5*time.Second, "the call seen "+tc.seen+" on the socket", call.ID(), as[0].ID, tc.seen, false)

			h.emu.SetBlackhole(true)
			tc.during(call)
			time.Sleep(200 * time.Millisecond)
			h.emu.SetBlackhole(false)
			h.emu.DropConnections()

			l.await(t, 10*time.Second, "a reconciled snapshot of the agent's leg disconnected after the gap", call.ID(), as[0].ID, "disconnected", true)
			if n := h.emu.CountRequests(http.MethodGet, "/api/v2/conversations/"+call.ID()); n != 1 {
				t.Errorf("the ended call was fetched %d times, want 1", n)
			}
			// Forgotten once ended: a later gap does not fetch it again.
			h.awaitStartupReconciliation() // this gap's pass is done
			h.emu.DropConnections()
			h.awaitStartupReconciliation()
			if n := h.emu.CountRequests(http.MethodGet, "/api/v2/conversations/"+call.ID()); n != 1 {
				t.Errorf("after a second gap the ended call was fetched %d times, want 1 (it is forgotten once its end is handed on)", n)
			}
			h.stop()
			<-l.done
		})
	}
}

// In one gap a connected call ends, another connected call goes on and a
// call seen ringing still rings. The ended one is handed on ended; the live
// ones are fetched as before (the connected one not at all, the ringing
// one once), never as ended legs too, and no snapshot shows them
// disconnected.
func TestClient_ALegStillLiveAfterAGapIsNotTakenForEnded(t *testing.T) {
	as := agents(3)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as) }, 256)
	l := recordStates(h.out)
	h.awaitStartupReconciliation()

	ended := h.emu.InboundCall(as[0].ID, "+13175550161", notificationstest.Options{}).Alert().Connect()
	live := h.emu.InboundCall(as[1].ID, "+13175550162", notificationstest.Options{}).Alert().Connect()
	ringing := h.emu.InboundCall(as[2].ID, "+13175550163", notificationstest.Options{}).Alert()
	l.await(t, 5*time.Second, "the ended call seen connected", ended.ID(), as[0].ID, "connected", false)
	l.await(t, 5*time.Second, "the live call seen connected", live.ID(), as[1].ID, "connected", false)
	l.await(t, 5*time.Second, "the ringing call seen ringing", ringing.ID(), as[2].ID, "alerting", false)

	h.emu.SetBlackhole(true)
	ended.Disconnect()
	time.Sleep(200 * time.Millisecond)
	h.emu.SetBlackhole(false)
	h.emu.DropConnections()

	l.await(t, 10*time.Second, "the call that ended during the gap handed on ended", ended.ID(), as[0].ID, "disconnected", true)
	h.awaitStartupReconciliation() // the pass is done
	if n := h.emu.CountRequests(http.MethodGet, "/api/v2/conversations/"+live.ID()); n != 0 {
		t.Errorf("the connected call still live was fetched %d times, want 0 (the agent was connected to it when last seen)", n)
	}
	if n := h.emu.CountRequests(http.MethodGet, "/api/v2/conversations/"+ringing.ID()); n != 1 {
		t.Errorf("the call still ringing was fetched %d times, want 1", n)
	}
	for _, x := range []struct {
		c     *notificationstest.Conversation
		agent string
	}{{live, as[1].ID}, {ringing, as[2].ID}} {
		if l.has(x.c.ID(), x.agent, "disconnected", false) {
			t.Errorf("a snapshot shows the live call %s disconnected", x.c.ID())
		}
	}
	h.stop()
	<-l.done
}

// The legs that ended during a gap make no pop: they are fetched after
// everything else of the pass, so that the calls ringing, which pop, are
// not delayed by them (a large shard's gap ends hundreds).
func TestClient_LegsThatEndedDuringAGapAreFetchedLast(t *testing.T) {
	const n = 3
	as := agents(3 * n)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) {
			c.Agents = ids(as)
			c.ReconcileRate, c.ReconcileBurst = 20, 1 // one fetch every 50 ms: in order
		}, 256)
	l := recordStates(h.out)
	h.awaitStartupReconciliation()

	var ended, ringing, answered []*notificationstest.Conversation
	for i := range n {
		c := h.emu.InboundCall(as[i].ID, "+13175550170", notificationstest.Options{}).Alert().Connect()
		l.await(t, 5*time.Second, "a call seen connected", c.ID(), as[i].ID, "connected", false)
		ended = append(ended, c)
	}
	h.emu.SetBlackhole(true)
	for i := range n {
		ended[i].Disconnect()
		// Calls that ring unseen (they pop), and calls answered unseen.
		ringing = append(ringing, h.emu.InboundCall(as[n+i].ID, "+13175550171", notificationstest.Options{}).Alert())
		answered = append(answered, h.emu.InboundCall(as[2*n+i].ID, "+13175550172", notificationstest.Options{}).Alert().Connect())
	}
	time.Sleep(200 * time.Millisecond)
	h.emu.SetBlackhole(false)
	h.emu.DropConnections()

	for i := range n {
		l.await(t, 10*time.Second, "a call that ended during the gap handed on ended", ended[i].ID(), as[i].ID, "disconnected", true)
		l.await(t, 10*time.Second, "a call that rang during the gap handed on", ringing[i].ID(), as[n+i].ID, "alerting", true)
		l.await(t, 10*time.Second, "a call answered during the gap handed on", answered[i].ID(), as[2*n+i].ID, "connected", true)
	}
	pos := map[string]int{}
	for i, id := range gets(h.emu) {
		if _, ok := pos[id]; !ok {
			pos[id] = i
		}
	}
	for _, e := range ended {
		for _, r := range append(append([]*notificationstest.Conversation(nil), ringing...), answered...) {
			pe, okE := pos[e.ID()]
			pr, okR := pos[r.ID()]
			if !okR {
				t.Errorf("live call %s of the gap not fetched", r.ID())
				continue
			}
			if okE && pe < pr {
				t.Errorf("ended call %s fetched (#%d) before live call %s (#%d): the ended ones come last", e.ID(), pe, r.ID(), pr)
			}
		}
	}
	h.stop()
	<-l.done
}
