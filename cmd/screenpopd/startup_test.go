package main

import (
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// A daemon watching GENESYS_AGENTS and GENESYS_QUEUES whose channel is up
// with the listed agents before the queue's members are read (Genesys slow
// or failing for a moment on the queue): the members join the channel's
// topic list with a second PUT. /readyz must not say 200 before that PUT is
// done, or the load balancer sends the queue's agents to an instance whose
// Genesys channel does not carry their calls; here that PUT fails once
// (a 503) and is retried 8 to 15 s later, so the call that alerts for a
// queue member as the daemon says ready pops that much later.
func TestDaemon_NotReadyUntilQueueMembersAreSubscribed(t *testing.T) {
	d, cfg, logs := demoEmulators(t, testEnv(t))
	listed, member := demoAgents[0].ID, demoAgents[1].ID
	const queue = "q-startup"
	d.Genesys.SetQueueMembers(queue, []string{member})
	cfg.GenesysAgents, cfg.GenesysQueues = []string{listed}, []string{queue}
	// The queue's members do not read until the listed agent's channel
	// is up.
	d.Genesys.GarbleQueueMembers(queue, true)

	m, _ := startDaemon(t, cfg, zerolog.New(logs).Level(zerolog.DebugLevel))
	waitFor(t, 20*time.Second, "the listed agent's topic delivered", func() bool {
		return d.Genesys.IsDelivered("v2.users." + listed + ".conversations")
	})
	if m.Ready() {
		t.Fatal("ready before the queue's members were read (the test proves nothing)")
	}
	// The PUT that adds the queue's members fails once.
	d.Genesys.FailNext("PUT", "/api/v2/notifications/channels/", 503, 0, 1)
	d.Genesys.GarbleQueueMembers(queue, false)

	waitFor(t, 20*time.Second, "daemon ready", m.Ready)
	subscribed := d.Genesys.IsDelivered("v2.users." + member + ".conversations")
	page := openAgentPage(t, m.AgentURL(), d.Genesys.AgentToken(member))
	readyAt := time.Now()
	c := d.Genesys.InboundCall(member, "+19995550177", notificationstest.Options{})
	c.Alert()
	at := page.waitPop(c.ID(), 5*time.Second)
	if at.IsZero() {
		t.Fatalf("/readyz 200 while the queue member's topic was not on the channel (delivered at ready: %v): a call alerting for them as the daemon said ready did not pop within 5s; logs:\n%s",
			subscribed, logLines(logs, `"level":"warn"`, `"level":"error"`, "genesys channel subscribed", "screenpopd ready"))
	}
	t.Logf("the queue member's call popped %v after the daemon said ready", at.Sub(readyAt))
}
