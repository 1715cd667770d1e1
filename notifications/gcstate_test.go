package notifications_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// The org takes a permission away and gives it back: an agent whose topic
// Genesys rejected must be watched again by itself once the role has the
// permission back, not at the shard's next PUT (the next handover: the
// channel's expiry or the token's refresh, up to 23 h later with a static
// agent list) nor only after a restart. Here no handover and no agent
// change follows: the rejected topic must be put again on the shard's own
// schedule (every RejectedRetry, 5 m by default, while Genesys rejects a topic),
// and a call already ringing for the agent must pop.
func TestClient_ARejectedTopicIsRetriedWithoutAnyChange(t *testing.T) {
	as := agents(2)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as); c.RejectedRetry = 200 * time.Millisecond }, 64,
		func(e *notificationstest.Emulator) {
			e.RejectTopicsFor(as[1].ID, "notification.unauthorized.divisioned.topic")
		})
	col := collect(h.out)
	h.awaitReady(5 * time.Second)
	waitFor(t, 5*time.Second, "the rejection recorded", func() bool { return len(h.client.Status().(notifications.Status).RejectedTopics) == 1 })

	h.emu.AllowTopicsFor(as[1].ID) // the admin restores the role's permission
	ringing := h.emu.InboundCall(as[1].ID, "+13175550150", notificationstest.Options{}).Alert()
	waitFor(t, 5*time.Second, "the topic allowed again delivered (RejectedRetry is 200 ms here)", func() bool {
		return h.emu.IsDelivered("v2.users." + as[1].ID + ".conversations")
	})
	col.await(t, 5*time.Second, "the call ringing for the agent once allowed", ringing, as[1].ID)
	// The call's frame can be read before the PUT's answer that clears
	// the rejection: both follow the same subscription.
	waitFor(t, 5*time.Second, "/status rejectedTopics empty once the topic is allowed", func() bool {
		return len(h.client.Status().(notifications.Status).RejectedTopics) == 0
	})
	h.stop()
	<-col.done
}

// A gateway in front of the Genesys API answers a redirect (301) to the
// handover's subscription PUT. Go's http.Client follows a 301/302/303 of a
// PUT as a GET without the body: GET …/subscriptions answers 200 with
// what the new channel holds (nothing), which the client takes for the
// PUT's answer. The handover then "succeeds" with 0 topics permitted and
// 0 rejected, drops the old socket, and every agent of the shard gets no
// pops, with no error logged and nothing retried, until the next change.
// A redirect must be a failed PUT (the old socket kept, retried), not a
// silent empty subscription.
func TestClient_ARedirectedSubscriptionPutIsNotTakenForASubscription(t *testing.T) {
	as := agents(1)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, SocketClosingGrace: 30 * time.Second},
		func(c *notifications.Config) { c.Agents = ids(as) }, 64)
	col := collect(h.out)
	h.awaitStartupReconciliation()
	awaitSockets(t, h, 1)

	h.emu.FailNext(http.MethodPut, "/api/v2/notifications/channels/", http.StatusMovedPermanently, 0, 1)
	h.emu.SocketClosing()
	// Whatever the handover did, the agent's topic must end up on a
	// connected socket and a new call must reach the consumer.
	time.Sleep(time.Second)
	for _, r := range h.emu.Requests() {
		if r.Method == http.MethodGet && strings.HasSuffix(r.Path, "/subscriptions") {
			t.Errorf("the redirected PUT was followed as %s %s (HTTP %d): its answer is no subscription", r.Method, "…/subscriptions", r.Status)
		}
	}
	call := h.emu.InboundCall(as[0].ID, "+13175550151", notificationstest.Options{}).Alert()
	col.await(t, 5*time.Second, "a call after the redirected PUT", call, as[0].ID)
	for _, ch := range h.client.Status().(notifications.Status).Channels {
		if ch.Topics > 0 && ch.Subscribed == 0 {
			t.Errorf("/status channel %s: topics %d, subscribed 0", ch.ID, ch.Topics)
		}
	}
	h.stop()
	<-col.done
}
