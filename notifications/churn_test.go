package notifications_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// An agent added to a watched queue is first watched at the next queue
// refresh (GENESYS_QUEUE_REFRESH, 5 m): Genesys may already route a call to
// them. A call ringing when their topic is subscribed sends nothing more
// until it changes, and one already answered nothing until it is held,
// transferred or ended: without a reconciliation of the newly watched
// agent the first pops late (at the answer) or not at all, the second
// never. The agents join a shard that already has a socket, so no gap
// comes from the socket.
func TestClient_AnAgentJoiningAQueueWhileACallRingsGetsThePop(t *testing.T) {
	as := agents(3)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, Queues: map[string][]string{"Q1": ids(as[:1])}},
		func(c *notifications.Config) { c.Queues = []string{"Q1"} }, 64)
	col := collect(h.out)
	h.awaitStartupReconciliation()

	// Routed to as[1] before the daemon has read the new membership.
	ringing := h.emu.InboundCall(as[1].ID, "+13175550102", notificationstest.Options{QueueID: "Q1"}).Alert()
	answered := h.emu.InboundCall(as[2].ID, "+13175550103", notificationstest.Options{QueueID: "Q1"}).Alert().Connect()
	h.emu.SetQueueMembers("Q1", ids(as))
	waitFor(t, 5*time.Second, "the new members' topics delivered", func() bool {
		return h.emu.IsDelivered("v2.users."+as[1].ID+".conversations") && h.emu.IsDelivered("v2.users."+as[2].ID+".conversations")
	})
	col.await(t, 5*time.Second, "the ringing call of a newly watched agent", ringing, as[1].ID)
	col.await(t, 5*time.Second, "the answered call of a newly watched agent", answered, as[2].ID)
	if n := h.emu.CountRequests(http.MethodPost, "/api/v2/notifications/channels"); n != 1 {
		t.Fatalf("channels created = %d, want 1: the agent joins the live channel", n)
	}
	h.stop()
	<-col.done
}

// A shard whose every topic Genesys rejects (its agents are in a division
// the OAuth client may not see) is subscribed: the PUT was answered, the
// rejections are logged and listed in /status. It must not keep the
// client from being ready: /readyz would stay 503 at start-up while the
// other shards' agents are watched.
func TestClient_AShardOfRejectedTopicsDoesNotHoldReadiness(t *testing.T) {
	as := agents(2)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as); c.TopicsPerChannel = 1 }, 64,
		func(e *notificationstest.Emulator) {
			e.RejectTopicsFor(as[1].ID, "notification.unauthorized.divisioned.topic")
		})
	waitFor(t, 5*time.Second, "the rejection recorded and the other agent delivered", func() bool {
		return len(h.client.Status().(notifications.Status).RejectedTopics) == 1 && h.emu.IsDelivered("v2.users."+as[0].ID+".conversations")
	})
	h.awaitReady(5 * time.Second)
}
