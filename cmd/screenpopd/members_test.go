package main

import (
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// The admin edits GENESYS_AGENTS_FILE while calls ring: a new hire is
// added and gets a call 1 s after the file is written (before the daemon
// has looked at it), and an agent is removed while a call alerts for them.
// The new hire's ringing call pops (the newly watched agent's live calls
// are reconciled); the removed agent is let go once the call has ended and
// gets no further pop; the agent who stays on the same channel pops
// throughout, and /status counts the agents watched.
func TestDaemon_AgentsFileEditWhileCallsRing(t *testing.T) {
	m, g, ids, file, _ := agentsFileDaemon(t, 3, 760, func(cfg *Config, g *notificationstest.Emulator, ids []string) []string {
		return ids[:2]
	})
	r := connectAgents(t, m, g, ids)
	waitFor(t, 10*time.Second, "the listed agents' topics delivered", func() bool {
		return g.IsDelivered(agentTopic(ids[0])) && g.IsDelivered(agentTopic(ids[1]))
	})
	ringing := g.InboundCall(ids[1], "+13175557601", notificationstest.Options{}).Alert()
	r.await(t, ringing.ID())

	writeAgentsFile(t, file, ids[0], ids[2])
	time.Sleep(20 * time.Millisecond) // before the watcher's next two looks
	fresh := g.InboundCall(ids[2], "+13175557602", notificationstest.Options{}).Alert()
	r.await(t, fresh.ID())
	r.await(t, g.InboundCall(ids[0], "+13175557603", notificationstest.Options{}).Alert().ID())

	ringing.Connect()
	ringing.Disconnect()
	waitFor(t, 10*time.Second, "the removed agent unwatched", func() bool { return !g.IsDelivered(agentTopic(ids[1])) })
	if n := m.Genesys.Status().(notifications.Status).Agents; n != 2 {
		t.Errorf("/status genesys.agents = %d, want 2", n)
	}
	after := g.InboundCall(ids[1], "+13175557604", notificationstest.Options{}).Alert()
	r.await(t, g.InboundCall(ids[0], "+13175557605", notificationstest.Options{}).Alert().ID())
	time.Sleep(500 * time.Millisecond)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ps := range r.pops {
		if ps[0].ConversationID == after.ID() {
			t.Errorf("the removed agent got a pop after their removal")
		}
	}
}
