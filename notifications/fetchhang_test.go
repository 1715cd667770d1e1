package notifications_test

import (
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// One conversation whose GET hangs (a Genesys backend slow for it, a
// connection that went dark mid-request) until the HTTP timeout (15 s by
// default) must not hold up the calls that ring for other agents during a
// later gap: their reconciliation must not wait for the hung fetch. Only
// the hung conversation itself may wait for its own answer.
func TestClient_AHungConversationFetchHoldsUpNoLaterGap(t *testing.T) {
	as := agents(3)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as); c.HTTPTimeout = 15 * time.Second }, 256)
	col := collect(h.out)
	h.awaitStartupReconciliation()

	// Gap 1: a call rings for as[0] whose fetch hangs, and as[1] answers
	// a chat (fetched beside it, in the same pass).
	h.emu.SetBlackhole(true)
	hung := h.emu.InboundCall(as[0].ID, "+13175550110", notificationstest.Options{}).Alert()
	h.emu.SetAPIDelay("/api/v2/conversations/"+hung.ID(), time.Minute)
	chat := h.emu.Chat(as[1].ID, notificationstest.Options{}).Alert().Connect()
	time.Sleep(200 * time.Millisecond) // the frames are dropped, not sent once the blackhole ends
	h.emu.SetBlackhole(false)
	h.emu.DropConnections()
	col.await(t, 3*time.Second, "the chat answered during the gap of the hung conversation", chat, as[1].ID)
	time.Sleep(100 * time.Millisecond)

	// Gap 2, on the same sockets, while the fetch still hangs: a call
	// rings for as[2].
	h.emu.SetBlackhole(true)
	ringing := h.emu.InboundCall(as[2].ID, "+13175550111", notificationstest.Options{}).Alert()
	time.Sleep(200 * time.Millisecond)
	h.emu.SetBlackhole(false)
	gap := time.Now()
	h.emu.DropConnections()
	col.await(t, 20*time.Second, "the call that rang for another agent during the later gap", ringing, as[2].ID)
	if el := time.Since(gap); el > time.Second {
		t.Errorf("the call that rang for another agent during a later gap was handed on %v after it (the usual pace is tens of ms): the hung fetch of another conversation held it up", el.Round(time.Millisecond))
	}
	// The hung conversation itself is not lost: retried once it answers.
	h.emu.SetAPIDelay("/api/v2/conversations/"+hung.ID(), 0)
	col.await(t, 20*time.Second, "the call whose fetch hung, retried", hung, as[0].ID)
	h.stop()
	<-col.done
}
