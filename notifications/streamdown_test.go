package notifications_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/screenpop/screenpop/internal/dnstest"
	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// TestClient_StreamingHostDownPutsTheListOnce: Genesys' API answers but its
// streaming host does not (its name does not resolve, or it answers 503)
// from the daemon's start. The shard's channel is made and subscribed, and
// its socket is dialled again a second apart for as long as that lasts.
// Those redials must not put the unchanged topic list again each time: a
// PUT tells nothing the redial does not, and sixty a minute per shard spend
// the OAuth client's API budget that the gap's reconciliation needs once
// the socket is up. A list that changes meanwhile (an agent added) is put,
// once; once the host answers, the call that rang meanwhile is heard.
func TestClient_StreamingHostDownPutsTheListOnce(t *testing.T) {
	for _, tc := range []struct {
		name       string
		down, back func(*dnstest.Server, *notificationstest.Emulator, []notificationstest.AgentSpec)
		says       string // in the channel's lastError meanwhile
	}{
		{"NXDOMAIN",
			func(d *dnstest.Server, _ *notificationstest.Emulator, _ []notificationstest.AgentSpec) {
				d.Set(dnstest.NXDomain, streamingHost)
			},
			func(d *dnstest.Server, _ *notificationstest.Emulator, _ []notificationstest.AgentSpec) {
				d.Set(dnstest.OK, streamingHost)
			},
			"lookup " + streamingHost},
		{"503",
			func(_ *dnstest.Server, e *notificationstest.Emulator, as []notificationstest.AgentSpec) {
				for _, a := range as {
					e.RefuseSockets(a.ID, http.StatusServiceUnavailable)
				}
			},
			func(_ *dnstest.Server, e *notificationstest.Emulator, as []notificationstest.AgentSpec) {
				for _, a := range as {
					e.RefuseSockets(a.ID, 0)
				}
			},
			"503"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dns := dnstest.Start(t)
			dns.Set(dnstest.OK, genesysHosts...)
			as := agents(2)
			g := serveByName(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond})
			tc.down(dns, g.emu, as)
			h, col := startByName(t, g, ids(as[:1]))
			puts := func() int { return g.emu.CountRequests(http.MethodPut, "/api/v2/notifications/channels/") }

			// Four redials after the first attempt's PUT.
			waitFor(t, 10*time.Second, "the channel subscribed", func() bool { return puts() >= 1 })
			redials := func() bool {
				st := h.client.Status().(notifications.Status)
				return len(st.Channels) > 0 && strings.Contains(st.Channels[0].LastError, tc.says)
			}
			waitFor(t, 5*time.Second, "the socket's dial failing", redials)
			t.Logf("on-call reads: %s", h.client.Status().(notifications.Status).Channels[0].LastError)
			// The start-up's own news first (the organization is learned
			// beside the channel's set-up: on a busy machine after it).
			learned := false
			waitFor(t, 5*time.Second, "the organization learned", func() bool {
				learned = learned || countLines(h.logs.lines(), "genesys organization learned") > 0
				return learned
			})
			time.Sleep(4 * time.Second)
			if !redials() {
				t.Fatalf("the channel's last error is no longer the streaming host's: %+v", h.client.Status().(notifications.Status).Channels)
			}
			if n := puts(); n != 1 {
				t.Errorf("the unchanged topic list was put %d times in 4 s of redials to a streaming host that does not answer, want once", n)
			}
			// The warning is limited to one per 30 s; nothing else is
			// news while the same dial keeps failing.
			for _, l := range h.logs.lines() {
				if strings.Contains(l, `"level":"info"`) {
					t.Errorf("logged during the redials: %s", l)
				}
			}

			// An agent added meanwhile: the new list is put, once.
			if err := h.client.SetAgents(ids(as)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the list with the added agent put", func() bool { return puts() >= 2 })
			time.Sleep(3 * time.Second)
			if n := puts(); n != 2 {
				t.Errorf("the list was put %d times in all, want twice: once at the start, once with the added agent", n)
			}
			if chs := g.emu.Channels(); len(chs) != 1 || chs[0].Topics != 2 {
				t.Errorf("Genesys' channels after the agent was added: %+v, want one holding both agents' topics", chs)
			}

			conv := g.emu.InboundCall(as[1].ID, "+13175550191", notificationstest.Options{}).Alert()
			tc.back(dns, g.emu, as)
			back := time.Now()
			col.awaitSoon(t, "the call that rang while the streaming host did not answer", conv, as[1].ID, back,
				"the redials must not wait out a backoff grown during the outage")
			if n := g.emu.CountRequests(http.MethodPost, "/api/v2/notifications/channels"); n != 1 {
				t.Errorf("%d channels made, want the one channel, kept through the failed dials", n)
			}
		})
	}
}

// TestClient_StreamingHostBackToAChannelGoneMeanwhile: the channel whose
// socket could not be dialled is removed by Genesys during the streaming
// host's outage (expired, evicted). Its list not being put again on every
// redial must not keep the shard redialling a channel that is gone: once
// the host answers (404), the next attempt finds out, makes a new channel
// and the agents are heard.
func TestClient_StreamingHostBackToAChannelGoneMeanwhile(t *testing.T) {
	dns := dnstest.Start(t)
	dns.Set(dnstest.OK, genesysHosts...)
	as := agents(1)
	g := serveByName(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond})
	dns.Set(dnstest.NXDomain, streamingHost)
	h, col := startByName(t, g, ids(as))
	waitFor(t, 10*time.Second, "the channel subscribed", func() bool {
		return g.emu.CountRequests(http.MethodPut, "/api/v2/notifications/channels/") >= 1
	})
	time.Sleep(2 * time.Second) // redials
	g.emu.RemoveChannelsOf(as[0].ID)
	conv := g.emu.InboundCall(as[0].ID, "+13175550192", notificationstest.Options{}).Alert()
	dns.Set(dnstest.OK, streamingHost)
	back := time.Now()
	col.awaitSoon(t, "the call that rang while the channel went", conv, as[0].ID, back,
		"a channel found gone is replaced in the same attempt, not after the backoff the failed dials grew")
	if n := g.emu.CountRequests(http.MethodPost, "/api/v2/notifications/channels"); n != 2 {
		t.Errorf("%d channels made, want 2: the first, gone, and its replacement", n)
	}
	if st := h.client.Status().(notifications.Status); len(st.Channels) == 0 || !st.Channels[0].Connected {
		t.Errorf("channel not connected after the host came back: %+v", st.Channels)
	}
}

// awaitSoon waits for conv's leg of agent, which must be heard within
// twice the pop deadline of back, when Genesys answered again (why: what
// a later one means).
func (c *collector) awaitSoon(t *testing.T, what string, conv *notificationstest.Conversation, agent string, back time.Time, why string) {
	t.Helper()
	c.await(t, 30*time.Second, what, conv, agent)
	took := time.Since(back)
	t.Logf("%s: heard %v after Genesys answered again", what, took.Round(time.Millisecond))
	if took > 2*popDeadline {
		t.Errorf("%s: heard %v after Genesys answered again, more than twice the pop deadline (%v): %s", what, took.Round(10*time.Millisecond), popDeadline, why)
	}
}

// TestClient_StreamingHostBackToAChannelGoneMeanwhileAsResult: as
// TestClient_StreamingHostBackToAChannelGoneMeanwhile, with the service
// telling a gone channel the other way it is reported to (GoneAsResult):
// it accepts the socket's upgrade and sends {"result":"404"}. The channel,
// subscribed and never dialled, goes early in a long outage of the
// streaming host; the dials that only redial it learn nothing of that
// until the host answers. Its socket then opens and is told the channel is
// gone at once: a new channel must be made then, not after the backoff
// that a second's redials grew to BackoffMax during the outage, or the
// calls that ring for the agents meanwhile are heard only that long after.
func TestClient_StreamingHostBackToAChannelGoneMeanwhileAsResult(t *testing.T) {
	dns := dnstest.Start(t)
	dns.Set(dnstest.OK, genesysHosts...)
	as := agents(1)
	g := serveByName(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, GoneAsResult: true})
	dns.Set(dnstest.NXDomain, streamingHost)
	h, col := startByName(t, g, ids(as))
	waitFor(t, 10*time.Second, "the channel subscribed", func() bool {
		return g.emu.CountRequests(http.MethodPut, "/api/v2/notifications/channels/") >= 1
	})
	time.Sleep(time.Second)
	g.emu.RemoveChannelsOf(as[0].ID) // early in the outage
	time.Sleep(9 * time.Second)      // the outage goes on: redials a second apart
	dns.Set(dnstest.OK, streamingHost)
	back := time.Now()
	time.Sleep(3 * time.Second) // its socket opened and was told the channel is gone
	conv := g.emu.InboundCall(as[0].ID, "+13175550193", notificationstest.Options{}).Alert()
	rang := time.Now()
	col.await(t, 90*time.Second, "the call that rang after the streaming host answered again", conv, as[0].ID)
	took := time.Since(rang)
	t.Logf("the call that rang %v after the streaming host answered again was heard %v after it rang", rang.Sub(back).Round(time.Millisecond), took.Round(time.Millisecond))
	if took > 2*popDeadline {
		t.Errorf("the call that rang %v after the streaming host answered again was heard %v after it rang, more than twice the pop deadline (%v): a channel found gone on its socket's first answer after the outage must be replaced at once, not after the backoff the outage's redials grew", rang.Sub(back).Round(time.Millisecond), took.Round(10*time.Millisecond), popDeadline)
	}
	if st := h.client.Status().(notifications.Status); len(st.Channels) == 0 || !st.Channels[0].Connected {
		t.Errorf("channel not connected: %+v", st.Channels)
	}
}

// TestClient_AGoneChannelIsNotRedialledOnEveryAttempt: the socket of a
// connected channel drops and the channel is gone (expired, evicted);
// making its replacement fails for a while (the API answers 503). The
// gone channel's 404 was the answer: the retries make the new channel
// and do not dial the gone one again first, each time saying once more
// that it is gone.
func TestClient_AGoneChannelIsNotRedialledOnEveryAttempt(t *testing.T) {
	as := agents(1)
	h := start(t, notificationstest.Config{Agents: as}, func(c *notifications.Config) { c.Agents, c.BackoffMin, c.BackoffMax = ids(as), 0, 0 }, 64)
	col := collect(h.out)
	h.awaitStartupReconciliation()
	gone := h.emu.Channels()[0].ID
	dials := func() int { return h.emu.CountRequests(http.MethodGet, "/channels/"+gone) }
	before := dials()
	_ = h.logs.lines()
	h.emu.FailNext(http.MethodPost, "/api/v2/notifications/channels", http.StatusServiceUnavailable, 0, 3)
	h.emu.RemoveChannelsOf(as[0].ID)
	c := h.emu.InboundCall(as[0].ID, "+13175550194", notificationstest.Options{}).Alert()
	col.await(t, 15*time.Second, "the call that rang while the channel was replaced", c, as[0].ID)

	if n := dials() - before; n != 1 {
		t.Errorf("the gone channel's socket was dialled %d times after it went, want once: its 404 said it is gone", n)
	}
	if said := countLines(h.logs.lines(), "genesys channel gone, creating a new one"); said != 1 {
		t.Errorf("%d lines say the channel is gone, want 1", said)
	}
	h.stop()
	<-col.done
}
