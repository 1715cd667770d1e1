package notifications_test

import (
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/tidwall/gjson"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// alertCounter passes the client's snapshots through the bridge's
// normalizer, as the daemon does, and counts per agent leg the alerting
// events it emits: each is a pop the agent's browser shows. It counts the
// alerting snapshots too: a reconciliation hands in again what it finds
// ringing, which the normalizer takes as a duplicate.
type alertCounter struct {
	mu        sync.Mutex
	pops      map[legKey]int
	snapshots map[legKey]int
	done      chan struct{}
}

func countAlerts(t *testing.T, out <-chan bridge.Snapshot) *alertCounter {
	n, err := bridge.NewNormalizer(bridge.NormalizerConfig{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	c := &alertCounter{pops: map[legKey]int{}, snapshots: map[legKey]int{}, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for s := range out {
			conv := gjson.GetBytes(s.Body, "id").Str
			c.mu.Lock()
			gjson.GetBytes(s.Body, "participants").ForEach(func(_, p gjson.Result) bool {
				if p.Get("userId").Str == string(s.Agent) && p.Get("calls.0.state").Str == "alerting" {
					c.snapshots[legKey{conv, p.Get("id").Str, string(s.Agent)}]++
				}
				return true
			})
			for _, e := range n.Normalize(s) {
				if e.State == bridge.StateAlerting {
					c.pops[legKey{string(e.ConversationID), string(e.Agent.ParticipantID), string(e.Agent.UserID)}]++
				}
			}
			c.mu.Unlock()
		}
	}()
	return c
}

// count returns the pops and the alerting snapshots of agent's leg of conv.
func (c *alertCounter) count(conv *notificationstest.Conversation, agent string) (pops, snapshots int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := legKey{conv.ID(), conv.AgentParticipantID(), agent}
	return c.pops[k], c.snapshots[k]
}

// TestClient_AKeptChannelGoneAsResultPopsOnce: a connected channel goes
// (expired, evicted) and Genesys tells it the other way (GoneAsResult): the
// redial of the kept channel is accepted and told {"result":"404"} at once.
// The shard makes a new channel at once; the kept socket and the new one
// each ask for a reconciliation. The call that rang while the channel went
// must pop once, not twice (once per reconciliation), and a call that rings
// once the new channel is up pops once too.
func TestClient_AKeptChannelGoneAsResultPopsOnce(t *testing.T) {
	as := agents(1)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, GoneAsResult: true},
		func(c *notifications.Config) { c.Agents = ids(as) }, 64)
	cnt := countAlerts(t, h.out)
	h.awaitReady(5 * time.Second)
	first := h.emu.Channels()[0].ID
	_ = h.logs.lines()

	h.emu.RemoveChannelsOf(as[0].ID)
	during := h.emu.InboundCall(as[0].ID, "+13175550195", notificationstest.Options{}).Alert()
	waitFor(t, 10*time.Second, "a new channel connected", func() bool {
		chs := h.emu.Channels()
		st := h.client.Status().(notifications.Status)
		return len(chs) == 1 && chs[0].ID != first && len(st.Channels) == 1 && st.Channels[0].Connected
	})
	waitFor(t, 10*time.Second, "the call that rang while the channel went popped", func() bool { n, _ := cnt.count(during, as[0].ID); return n > 0 })
	after := h.emu.InboundCall(as[0].ID, "+13175550196", notificationstest.Options{}).Alert()
	waitFor(t, 10*time.Second, "the call that rang on the new channel popped", func() bool { n, _ := cnt.count(after, as[0].ID); return n > 0 })
	time.Sleep(time.Second) // any late reconciliation

	if kept := countLines(h.logs.lines(), "its channel gone meanwhile, reconnecting to a new one"); kept != 1 {
		t.Errorf("%d lines say the kept channel went meanwhile, want 1: its redial was told result 404", kept)
	}
	n, snaps := cnt.count(during, as[0].ID)
	t.Logf("the call that rang while the channel went: %d alerting snapshots (one per reconciliation), %d pops", snaps, n)
	if n != 1 {
		t.Errorf("the call that rang while the channel went popped %d times, want once", n)
	}
	if n, _ := cnt.count(after, as[0].ID); n != 1 {
		t.Errorf("the call that rang on the new channel popped %d times, want once", n)
	}
	if n := h.emu.CountRequests(http.MethodPost, "/api/v2/notifications/channels"); n != 2 {
		t.Errorf("%d channels made, want 2: the first, gone, and its replacement", n)
	}
	h.stop()
	<-cnt.done
}

// TestClient_ChannelsEvictingEachOtherAsResultBackOff: more channels wanted
// than Genesys keeps for the OAuth client (here two shards and room for
// one, as two programs on one client wanting 21 between them): each new
// channel evicts the other shard's, whose redial is then told
// {"result":"404"} (GoneAsResult) on a kept channel and makes a new one at
// once. That must not become a tight loop: the new channel's socket, lost
// soon after it opened, waits the growing backoff, so channel creations,
// and the warnings, stay few.
func TestClient_ChannelsEvictingEachOtherAsResultBackOff(t *testing.T) {
	as := agents(2)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, GoneAsResult: true, MaxChannels: 1},
		func(c *notifications.Config) {
			c.Agents, c.TopicsPerChannel = ids(as), 1
			c.BackoffMin, c.BackoffMax = 0, 0 // the daemon's: 500 ms doubling to 60 s
		}, 64)
	col := collect(h.out)
	time.Sleep(8 * time.Second)
	made := h.emu.CountRequests(http.MethodPost, "/api/v2/notifications/channels")
	lines := h.logs.lines()
	kept := countLines(lines, "its channel gone meanwhile, reconnecting to a new one")
	backedOff := countLines(lines, "reconnecting after a backoff", "genesys channel not connected, retrying")
	t.Logf("in 8 s: %d channels made, %d log lines, %d kept channels replaced at once, %d backoffs", made, len(lines), kept, backedOff)
	if made > 40 {
		t.Errorf("%d channels made in 8 s by two shards evicting each other, want at most 40: a tight reconnect loop (%d kept channels replaced at once, %d backoffs)", made, kept, backedOff)
	}
	if len(lines) > 400 {
		t.Errorf("%d log lines in 8 s: a log flood", len(lines))
	}
	h.stop()
	<-col.done
}

// goneAtUpgrade forwards to the emulator; while armed, it removes the
// channel of every socket upgrade it forwards first (as Genesys evicting
// it just then), so that the emulator (GoneAsResult) accepts the socket
// and tells it {"result":"404"} at once, while channels are still made
// and subscribed.
type goneAtUpgrade struct {
	rp    *httputil.ReverseProxy
	emu   atomic.Pointer[notificationstest.Emulator]
	agent string
	armed atomic.Bool
}

func (p *goneAtUpgrade) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.armed.Load() && strings.HasPrefix(r.URL.Path, "/channels/") {
		p.emu.Load().RemoveChannelsOf(p.agent)
	}
	p.rp.ServeHTTP(w, r)
}

// TestClient_EverySocketToldGoneAtOnceBacksOff: channels are made and
// subscribed, but every socket is told {"result":"404"} as soon as it
// opens. Only the kept channel's socket (the redial after its socket
// dropped) is replaced at once; each new channel's must wait the growing
// backoff, or the shard makes a channel (evicting the OAuth client's
// others past 20), a reconciliation and warnings in a tight loop. Once the
// sockets stay up, the call that rang meanwhile pops once.
func TestClient_EverySocketToldGoneAtOnceBacksOff(t *testing.T) {
	as := agents(1)
	px := &goneAtUpgrade{agent: as[0].ID}
	h := startBehindWith(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, GoneAsResult: true}, px,
		func(rp *httputil.ReverseProxy) { px.rp = rp },
		func(c *notifications.Config) { c.BackoffMin, c.BackoffMax = 0, 0 }) // the daemon's: 500 ms doubling to 60 s
	px.emu.Store(h.emu)
	cnt := countAlerts(t, h.out)
	h.awaitReady(5 * time.Second)
	made := func() int { return h.emu.CountRequests(http.MethodPost, "/api/v2/notifications/channels") }
	before := made()
	_ = h.logs.lines()

	px.armed.Store(true)
	h.emu.DropConnections()
	time.Sleep(6 * time.Second)
	px.armed.Store(false)
	n := made() - before
	lines := h.logs.lines()
	kept, all := countLines(lines, "its channel gone meanwhile, reconnecting to a new one"), len(lines)
	backedOff := countLines(lines, "reconnecting after a backoff")
	t.Logf("in 6 s of sockets told gone at once: %d channels made, %d replaced at once as kept, %d backoffs, %d log lines", n, kept, backedOff, all)
	if kept != 1 {
		t.Errorf("%d sockets replaced at once as kept channels gone meanwhile, want 1 (the redial of the dropped socket's channel): a new channel told gone at once must wait the backoff", kept)
	}
	// 500 ms doubling, jittered down to half: at most about six rounds in 6 s.
	if n > 10 {
		t.Errorf("%d channels made in 6 s while every socket was told gone at once, want at most 10: a tight loop", n)
	}

	conv := h.emu.InboundCall(as[0].ID, "+13175550197", notificationstest.Options{}).Alert()
	waitFor(t, 90*time.Second, "the call that rang once the sockets stayed up popped", func() bool { n, _ := cnt.count(conv, as[0].ID); return n > 0 })
	time.Sleep(500 * time.Millisecond)
	if n, _ := cnt.count(conv, as[0].ID); n != 1 {
		t.Errorf("the call popped %d times, want once", n)
	}
	h.stop()
	<-cnt.done
}

// TestClient_AGoneChannelForgottenWhileTheShardEmptiesAndRefills: the
// connected channel goes and its redial is refused (404); making the new
// one fails for a while (503). Meanwhile every agent of the shard leaves
// and another one comes. The gone channel, forgotten with its 404, must
// not be dialled again; on-call's /status meanwhile says why there is no
// channel; once Genesys makes channels again the new agent's channel holds
// only that agent's topic and the call ringing for them pops once.
func TestClient_AGoneChannelForgottenWhileTheShardEmptiesAndRefills(t *testing.T) {
	as := agents(2)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as[:1]) }, 64)
	cnt := countAlerts(t, h.out)
	h.awaitStartupReconciliation()
	gone := h.emu.Channels()[0].ID
	dials := func() int { return h.emu.CountRequests(http.MethodGet, "/channels/"+gone) }
	before := dials()

	h.emu.FailNext(http.MethodPost, "/api/v2/notifications/channels", http.StatusServiceUnavailable, 0, 4)
	h.emu.RemoveChannelsOf(as[0].ID)
	waitFor(t, 5*time.Second, "the new channel's creation failing", func() bool {
		st := h.client.Status().(notifications.Status)
		return len(st.Channels) == 1 && !st.Channels[0].Connected && strings.Contains(st.Channels[0].LastError, "503")
	})
	// On-call's /status meanwhile: no channel, so no expiry and no topic
	// subscribed either, not the gone channel's.
	if st := h.client.Status().(notifications.Status).Channels[0]; st.ID != "" || st.Expires != "" || st.Subscribed != 0 {
		t.Errorf("/status while no channel can be made: id %q, expires %q, %d topics subscribed; want none of the gone channel's (lastError %q)", st.ID, st.Expires, st.Subscribed, st.LastError)
	}
	if err := h.client.SetAgents(nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := h.client.SetAgents(ids(as[1:])); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "a channel for the new agent", func() bool {
		st := h.client.Status().(notifications.Status)
		return h.emu.IsDelivered("v2.users."+as[1].ID+".conversations") && len(st.Channels) == 1 && st.Channels[0].Connected
	})
	conv := h.emu.InboundCall(as[1].ID, "+13175550198", notificationstest.Options{}).Alert()
	waitFor(t, 10*time.Second, "the new agent's call popped", func() bool { n, _ := cnt.count(conv, as[1].ID); return n > 0 })
	time.Sleep(500 * time.Millisecond)

	if n := dials() - before; n != 1 {
		t.Errorf("the gone channel's socket was dialled %d times after it went, want once", n)
	}
	if n, _ := cnt.count(conv, as[1].ID); n != 1 {
		t.Errorf("the new agent's call popped %d times, want once", n)
	}
	for _, ch := range h.emu.Channels() {
		if ch.Topics != 1 {
			t.Errorf("channel %s holds %d topics, want only the new agent's", ch.ID, ch.Topics)
		}
	}
	if st := h.client.Status().(notifications.Status); st.Channels[0].ID == "" {
		t.Errorf("/status names no channel once connected: %+v", st.Channels)
	}
	h.stop()
	<-cnt.done
}
