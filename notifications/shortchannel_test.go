package notifications_test

import (
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// Genesys' channels live 24 h and are handed over an hour (HandoverGrace)
// before they expire. A channel that lives less than the grace (another
// setting on Genesys' side, or the local clock a day ahead) is handed over
// half-way through its life instead: handed over at once, the new one would
// be too, one handover a second, each a channel, a PUT, a socket and a
// reconciliation. Calls keep popping throughout.
func TestClient_AChannelShorterThanTheGraceIsHandedOverHalfWay(t *testing.T) {
	as := agents(1)
	const life, window = 6 * time.Second, 9 * time.Second
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, ChannelLifetime: life},
		func(c *notifications.Config) { c.Agents = ids(as); c.HandoverGrace = time.Hour }, 1024)
	col := collect(h.out)
	h.awaitReady(5 * time.Second)
	topic := "v2.users." + as[0].ID + ".conversations"
	creates0 := h.emu.CountRequests("POST", "/api/v2/notifications/channels")

	uncovered := 0
	var calls []*notificationstest.Conversation
	end, nextCall := time.Now().Add(window), time.Now()
	for time.Now().Before(end) {
		if !h.emu.IsDelivered(topic) {
			uncovered++
		}
		if time.Now().After(nextCall) {
			calls = append(calls, h.emu.InboundCall(as[0].ID, "+13175550199", notificationstest.Options{}).Alert())
			nextCall = nextCall.Add(time.Second)
		}
		time.Sleep(5 * time.Millisecond)
	}
	creates := h.emu.CountRequests("POST", "/api/v2/notifications/channels") - creates0
	for _, c := range calls {
		col.await(t, 5*time.Second, "each call popped", c, as[0].ID)
	}
	if rec := h.reconnects(); rec != 0 || uncovered != 0 {
		t.Errorf("the channel expired under its socket: %d reconnects, the topic undelivered in %d samples", rec, uncovered)
	}
	// Half-way through a 6 s life: a handover every 3 s, 3 in 9 s.
	if creates > 4 {
		t.Errorf("%d channels created in %v for channels that live %v, want about one every %v", creates, window, life, life/2)
	}
	t.Logf("%d channels created in %v for channels that live %v; %d calls popped", creates, window, life, len(calls))
	h.stop()
	<-col.done
}
