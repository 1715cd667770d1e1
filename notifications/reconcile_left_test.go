package notifications_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// Agents who join a watched queue wait in the reconciler's pending agents
// until a pass reads their live conversations. While passes fail (the
// activity query refused: the OAuth client lost its analytics permission,
// an outage of the analytics API) every failed pass puts them all back,
// and agents who left the queue meanwhile were put back too: with the
// reconciliation failing for weeks, every agent who ever joined a queue
// stayed in memory, watched or not.
func TestClient_AgentsWhoLeftAQueueAreNotKeptForAFailingReconciliation(t *testing.T) {
	const joiners = 40
	as := agents(1 + joiners)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, Queues: map[string][]string{"Q1": ids(as[:1])}},
		func(c *notifications.Config) { c.Queues = []string{"Q1"} }, 64,
		func(e *notificationstest.Emulator) {
			e.FailNext(http.MethodPost, activityQuery, http.StatusForbidden, 0, 1<<30)
		})
	h.awaitReady(5 * time.Second)

	// Agents join (topics put on the live channel: pending), then leave.
	h.emu.SetQueueMembers("Q1", ids(as))
	waitFor(t, 5*time.Second, "the joiners pending reconciliation", func() bool {
		return len(notifications.PendingAgents(h.client)) == joiners
	})
	h.emu.SetQueueMembers("Q1", ids(as[:1]))
	waitFor(t, 5*time.Second, "the joiners unwatched", func() bool {
		for _, a := range as[1:] {
			if notifications.Watched(h.client, a.ID) {
				return false
			}
		}
		return true
	})
	// A few more failed passes, each putting its agents back.
	for n := h.emu.CountRequests(http.MethodPost, activityQuery); h.emu.CountRequests(http.MethodPost, activityQuery) < n+3; {
		time.Sleep(10 * time.Millisecond)
	}
	var kept []string
	for _, a := range notifications.PendingAgents(h.client) {
		if !notifications.Watched(h.client, a) {
			kept = append(kept, a)
		}
	}
	if len(kept) > 0 {
		t.Fatalf("%d agents no longer watched still held for reconciliation after they left the queue (want 0)", len(kept))
	}
}
