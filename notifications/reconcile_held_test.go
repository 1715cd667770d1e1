package notifications_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// A conversation whose fetch failed a few times (a 5xx lasting a few
// seconds) waits for its retry, up to BackoffMax (a minute in production).
// When a later gap lists it ringing for an agent it was not held for (a
// consult or transfer to a second watched agent), that ring is new: it must
// be fetched with the gap's other ringing calls, not wait out the retry, or
// the agent's call rings without a pop.
func TestClient_AHeldConversationRingingForANewAgentIsNotHeld(t *testing.T) {
	as := agents(2)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) {
			c.Agents = ids(as)
			c.BackoffMin = 200 * time.Millisecond // retries after about 0.8, 1.6, 3.2, 6.4 s
			c.BackoffMax = 60 * time.Second
		}, 256)
	col := collect(h.out)
	h.awaitStartupReconciliation()

	// Gap 1: as[0] answers a call whose fetch fails 4 times.
	h.emu.SetBlackhole(true)
	x := h.emu.InboundCall(as[0].ID, "+13175550140", notificationstest.Options{}).Alert().Connect()
	const fails = 4
	h.emu.FailNext(http.MethodGet, "/api/v2/conversations/"+x.ID(), http.StatusInternalServerError, 0, fails)
	time.Sleep(200 * time.Millisecond)
	h.emu.SetBlackhole(false)
	h.emu.DropConnections()
	tries := func() int { return h.emu.CountRequests(http.MethodGet, "/api/v2/conversations/"+x.ID()) }
	waitFor(t, 15*time.Second, "the conversation's fetch failing 4 times", func() bool { return tries() >= fails })
	time.Sleep(50 * time.Millisecond)

	// Gap 2: as[0] consults as[1]: the conversation rings for as[1]. Its
	// fetch works again.
	h.emu.SetBlackhole(true)
	x.ConsultTransfer(as[1].ID)
	time.Sleep(200 * time.Millisecond)
	h.emu.SetBlackhole(false)
	gap := time.Now()
	h.emu.DropConnections()
	col.await(t, 15*time.Second, "the consult that rang for as[1] during the later gap", x, as[1].ID)
	if el := time.Since(gap); el > 1500*time.Millisecond {
		t.Errorf("the consult ringing for as[1] was handed on %v after the gap: it waited out the retry of the conversation's earlier failed fetch", el.Round(time.Millisecond))
	}
	h.stop()
	<-col.done
}

// A pass stopped by two failed fetches in a row (or a 429) cancels the
// fetches still in flight. One already fetched and waiting to be handed on
// (the consumer is behind: the channel is full) was marked fetched and
// seen: cancelled, it is neither handed on nor left in the backlog, and
// never pops.
func TestClient_AStoppedPassLosesNoFetchedConversation(t *testing.T) {
	as := agents(1)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) {
			c.Agents = ids(as)
			c.ReconcileRate, c.ReconcileBurst = 20, 1 // one fetch every 50 ms: in order
		}, 1) // room for one snapshot: the consumer is behind
	h.awaitStartupReconciliation()

	h.emu.SetBlackhole(true)
	r1 := h.emu.Chat(as[0].ID, notificationstest.Options{}).Alert()
	r2 := h.emu.Chat(as[0].ID, notificationstest.Options{}).Alert()
	var poison []string
	for range 2 {
		p := h.emu.Chat(as[0].ID, notificationstest.Options{}).Alert()
		h.emu.FailNext(http.MethodGet, "/api/v2/conversations/"+p.ID(), http.StatusInternalServerError, 0, 1_000_000)
		poison = append(poison, p.ID())
	}
	time.Sleep(200 * time.Millisecond)
	h.emu.SetBlackhole(false)
	h.emu.DropConnections()
	waitFor(t, 10*time.Second, "two fetches failing in a row", func() bool {
		return h.emu.CountRequests(http.MethodGet, "/api/v2/conversations/"+poison[0]) >= 1 &&
			h.emu.CountRequests(http.MethodGet, "/api/v2/conversations/"+poison[1]) >= 1
	})
	time.Sleep(200 * time.Millisecond) // the pass stops
	if n := h.emu.CountRequests(http.MethodGet, "/api/v2/conversations/"+r2.ID()); n != 1 {
		t.Fatalf("the second chat was fetched %d times before the failures, want 1 (the scenario did not happen)", n)
	}
	col := collect(h.out) // the consumer catches up
	col.await(t, 5*time.Second, "the first ringing chat", r1, as[0].ID)
	col.await(t, 5*time.Second, "the second ringing chat, fetched before the pass stopped", r2, as[0].ID)
	h.stop()
	<-col.done
}
