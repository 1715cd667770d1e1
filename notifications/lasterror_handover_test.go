package notifications_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// TestClient_LastErrorOfAFailingHandoverStaysAfterASubscriptionChange:
// Genesys announces the socket's end (socket_closing) and the handover to
// a new channel fails (the channels API answers 503): the old socket is
// kept, the handover retried, and /status genesys.channels[].lastError
// says why. An agents file edit meanwhile is PUT to the old channel and
// succeeds. That does not end the handover's failure: the old socket still
// closes when Genesys said it would, and the on-call engineer reading
// /status must still see why no new channel is made. a49c76a clears the
// channel's lastError at any successful subscription change.
func TestClient_LastErrorOfAFailingHandoverStaysAfterASubscriptionChange(t *testing.T) {
	as := agents(3)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, SocketClosingGrace: 2 * time.Minute},
		func(c *notifications.Config) {
			c.Agents = ids(as[:2])
			c.AgentsChange = true
			// The handover is retried after 8 s and more, as with the
			// defaults (BackoffMin 500 ms × 4, doubling).
			c.BackoffMin, c.BackoffMax = 2*time.Second, time.Minute
		}, 64)
	h.awaitReady(5 * time.Second)
	h.emu.FailNext(http.MethodPost, "/api/v2/notifications/channels", http.StatusServiceUnavailable, 0, 1000)
	h.emu.SocketClosing()
	lastErr := func() string {
		chs := h.client.Status().(notifications.Status).Channels
		if len(chs) != 1 {
			return ""
		}
		return chs[0].LastError
	}
	waitFor(t, 10*time.Second, "the failed handover in lastError", func() bool { return lastErr() != "" })
	failed := lastErr()

	if err := h.client.SetAgents(ids(as)); err != nil {
		t.Fatal(err)
	}
	topic := "v2.users." + as[2].ID + ".conversations"
	waitFor(t, 10*time.Second, "the added agent's topic delivered on the old socket", func() bool { return h.emu.IsDelivered(topic) })
	time.Sleep(300 * time.Millisecond) // the PUT's answer read
	t.Logf("before: %q; after: %q; channels %+v", failed, lastErr(), h.client.Status().(notifications.Status).Channels)
	if lastErr() == "" {
		t.Errorf("/status genesys.channels[0].lastError cleared by the agents' subscription change while the handover still fails (it was %q): the socket Genesys is closing has no successor and /status says nothing is wrong", failed)
	}
}
