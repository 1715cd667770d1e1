package notifications_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidwall/gjson"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// gauge returns the value of the unlabelled metric name in reg, or -1 when
// it is not there.
func gauge(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			m := mf.GetMetric()[0]
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}

// statusJSON is the client's /status section as the admin reads it.
func statusJSON(t testing.TB, c *notifications.Client) string {
	t.Helper()
	b, err := json.Marshal(c.Status())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A queue that grows during the day past what the channels can hold
// (MaxChannels × TopicsPerChannel: 10 × 1,000 in production, 2 × 1 here)
// leaves its newest members unwatched: their calls never pop. The admin
// must see it: a gauge to alert on, a count in /status, and a log line
// that says what to do. When members leave, the room goes to the agents
// left out.
func TestClient_AgentsPastTheChannelLimitAreReported(t *testing.T) {
	as := agents(3)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, Queues: map[string][]string{"Q1": ids(as[:2])}},
		func(c *notifications.Config) { c.Queues = []string{"Q1"}; c.TopicsPerChannel = 1; c.MaxChannels = 2 }, 64)
	h.awaitReady(5 * time.Second)

	h.emu.SetQueueMembers("Q1", ids(as))
	waitFor(t, 5*time.Second, "the grown queue applied", func() bool {
		return h.client.Status().(notifications.Status).Agents == 2 && h.emu.IsDelivered("v2.users."+as[1].ID+".conversations")
	})
	var logged []string
	waitFor(t, 5*time.Second, "the over-limit log line", func() bool {
		for _, l := range h.logs.lines() {
			if strings.Contains(l, "not watched") {
				logged = append(logged, l)
			}
		}
		return len(logged) > 0
	})
	if n := gauge(t, h.reg, "screenpop_notifications_agents_unwatched"); n != 1 {
		t.Errorf("screenpop_notifications_agents_unwatched = %v, want 1 (-1: no such metric)", n)
	}
	if st := statusJSON(t, h.client); gjson.Get(st, "unwatchedAgents").Int() != 1 {
		t.Errorf("/status genesys = %s\nwant unwatchedAgents 1", st)
	}
	if l := logged[0]; !strings.Contains(l, "OAuth client") || gjson.Get(l, "level").Str != "error" {
		t.Errorf("log line %s\nwant an error that says what to do (another screenpopd with its own OAuth client)", l)
	}

	// Two members leave: the one left out is watched now.
	h.emu.SetQueueMembers("Q1", ids(as[2:]))
	waitFor(t, 5*time.Second, "the agent left out watched once there is room", func() bool {
		return h.emu.IsDelivered("v2.users." + as[2].ID + ".conversations")
	})
	waitFor(t, 5*time.Second, "the unwatched gauge back to 0", func() bool {
		return gauge(t, h.reg, "screenpop_notifications_agents_unwatched") == 0
	})
}

// Two programs on one OAuth client that together want more channels than
// Genesys keeps for it (20; 3 here, with the emulator's same eviction
// rule) evict each other's channels for good: every eviction is a socket
// lost, a new channel and a gap, and the agents on it miss what rang
// meanwhile. The daemon must tell the admin the cause and the fix (each
// program its own OAuth client, or fewer agents per instance), not only
// "socket closed, reconnecting", and count it.
func TestClient_ChannelsEvictedByAnotherProgramOnTheClientAreReported(t *testing.T) {
	as := agents(4)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, MaxChannels: 3},
		func(c *notifications.Config) { c.Agents = ids(as[:2]); c.TopicsPerChannel = 1 }, 64)
	h.awaitReady(5 * time.Second)

	// The second instance, same OAuth client, two other agents.
	cfg := compressed(h.emu.URL())
	cfg.Agents, cfg.TopicsPerChannel = ids(as[2:]), 1
	log, _ := newLog(t)
	out := make(chan bridge.Snapshot, 64)
	other, err := notifications.New(cfg, log, out)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- other.Run(ctx) }()
	go func() {
		for range out {
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		close(out)
	})

	var warned string
	waitFor(t, 10*time.Second, "a log line naming the shared OAuth client", func() bool {
		for _, l := range h.logs.lines() {
			if lv := gjson.Get(l, "level").Str; (lv == "warn" || lv == "error") && strings.Contains(l, "OAuth client") {
				warned = l
			}
		}
		return warned != "" || gauge(t, h.reg, "screenpop_notifications_reconnects_total") > 20
	})
	if warned == "" {
		t.Fatalf("%v reconnects and no warn or error line says why (channels evicted: another program on the OAuth client)",
			gauge(t, h.reg, "screenpop_notifications_reconnects_total"))
	}
	if n := gauge(t, h.reg, "screenpop_notifications_channels_evicted_total"); n < 1 {
		t.Errorf("screenpop_notifications_channels_evicted_total = %v, want at least 1 (-1: no such metric)", n)
	}
}

// A channel dies with its token. When the token ran out because the login
// host was down through its refresh (or a long network outage spanned it),
// the channel found gone at the reconnect was not evicted by another
// program on the OAuth client: counting it, and warning so, sends on-call
// (and the ScreenpopAgentsUnwatched alert) after a program that does not
// exist, while the cause is the login failure logged beside it.
func TestClient_ChannelGoneWithAnExpiredTokenIsNoEviction(t *testing.T) {
	as := agents(1)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, TokenLifetime: 3 * time.Second, CloseOnTokenExpiry: true},
		func(c *notifications.Config) { c.Agents = ids(as) }, 64)
	h.awaitReady(5 * time.Second)
	h.emu.SetLoginDown(true)
	waitFor(t, 10*time.Second, "the client's token expired while the login is down", func() bool {
		return !h.client.Status().(notifications.Status).LoggedIn
	})
	h.emu.ExpireTokens() // Genesys closes the token's channels
	var evicted []string
	waitFor(t, 10*time.Second, "the channel found gone at the reconnect", func() bool {
		gone := false
		for _, l := range h.logs.lines() {
			if strings.Contains(l, "genesys channel gone, creating a new one") {
				gone = true
			}
			if strings.Contains(l, "most likely evicted") {
				evicted = append(evicted, l)
			}
		}
		return gone
	})
	if n := gauge(t, h.reg, "screenpop_notifications_channels_evicted_total"); n != 0 || len(evicted) > 0 {
		t.Errorf("channels_evicted_total = %v, eviction lines %q: a channel gone with its expired token is no eviction", n, evicted)
	}
}

// A token Genesys stops honouring before its stated expiry (revoked, or
// expired early by its clock) takes its channels with it (assumption 1),
// like one that ran out: the channel found gone at the reconnect, under a
// token the client still thinks valid, was not evicted by another program
// on the OAuth client. The request that finds it gone next gets the 401.
func TestClient_ChannelGoneWithARefusedTokenIsNoEviction(t *testing.T) {
	as := agents(1)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, CloseOnTokenExpiry: true},
		func(c *notifications.Config) { c.Agents = ids(as) }, 64)
	h.awaitStartupReconciliation()
	waitFor(t, 5*time.Second, "the organization learned", func() bool { return h.client.OrgID() != "" })
	logins := h.emu.TokensIssued()
	h.emu.ExpireTokens() // a day before its expires_in: Genesys closes the token's channels
	waitFor(t, 10*time.Second, "a new token and the shard live again", func() bool {
		return h.emu.TokensIssued() > logins && h.client.Ready()
	})
	var evicted []string
	for _, l := range h.logs.lines() {
		if strings.Contains(l, "most likely evicted") {
			evicted = append(evicted, l)
		}
	}
	if n := gauge(t, h.reg, "screenpop_notifications_channels_evicted_total"); n != 0 || len(evicted) > 0 {
		t.Errorf("channels_evicted_total = %v, eviction lines %q: a channel gone with its refused token is no eviction", n, evicted)
	}
}
