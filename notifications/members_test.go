package notifications_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// The admin watches big queues (GENESYS_QUEUES) and a few agents in the
// agents file. A queue refresh reads every member page within the request
// budget of 4 a second: 40 queues of 1,000 members are 400 pages, about
// 90 s (docs/genesys.md). An edit of the agents file that lands during a
// refresh must still be applied "within about 10 s" (docs/genesys.md,
// docs/configuration.md: agents added are watched at once): the new hire's
// first calls pop, and the agent removed gets no more pops. SetAgents only
// signalled the agent loop, which applies nothing until the whole refresh
// is read: the edit waited for the end of the pass (here 60 pages at 15 a
// second, 4 s; in production up to 90 s, on every refresh).
func TestClient_AnAgentsFileEditIsAppliedDuringAQueueRefresh(t *testing.T) {
	as := agents(3)
	queues := map[string][]string{}
	var qids []string
	for i := range 60 {
		q := fmt.Sprintf("Q%02d", i)
		queues[q] = ids(as[:1])
		qids = append(qids, q)
	}
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, Queues: queues},
		func(c *notifications.Config) {
			c.Queues = qids
			c.Agents = ids(as[1:2])
			c.AgentsChange = true
			c.APIRate, c.APIBurst = 15, 1
			c.QueueRefresh = 100 * time.Millisecond
		}, 64)
	col := collectStates(h.out)
	h.awaitReady(20 * time.Second)
	topic := func(i int) string { return "v2.users." + as[i].ID + ".conversations" }
	waitFor(t, 5*time.Second, "the watched agents' topics delivered", func() bool { return h.emu.IsDelivered(topic(0)) && h.emu.IsDelivered(topic(1)) })

	// A refresh begins (its first queue is read again): the edit lands at
	// its start.
	first := h.emu.CountRequests(http.MethodGet, "/api/v2/routing/queues/Q00/members")
	waitFor(t, 10*time.Second, "a refresh beginning", func() bool {
		return h.emu.CountRequests(http.MethodGet, "/api/v2/routing/queues/Q00/members") > first
	})
	edited := time.Now()
	if err := h.client.SetAgents(ids(as[2:3])); err != nil { // as[1] removed, as[2] added
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the edit applied", func() bool { return h.emu.IsDelivered(topic(2)) && !h.emu.IsDelivered(topic(1)) })
	if took := time.Since(edited); took > 2*time.Second {
		t.Errorf("the agents file's edit took %v to apply: it waited for the queue refresh in progress", took.Round(10*time.Millisecond))
	}
	h.stop()
	<-col.done
}

// Agents added to the file past the room on the channels in use need a new
// channel (1,000 topics each): its agents' calls already ringing pop (the
// new channel's first socket is a gap, reconciled), and the agents of the
// full channel keep theirs.
func TestClient_AgentsAddedPastAChannelsRoomGetANewChannel(t *testing.T) {
	as := agents(3)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as[:1]); c.AgentsChange = true; c.TopicsPerChannel = 1 }, 64)
	col := collectStates(h.out)
	h.awaitReady(5 * time.Second)
	ringing := h.emu.InboundCall(as[1].ID, "+13175550201", notificationstest.Options{}).Alert()
	if err := h.client.SetAgents(ids(as)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the ringing call of an agent on a new channel", func() bool { return col.has(ringing.ID(), as[1].ID, "alerting") })
	other := h.emu.InboundCall(as[0].ID, "+13175550202", notificationstest.Options{}).Alert()
	waitFor(t, 5*time.Second, "the call of the agent on the full channel", func() bool { return col.has(other.ID(), as[0].ID, "alerting") })
	waitFor(t, 5*time.Second, "three channels", func() bool { return len(h.client.Status().(notifications.Status).Channels) == 3 })
	h.awaitReady(5 * time.Second)
	h.stop()
	<-col.done
}
