package notifications_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidwall/gjson"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// labelled returns the value of the counter name{label=value} in reg, or 0
// when it is not there.
func labelled(t testing.TB, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// A call the agent answered, transferred away and back to them during a
// gap and ringing for them again when the socket is back, is a call that
// alerted while the socket was down (docs/genesys.md, Reconciliation): it
// pops. Only one answered again within the gap looks like the leg the agent
// was connected to; one still ringing is listed alerting, and must be
// fetched though the agent was connected when last seen.
func TestClient_ACallTransferredBackAndRingingAfterAGapIsHandedOn(t *testing.T) {
	as := agents(2)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as) }, 256)
	col := collect(h.out)
	h.awaitStartupReconciliation()

	x := h.emu.InboundCall(as[0].ID, "+13175550150", notificationstest.Options{}).Alert().Connect()
	col.await(t, 5*time.Second, "as[0]'s answered leg on the socket", x, as[0].ID)
	time.Sleep(100 * time.Millisecond)

	h.emu.SetBlackhole(true)
	x.BlindTransfer(as[1].ID)
	x.BlindTransfer(as[0].ID) // back to as[0]: a new leg, ringing
	time.Sleep(200 * time.Millisecond)
	h.emu.SetBlackhole(false)
	h.emu.DropConnections()
	col.await(t, 10*time.Second, "as[0]'s new leg, ringing after the gap", x, as[0].ID)
	h.stop()
	<-col.done
}

// The metrics and /status fields docs/genesys.md (Operations) defines count
// what they say: topics assigned, successful PUTs, sockets lost and
// reconnected, conversations fetched by reconciliation (and /status
// reconciledConversations), pongs apart from heartbeats.
func TestClient_TheDocumentedMetricsCountWhatTheySay(t *testing.T) {
	as := agents(3)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: -1},
		func(c *notifications.Config) { c.Agents = ids(as) }, 256)
	col := collect(h.out)
	h.awaitStartupReconciliation()

	if n := gauge(t, h.reg, "screenpop_notifications_topics"); n != 3 {
		t.Errorf("topics = %v, want 3 (three agents on one channel)", n)
	}
	if n := gauge(t, h.reg, "screenpop_notifications_subscription_puts_total"); n < 1 {
		t.Errorf("subscription_puts_total = %v after the channel was subscribed, want at least 1", n)
	}
	waitFor(t, 5*time.Second, "a pong", func() bool {
		return labelled(t, h.reg, "screenpop_notifications_events_total", "topic", "pong") > 0
	})
	if n := labelled(t, h.reg, "screenpop_notifications_events_total", "topic", "heartbeat"); n != 0 {
		t.Errorf("events_total{topic=heartbeat} = %v with the service sending no heartbeat (only pongs)", n)
	}
	reconciled0 := gauge(t, h.reg, "screenpop_notifications_reconciled_conversations_total")
	status0 := h.client.Status().(notifications.Status).Reconciled

	// A call rings while the socket is down: the reconnect's
	// reconciliation fetches it.
	h.emu.SetBlackhole(true)
	x := h.emu.InboundCall(as[0].ID, "+13175550151", notificationstest.Options{}).Alert()
	time.Sleep(200 * time.Millisecond)
	h.emu.SetBlackhole(false)
	h.emu.DropConnections()
	col.await(t, 10*time.Second, "the call that rang during the gap", x, as[0].ID)
	waitFor(t, 5*time.Second, "the reconciliation done", func() bool {
		for _, l := range h.logs.lines() {
			if strings.Contains(l, "genesys reconciliation done") {
				return true
			}
		}
		return false
	})
	if n := h.emu.CountRequests(http.MethodGet, "/api/v2/conversations/"+x.ID()); n != 1 {
		t.Fatalf("the call was fetched %d times, want 1 (the scenario did not happen)", n)
	}
	if n := gauge(t, h.reg, "screenpop_notifications_reconciled_conversations_total") - reconciled0; n != 1 {
		t.Errorf("reconciled_conversations_total grew by %v for the one call fetched, want 1", n)
	}
	if n := h.client.Status().(notifications.Status).Reconciled - status0; n != 1 {
		t.Errorf("/status reconciledConversations grew by %d for the one call fetched, want 1", n)
	}
	if n := gauge(t, h.reg, "screenpop_notifications_reconnects_total"); n < 1 {
		t.Errorf("reconnects_total = %v after the socket was dropped and reconnected, want at least 1", n)
	}
	if n := gauge(t, h.reg, "screenpop_notifications_channels_connected"); n != 1 {
		t.Errorf("channels_connected = %v after the one channel's socket reconnected, want 1", n)
	}
	h.stop()
	<-col.done
}

// An agent removed from the agents file while their own outbound call
// dials stays watched until the far end answers: the dialing leg pops at
// connected with SCREENPOP_POP_ON=connected (docs/events.md: outbound legs
// pop at dialing, or at connected), as an inbound call ringing for them
// does (docs/genesys.md: one who leaves while a call rings for them stays
// watched until it is answered or ends).
func TestClient_AnAgentRemovedWhileTheirOutboundCallDialsGetsItsAnswer(t *testing.T) {
	as := agents(2)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as); c.AgentsChange = true }, 64)
	col := collectStates(h.out)
	h.awaitReady(5 * time.Second)
	topic := "v2.users." + as[0].ID + ".conversations"
	waitFor(t, 5*time.Second, "the agent's topic delivered", func() bool { return h.emu.IsDelivered(topic) })
	call := h.emu.OutboundCall(as[0].ID, "+13175550152", notificationstest.Options{}).Alert()
	waitFor(t, 3*time.Second, "the dialing call", func() bool { return col.has(call.ID(), as[0].ID, "dialing") })

	if err := h.client.SetAgents(ids(as[1:])); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the list applied (PutDebounce 20 ms)
	if !notifications.Watched(h.client, as[0].ID) {
		t.Fatal("the agent was unwatched while their outbound call still dialed")
	}
	call.Connect()
	waitFor(t, 3*time.Second, "the answer of the call that dialed before the agent was removed", func() bool {
		return col.has(call.ID(), as[0].ID, "connected")
	})
	call.Disconnect()
	waitFor(t, 5*time.Second, "the removed agent unwatched once the call ended", func() bool {
		return !notifications.Watched(h.client, as[0].ID) && !h.emu.IsDelivered(topic)
	})
	h.stop()
	<-col.done
}

// The client hands a channel over HandoverGrace before its expiry
// (docs/genesys.md, Handover: one hour before the channel's 24 h expiry),
// not at the expiry, when the service may already have closed it.
func TestClient_HandsOverAGraceBeforeTheChannelExpires(t *testing.T) {
	as := agents(1)
	// Lifetime 12 s, grace 6 s (no more than half the life, which a
	// shorter-lived channel gets instead): the handover is due 6 s after
	// the channel is made, the expiry 12 s after.
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, ChannelLifetime: 12 * time.Second},
		func(c *notifications.Config) { c.Agents = ids(as); c.HandoverGrace = 6 * time.Second }, 64)
	h.awaitReady(5 * time.Second)
	ready := time.Now()
	waitFor(t, 9*time.Second, "the handover", func() bool {
		return gauge(t, h.reg, "screenpop_notifications_handovers_total") >= 1
	})
	if el := time.Since(ready); el < 2*time.Second {
		t.Errorf("handed over %v after the channel was ready, long before its grace", el.Round(time.Millisecond))
	}
	if n := h.reconnects(); n != 0 {
		t.Errorf("reconnects = %d: the channel expired under its socket", n)
	}
}

// A call the agent has been on for more than lingerMax (a 20-minute call)
// and that ends during a gap is handed on ended: a leg is remembered open
// for 12 hours after it was last seen (docs/genesys.md, Reconciliation),
// not for the 10 minutes a lingering agent is kept for a ringing call.
func TestClient_ALongCallThatEndedDuringAGapIsHandedOnEnded(t *testing.T) {
	as := agents(1)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) {
			c.Agents = ids(as)
			c.AgentsChange = true                                 // agents who leave: calls seen ringing are swept
			notifications.SetRingingSweep(c, 50*time.Millisecond) // the sweep runs often
		}, 256)
	l := recordStates(h.out)
	h.awaitStartupReconciliation()

	call := h.emu.InboundCall(as[0].ID, "+13175550153", notificationstest.Options{}).Alert().Connect()
	l.await(t, 5*time.Second, "the call seen connected on the socket", call.ID(), as[0].ID, "connected", false)
	notifications.AgeOpen(h.client, 20*time.Minute) // the agent has been on it for 20 minutes
	time.Sleep(300 * time.Millisecond)              // a few sweeps

	h.emu.SetBlackhole(true)
	call.Disconnect()
	time.Sleep(200 * time.Millisecond)
	h.emu.SetBlackhole(false)
	h.emu.DropConnections()
	l.await(t, 10*time.Second, "a reconciled snapshot of the long call's leg disconnected after the gap", call.ID(), as[0].ID, "disconnected", true)
	h.stop()
	<-l.done
}

// snapshot_backpressure_total counts the snapshots that had to wait for
// room in the output channel (docs/genesys.md, Output).
func TestClient_BackpressureIsCounted(t *testing.T) {
	as := agents(1)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as) }, 1) // room for one snapshot, no consumer yet
	h.awaitStartupReconciliation()
	h.emu.InboundCall(as[0].ID, "+13175550154", notificationstest.Options{}).Alert().Connect().Disconnect()
	waitFor(t, 5*time.Second, "a snapshot waiting for room", func() bool {
		return gauge(t, h.reg, "screenpop_notifications_snapshot_backpressure_total") >= 1
	})
	h.stop()
}

// A failed handover is tried again after its backoff, or the Retry-After
// if longer; no trigger tries sooner (docs/genesys.md, Handover): a second
// socket_closing during a 429's Retry-After does not create a channel.
func TestClient_NoTriggerRetriesAFailedHandoverBeforeItsRetryAfter(t *testing.T) {
	as := agents(1)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, SocketClosingGrace: 30 * time.Second},
		func(c *notifications.Config) { c.Agents = ids(as) }, 64)
	h.awaitReady(5 * time.Second)
	awaitSockets(t, h, 1)
	const channels = "/api/v2/notifications/channels"
	creates := h.emu.CountRequests(http.MethodPost, channels)
	h.emu.FailNext(http.MethodPost, channels, http.StatusTooManyRequests, 3*time.Second, 1)
	begin := time.Now()
	h.emu.SocketClosing()
	waitFor(t, 3*time.Second, "the refused creation", func() bool { return h.emu.CountRequests(http.MethodPost, channels) > creates })
	time.Sleep(500 * time.Millisecond)
	h.emu.SocketClosing() // again, within the Retry-After
	time.Sleep(time.Second)
	if n := h.emu.CountRequests(http.MethodPost, channels) - creates; n != 1 || time.Since(begin) >= 3*time.Second {
		t.Errorf("channel creations = %d within the 429's Retry-After of 3 s, want 1 (the refused one)", n)
	}
}

// A leg that ended during a gap whose conversation answers 403 (another
// division) is forgotten (docs/genesys.md, Reconciliation): a later gap
// does not fetch it again.
func TestClient_AnEndedLegAnswering403IsForgotten(t *testing.T) {
	as := agents(1)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as) }, 256)
	l := recordStates(h.out)
	h.awaitStartupReconciliation()

	call := h.emu.InboundCall(as[0].ID, "+13175550155", notificationstest.Options{}).Alert().Connect()
	l.await(t, 5*time.Second, "the call seen connected on the socket", call.ID(), as[0].ID, "connected", false)
	h.emu.SetBlackhole(true)
	call.Disconnect()
	h.emu.FailNext(http.MethodGet, "/api/v2/conversations/"+call.ID(), http.StatusForbidden, 0, 1<<30)
	time.Sleep(200 * time.Millisecond)
	h.emu.SetBlackhole(false)
	h.emu.DropConnections()
	get := func() int { return h.emu.CountRequests(http.MethodGet, "/api/v2/conversations/"+call.ID()) }
	waitFor(t, 10*time.Second, "the ended leg's fetch", func() bool { return get() >= 1 })
	h.awaitStartupReconciliation()
	h.emu.DropConnections()
	h.awaitStartupReconciliation()
	if n := get(); n != 1 {
		t.Errorf("the leg whose conversation answered 403 was fetched %d times over two gaps, want 1 (forgotten)", n)
	}
	h.stop()
	<-l.done
}

// A ringing conversation listed in both the truncated answer and the
// alerting one asked for the truncated agent alone is handed on once for
// the agent, not once per answer: the call is heard once.
func TestClient_ARingingCallListedTwiceByATruncatedQueryIsHandedOnOnce(t *testing.T) {
	as := agents(1)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, ActivityEntityLimit: 2},
		func(c *notifications.Config) { c.Agents = ids(as) }, 256)
	h.awaitStartupReconciliation()

	h.emu.SetBlackhole(true)
	h.emu.InboundCall(as[0].ID, "+13175550156", notificationstest.Options{}).Alert().Connect()
	h.emu.InboundCall(as[0].ID, "+13175550157", notificationstest.Options{}).Alert().Connect()
	newest := h.emu.InboundCall(as[0].ID, "+13175550158", notificationstest.Options{}).Alert() // kept by the truncation, and alerting
	time.Sleep(200 * time.Millisecond)
	h.emu.SetBlackhole(false)
	var mu sync.Mutex
	handed := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for s := range h.out {
			if s.Reconciled && gjson.GetBytes(s.Body, "id").Str == newest.ID() {
				mu.Lock()
				handed++
				mu.Unlock()
			}
		}
	}()
	h.emu.DropConnections()
	h.awaitStartupReconciliation()
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	n := handed
	mu.Unlock()
	if n != 1 {
		t.Errorf("the ringing call was handed on %d times by one reconciliation, want 1", n)
	}
	h.stop()
	<-done
}
