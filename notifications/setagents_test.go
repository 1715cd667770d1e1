package notifications_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// The admin edits the agents file (GENESYS_AGENTS_FILE): a new hire is
// added, someone who left is removed. SetAgents applies the new list
// without a restart: the new agent's topic is subscribed and their calls
// reach the bridge; the removed agent's goes, but only once the call
// ringing for them has been answered and ended, as for an agent who leaves
// a watched queue (the answer is the pop with SCREENPOP_POP_ON=connected).
func TestClient_SetAgentsAppliesAnEditedAgentList(t *testing.T) {
	as := agents(3)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as[:2]); c.AgentsChange = true }, 64)
	col := collectStates(h.out)
	h.awaitReady(5 * time.Second)
	topic := func(i int) string { return "v2.users." + as[i].ID + ".conversations" }
	waitFor(t, 5*time.Second, "the listed agents' topics delivered", func() bool { return h.emu.IsDelivered(topic(0)) && h.emu.IsDelivered(topic(1)) })
	if notifications.Watched(h.client, as[2].ID) {
		t.Fatal("an agent not listed is watched")
	}
	ringing := h.emu.InboundCall(as[0].ID, "+13175550101", notificationstest.Options{}).Alert()
	waitFor(t, 3*time.Second, "the ringing call", func() bool { return col.has(ringing.ID(), as[0].ID, "alerting") })

	if err := h.client.SetAgents(ids(as[1:])); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the added agent's topic delivered", func() bool { return h.emu.IsDelivered(topic(2)) })
	call := h.emu.InboundCall(as[2].ID, "+13175550102", notificationstest.Options{}).Alert()
	waitFor(t, 3*time.Second, "the added agent's call", func() bool { return col.has(call.ID(), as[2].ID, "alerting") })

	// The added agent's topic came with the PUT of the new list: the
	// removed agent's would have gone with it.
	ringing.Connect()
	waitFor(t, 3*time.Second, "the answer of the call that rang before the agent was removed", func() bool {
		return col.has(ringing.ID(), as[0].ID, "connected")
	})
	ringing.Disconnect()
	waitFor(t, 5*time.Second, "the removed agent unwatched once the call ended", func() bool {
		return !notifications.Watched(h.client, as[0].ID) && !h.emu.IsDelivered(topic(0))
	})
	if err := h.client.SetAgents([]string{"not a user id"}); err == nil {
		t.Error("SetAgents took an id that is not one")
	}
	if !notifications.Watched(h.client, as[2].ID) {
		t.Error("a refused list changed the agents watched")
	}
	h.stop()
	<-col.done
}

// The admin removes an agent from the agents file while a call rings for
// them, and the call's end is lost in a gap (a dead socket: Genesys
// replays nothing, and the reconciliation finds no live conversation).
// The agent lingers for the answer that will not come, but only for
// lingerMax (docs/genesys.md: at most 10 minutes): then they go. With no
// queue, no refresh applies the list again, so they stayed watched, with
// pops, until the next edit of the file.
func TestClient_SetAgentsLetsGoOfARemovedAgentWhoseCallEndWasLost(t *testing.T) {
	as := agents(2)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as); c.AgentsChange = true }, 64)
	col := collectStates(h.out)
	h.awaitReady(5 * time.Second)
	topic := "v2.users." + as[0].ID + ".conversations"
	waitFor(t, 5*time.Second, "the agent's topic delivered", func() bool { return h.emu.IsDelivered(topic) })
	call := h.emu.InboundCall(as[0].ID, "+13175550103", notificationstest.Options{}).Alert()
	waitFor(t, 3*time.Second, "the ringing call", func() bool { return col.has(call.ID(), as[0].ID, "alerting") })

	h.emu.SetBlackhole(true)
	call.Disconnect() // unseen
	h.emu.FailNext(http.MethodGet, "/api/v2/conversations/"+call.ID(), http.StatusNotFound, 0, 1<<30)
	waitFor(t, 5*time.Second, "the dead socket noticed", func() bool { return !h.client.Ready() })
	h.emu.SetBlackhole(false)
	h.awaitReady(5 * time.Second)

	// The admin removes the agent nearly lingerMax after the call last
	// rang (the clock moved on, not the test).
	notifications.AgeRinging(h.client, notifications.LingerMax-2*time.Second)
	if err := h.client.SetAgents(ids(as[1:])); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the removed agent unwatched once lingerMax has passed", func() bool {
		return !notifications.Watched(h.client, as[0].ID) && !h.emu.IsDelivered(topic)
	})
	h.stop()
	<-col.done
}

// With an agents file that is watched and no queue, the client remembers
// each call that rings for an agent (to keep a removed agent until it is
// answered). A call whose end is lost in a gap, for an agent who stays,
// is forgotten by the sweep (hourly) once it is lingerMax old: else every
// lost end would be held for the daemon's life. (The reconciliation after
// the gap fetches a leg that ended during it, for its end: here that fetch
// answers 404, so the end is lost.)
func TestClient_SweepForgetsACallWhoseEndWasLost(t *testing.T) {
	as := agents(1)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) {
			c.Agents = ids(as)
			c.AgentsChange = true
			notifications.SetRingingSweep(c, 200*time.Millisecond)
		}, 64)
	col := collectStates(h.out)
	h.awaitReady(5 * time.Second)
	topic := "v2.users." + as[0].ID + ".conversations"
	waitFor(t, 5*time.Second, "the agent's topic delivered", func() bool { return h.emu.IsDelivered(topic) })
	call := h.emu.InboundCall(as[0].ID, "+13175550104", notificationstest.Options{}).Alert()
	waitFor(t, 3*time.Second, "the ringing call", func() bool { return col.has(call.ID(), as[0].ID, "alerting") })
	if n := notifications.RingingCalls(h.client); n != 1 {
		t.Fatalf("%d calls held as ringing, want the one", n)
	}

	h.emu.SetBlackhole(true)
	call.Disconnect() // unseen
	h.emu.FailNext(http.MethodGet, "/api/v2/conversations/"+call.ID(), http.StatusNotFound, 0, 1<<30)
	waitFor(t, 5*time.Second, "the dead socket noticed", func() bool { return !h.client.Ready() })
	h.emu.SetBlackhole(false)
	h.awaitReady(5 * time.Second)

	// Younger than lingerMax, the call is kept through sweeps.
	time.Sleep(600 * time.Millisecond)
	if n := notifications.RingingCalls(h.client); n != 1 {
		t.Fatalf("%d calls held as ringing %v after they rang, want the one (lingerMax is %v)", n, 600*time.Millisecond, notifications.LingerMax)
	}
	notifications.AgeRinging(h.client, notifications.LingerMax)
	waitFor(t, 5*time.Second, "the call forgotten by the sweep", func() bool { return notifications.RingingCalls(h.client) == 0 })
	if !notifications.Watched(h.client, as[0].ID) {
		t.Fatal("the agent is no longer watched: the sweep forgets calls, not agents")
	}
	h.stop()
	<-col.done
}
