package notifications_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// TestClient_LastErrorGoesOnceTheSubscriptionChangeSucceeds: a PUT of a
// changed agent list fails once ("genesys subscription change failed,
// retrying") and its retry succeeds. /status → genesys.channels[].lastError
// is cleared when a reconnect or a handover succeeds; here too the channel
// is healthy again, every topic subscribed, and a lastError left behind
// sends the on-call engineer after a failure that is over.
func TestClient_LastErrorGoesOnceTheSubscriptionChangeSucceeds(t *testing.T) {
	as := agents(3)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as[:2]); c.AgentsChange = true }, 64)
	h.awaitReady(5 * time.Second)
	h.emu.FailNext(http.MethodPut, "/api/v2/notifications/channels/", http.StatusServiceUnavailable, 0, 1)
	if err := h.client.SetAgents(ids(as)); err != nil {
		t.Fatal(err)
	}
	topic := "v2.users." + as[2].ID + ".conversations"
	waitFor(t, 10*time.Second, "the added agent's topic delivered after the retry", func() bool { return h.emu.IsDelivered(topic) })
	waitFor(t, 5*time.Second, "every topic subscribed", func() bool {
		chs := h.client.Status().(notifications.Status).Channels
		return len(chs) == 1 && chs[0].Subscribed == 3
	})
	// The shard sets subscribed when the PUT is answered and clears the
	// PUT's lastError just after, under its lock again: a status read in
	// between (a loaded machine preempts the shard there) sees both. Give
	// it a moment; a lastError that stays fails below.
	ch := h.client.Status().(notifications.Status).Channels[0]
	for end := time.Now().Add(2 * time.Second); ch.LastError != "" && time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		ch = h.client.Status().(notifications.Status).Channels[0]
	}
	if !ch.Connected || ch.Subscribed != ch.Topics {
		t.Fatalf("channel %+v, want connected with every topic subscribed", ch)
	}
	if ch.LastError != "" {
		t.Errorf("/status genesys.channels[0].lastError = %q on a connected channel with all %d topics subscribed: the failed PUT was retried successfully", ch.LastError, ch.Subscribed)
	}
}
