//go:build unix

package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/screenpop/screenpop/internal/syncbuf"
)

// startSpreadDemo is MustStartDemo with one agent per Genesys channel (the
// demo's four agents on four channels, as 4,000 agents are in production),
// waiting until every channel's socket is up.
func startSpreadDemo(t *testing.T) *Demo {
	t.Helper()
	logs := &syncbuf.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "genesys") {
					t.Log(l)
				}
			}
		}
	})
	d, _ := runDemoStoppable(t, testEnv(t), zerolog.New(logs).Level(zerolog.DebugLevel), func(c *Config) { c.topicsPerChannel = 1 })
	waitFor(t, 20*time.Second, "daemon ready", func() bool { return d.Main.Ready() })
	waitFor(t, 10*time.Second, "a socket on each agent's channel", func() bool { return d.Genesys.SubscribedConnected() == len(demoAgents) })
	return d
}

// Part of the Genesys input fails: one channel of four (one agent's of
// four, as one of 1,000 agents in ten channels) is down for good, or
// its subscription keeps failing, while the other channels stay up and
// their agents' calls pop. channels_connected drops by one only, not to 0,
// and the stalest connected socket's heartbeat age leaves the channel
// without a socket out: for ten minutes the cut-off agent gets no pop,
// and a suggested alert (docs/operations.md section 5, run by promtool
// over the daemon's own scrapes) must page on-call. Healthy minutes page
// no one.
func TestSilentFail_OneChannelOfSeveralDownPagesOnCall(t *testing.T) {
	cases := []struct {
		name  string
		fault func(t *testing.T, d *Demo, agent string)
	}{
		{"SocketRefused403", func(t *testing.T, d *Demo, agent string) {
			d.Genesys.RefuseSockets(agent, http.StatusForbidden) // a new channel each attempt: refused too
		}},
		{"SocketRefused503", func(t *testing.T, d *Demo, agent string) {
			d.Genesys.RefuseSockets(agent, http.StatusServiceUnavailable) // the same channel redialled for good
		}},
		{"SubscriptionFails", func(t *testing.T, d *Demo, agent string) {
			// The channel is gone (expired early, evicted), and every
			// subscription of a new one fails; the other channels change
			// nothing and make no request.
			d.Genesys.FailNext(http.MethodPut, "/api/v2/notifications/channels/", http.StatusInternalServerError, 0, 1<<30)
			d.Genesys.RemoveChannelsOf(agent)
		}},
		{"ThrottledChannelGone", func(t *testing.T, d *Demo, agent string) {
			// Genesys answers the API 429 for minutes (the client's rate
			// limit: another program on it, a burst of reconciliations)
			// while the sockets stay up, and one channel goes: no new one
			// can be made until the throttling ends.
			d.Genesys.FailNext("", "/api/v2/", http.StatusTooManyRequests, time.Minute, 1<<30)
			d.Genesys.RemoveChannelsOf(agent)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // its own daemon; half a minute: see TestMain
			d := startSpreadDemo(t)
			heard, cut := demoAgents[0].ID, demoAgents[1].ID
			heardPage := openAgentPage(t, d.Main.AgentURL(), d.Genesys.AgentToken(heard))
			cutPage := openAgentPage(t, d.Main.AgentURL(), d.Genesys.AgentToken(cut))
			minute := func(cutPops bool) scrape {
				t.Helper()
				if c := alertCall(d, heard); heardPage.waitPop(c.ID(), 15*time.Second).IsZero() {
					t.Fatal("the agent on a channel that is up got no pop")
				}
				c := alertCall(d, cut)
				switch {
				case cutPops && cutPage.waitPop(c.ID(), 15*time.Second).IsZero():
					t.Fatal("no pop while healthy")
				case !cutPops && !cutPage.waitPop(c.ID(), 2*time.Second).IsZero():
					t.Fatal("the cut-off agent's call popped: the scenario did not happen")
				}
				return scrapeMetrics(t, d)
			}
			var scrapes []scrape
			for range 5 {
				scrapes = append(scrapes, minute(true))
			}
			if fired := alertsFiredOver(t, scrapes, 4); len(fired) > 0 {
				t.Fatalf("healthy, the suggested alerts fire: %v", fired)
			}
			tc.fault(t, d, cut)
			const fault = 10
			for range fault {
				scrapes = append(scrapes, minute(false))
			}
			s := scrapes[len(scrapes)-1]
			v, _ := s.sum("screenpop_notifications_channels_connected", nil)
			t.Logf("channels_connected at the end: %v", v)
			if fired := alertsFiredOver(t, scrapes, fault-1); len(fired) == 0 {
				t.Errorf("for %d minutes one agent of %d got no pop (its channel down, the others up), and none of the suggested alerts fired: on-call is not paged", fault, len(demoAgents))
			} else {
				t.Logf("fired: %s", strings.Join(fired, ", "))
			}
		})
	}
}

// The other side of TestSilentFail_OneChannelOfSeveralDownPagesOnCall:
// every channel's socket dropped and redialled, and Genesys' planned
// socket_closing handovers, each scraped right after it, page no one
// for agents unheard: each is over in seconds.
func TestSilentFail_ReconnectsAndHandoversDoNotPageAgentsUnheard(t *testing.T) {
	t.Parallel() // its own daemon: see TestMain
	d := startSpreadDemo(t)
	agent := demoAgents[0].ID
	page := openAgentPage(t, d.Main.AgentURL(), d.Genesys.AgentToken(agent))
	var scrapes []scrape
	for i, fault := range []func(){nil, func() { d.Genesys.DropConnections() }, d.Genesys.SocketClosing, nil, d.Genesys.SocketClosing, nil, nil} {
		if fault != nil {
			fault()
		}
		scrapes = append(scrapes, scrapeMetrics(t, d)) // in the middle of it
		if c := alertCall(d, agent); page.waitPop(c.ID(), 15*time.Second).IsZero() {
			t.Fatalf("minute %d: no pop", i)
		}
	}
	var unheard []float64
	for _, s := range scrapes {
		v, _ := s.sum("screenpop_notifications_agents_unheard", nil)
		unheard = append(unheard, v)
	}
	t.Logf("agents_unheard per scrape: %v", unheard)
	for _, a := range alertsFiredOver(t, scrapes, len(scrapes)-1) {
		if a == "ScreenpopAgentsUnheard" {
			t.Errorf("a reconnect of every socket and planned handovers, each over in seconds, page %s", a)
		}
	}
}
