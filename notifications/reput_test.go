package notifications_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// The re-PUT of a channel's list while a topic is rejected fails once (a
// 5xx, a timeout). The shard says "retrying" and retries after its short
// backoff: that retry must put the list again, not find it unchanged and do
// nothing, leaving the agent unwatched for another RejectedRetry.
func TestClient_AFailedRePutOfRejectedTopicsIsRetried(t *testing.T) {
	as := agents(2)
	const retry = 2 * time.Second
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as); c.RejectedRetry = retry }, 64,
		func(e *notificationstest.Emulator) {
			e.RejectTopicsFor(as[1].ID, "notification.unauthorized.divisioned.topic")
		})
	col := collect(h.out)
	h.awaitReady(5 * time.Second)
	waitFor(t, 5*time.Second, "the rejection recorded", func() bool { return len(h.client.Status().(notifications.Status).RejectedTopics) == 1 })

	h.emu.FailNext(http.MethodPut, "/api/v2/notifications/channels/", http.StatusInternalServerError, 0, 1)
	h.emu.AllowTopicsFor(as[1].ID) // the admin restores the role's permission
	var failedAt time.Time
	waitFor(t, 2*retry, "the re-PUT failed", func() bool {
		for _, r := range h.emu.Requests() {
			if r.Method == http.MethodPut && strings.HasSuffix(r.Path, "/subscriptions") && r.Status == http.StatusInternalServerError {
				failedAt = r.Time
				return true
			}
		}
		return false
	})
	waitFor(t, 3*time.Second, "the topic allowed again delivered", func() bool {
		return h.emu.IsDelivered("v2.users." + as[1].ID + ".conversations")
	})
	if took := time.Since(failedAt); took > retry*3/4 {
		t.Errorf("the list was put again %v after the failed re-PUT (the shard's backoff is under 200 ms), want well within RejectedRetry (%v): the retry after the failure did not put it", took.Round(10*time.Millisecond), retry)
	}
	h.stop()
	<-col.done
}
