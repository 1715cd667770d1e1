package notifications_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// A topic Genesys keeps rejecting (an agent in a division the client's role
// does not cover, left so overnight) has its channel's list put again every
// RejectedRetry (5 minutes). With nothing changed, each of those PUTs must
// not log an info line: the rejection was told once, at error, and is in
// /status and the rejected-topics gauge; an info line every 5 minutes all
// night is noise in the tail of an otherwise silent daemon.
func TestClient_IdleRePutOfRejectedTopicLogsNothing(t *testing.T) {
	as := agents(2)
	const retry = 150 * time.Millisecond
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as); c.RejectedRetry = retry }, 64,
		func(e *notificationstest.Emulator) {
			e.RejectTopicsFor(as[1].ID, "notification.unauthorized.divisioned.topic")
		})
	col := collect(h.out)
	h.awaitReady(5 * time.Second)
	waitFor(t, 5*time.Second, "the rejection recorded", func() bool { return len(h.client.Status().(notifications.Status).RejectedTopics) == 1 })
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
