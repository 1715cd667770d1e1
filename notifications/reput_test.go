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
	const retry = 2 * time.Second
	h, as, col := startWithARejectedTopic(t, retry)

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

// A topic Genesys keeps rejecting (an agent in a division the client's role
// does not cover, left so overnight) has its channel's list put again every
// RejectedRetry (5 minutes). With nothing changed, each of those PUTs must
// not log an info line: the rejection was told once, at error, and is in
// /status and the rejected-topics gauge; an info line every 5 minutes all
// night is noise in the tail of an otherwise silent daemon.
func TestClient_IdleRePutOfRejectedTopicLogsNothing(t *testing.T) {
	h, _, col := startWithARejectedTopic(t, 150*time.Millisecond)
	puts := func() int { return h.emu.CountRequests(http.MethodPut, "/api/v2/notifications/channels/") }
	first := puts()
	waitFor(t, 5*time.Second, "five idle re-PUTs", func() bool { return puts() >= first+5 })

	var subscribed, rejectedErr int
	for _, l := range h.logs.lines() {
		if !strings.Contains(l, `"level":"info"`) && !strings.Contains(l, `"level":"error"`) && !strings.Contains(l, `"level":"warn"`) {
			continue
		}
		switch {
		case strings.Contains(l, "genesys channel subscribed"):
			subscribed++
		case strings.Contains(l, "genesys rejected the topic subscription"):
			rejectedErr++
		}
	}
	if rejectedErr != 1 {
		t.Errorf("the rejection was logged %d times at error, want once", rejectedErr)
	}
	if subscribed != 1 {
		t.Errorf("%d info lines \"genesys channel subscribed\" for %d PUTs of an unchanged list with the same topic still rejected, want 1 (the first): a quiet night logs one every RejectedRetry", subscribed, puts())
	}
	h.stop()
	<-col.done
}

// startWithARejectedTopic starts a client of two agents, the second's
// topic rejected by Genesys, its list put again every retry, and waits
// until the rejection is recorded.
func startWithARejectedTopic(t *testing.T, retry time.Duration) (*harness, []notificationstest.AgentSpec, *collector) {
	t.Helper()
	as := agents(2)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as); c.RejectedRetry = retry }, 64,
		func(e *notificationstest.Emulator) {
			e.RejectTopicsFor(as[1].ID, "notification.unauthorized.divisioned.topic")
		})
	col := collect(h.out)
	h.awaitReady(5 * time.Second)
	waitFor(t, 5*time.Second, "the rejection recorded", func() bool { return len(h.client.Status().(notifications.Status).RejectedTopics) == 1 })
	return h, as, col
}
