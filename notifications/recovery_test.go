package notifications_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// A queue that empties closes its shard's socket; when agents come back
// the shard must get a socket (and a reconciliation) again, not report
// itself connected on a socket it closed.
func TestClient_AShardEmptiedAndRefilledDeliversAgain(t *testing.T) {
	as := agents(1)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, Queues: map[string][]string{"Q1": ids(as)}},
		func(c *notifications.Config) { c.Queues = []string{"Q1"} }, 64)
	col := collect(h.out)
	h.awaitReady(5 * time.Second)

	h.emu.SetQueueMembers("Q1", nil)
	waitFor(t, 5*time.Second, "the socket closed after the queue emptied", func() bool {
		chs := h.emu.Channels()
		return len(chs) == 1 && !chs[0].Connected
	})
	h.emu.SetQueueMembers("Q1", ids(as))
	waitFor(t, 5*time.Second, "the agent's topic delivered again", func() bool {
		return h.emu.IsDelivered("v2.users." + as[0].ID + ".conversations")
	})
	c := h.emu.InboundCall(as[0].ID, "+13175550101", notificationstest.Options{}).Alert()
	col.await(t, 5*time.Second, "the call after the refill", c, as[0].ID)
	h.stop()
	<-col.done
}

// The service may accept the upgrade for a channel that is gone and then
// send {"result":"404"} and close: the client must create a new channel,
// not redial the dead one.
func TestClient_AChannelGoneAsResult404IsReplaced(t *testing.T) {
	as := agents(2)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, GoneAsResult: true},
		func(c *notifications.Config) { c.Agents = ids(as) }, 64)
	col := collect(h.out)
	h.awaitReady(5 * time.Second)
	const channels = "/api/v2/notifications/channels"
	creates := h.emu.CountRequests(http.MethodPost, channels)
	old := h.emu.Channels()

	h.emu.ExpireChannels()
	waitFor(t, 5*time.Second, "a new channel connected", func() bool {
		for _, ch := range h.emu.Channels() {
			if ch.Connected && !containsID(old, ch.ID) && ch.Topics == 2 {
				return true
			}
		}
		return false
	})
	if n := h.emu.CountRequests(http.MethodPost, channels) - creates; n != 1 {
		t.Errorf("channels created after the result 404 = %d, want 1", n)
	}
	if n := h.client.Status().(notifications.Status).Channels[0].Reconnects; n > 3 {
		t.Errorf("reconnects = %d: the dead channel was redialled", n)
	}
	c := h.emu.InboundCall(as[1].ID, "+13175550102", notificationstest.Options{}).Alert()
	col.await(t, 5*time.Second, "a call on the new channel", c, as[1].ID)
	h.stop()
	<-col.done
}

// A streaming host that refuses the upgrade of a socket for a dead channel
// with 401 or 403 instead of 404 (undocumented; other clients handle both)
// gets a new channel too, not the dead one redialled for good.
func TestClient_AChannelRefusedAtUpgradeIsReplaced(t *testing.T) {
	for _, status := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			as := agents(2)
			h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, GoneStatus: status},
				func(c *notifications.Config) { c.Agents = ids(as) }, 64)
			col := collect(h.out)
			h.awaitReady(5 * time.Second)
			old := h.emu.Channels()

			h.emu.ExpireChannels()
			waitFor(t, 5*time.Second, "a new channel connected", func() bool {
				for _, ch := range h.emu.Channels() {
					if ch.Connected && !containsID(old, ch.ID) && ch.Topics == 2 {
						return true
					}
				}
				return false
			})
			c := h.emu.InboundCall(as[1].ID, "+13175550102", notificationstest.Options{}).Alert()
			col.await(t, 5*time.Second, "a call on the new channel", c, as[1].ID)
			h.stop()
			<-col.done
		})
	}
}

// cutProxy forwards to the emulator; while cut is set it accepts each
// channel socket and closes it at once, as a proxy that drops websockets
// does.
type cutProxy struct {
	rp     *httputil.ReverseProxy
	cut    atomic.Bool
	refuse atomic.Int32 // refuse channel upgrades with this status
	dials  atomic.Int64
}

func (p *cutProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/channels/") {
		p.dials.Add(1)
		if st := p.refuse.Load(); st != 0 {
			http.Error(w, "refused", int(st))
			return
		}
		if p.cut.Load() {
			up := websocket.Upgrader{}
			if ws, err := up.Upgrade(w, r, nil); err == nil {
				_ = ws.Close()
			}
			return
		}
	}
	p.rp.ServeHTTP(w, r)
}

// startBehindProxy starts a client for as whose API and sockets go through
// a cutProxy in front of the emulator.
func startBehindProxy(t *testing.T, as []notificationstest.AgentSpec) (*harness, *cutProxy) {
	t.Helper()
	px := &cutProxy{}
	h := startBehind(t, as, px, func(rp *httputil.ReverseProxy) { px.rp = rp }, nil)
	return h, px
}

// startBehind starts a client for as whose API and sockets go through px,
// a proxy that forwards to the emulator with the reverse proxy setRP gives
// it; more, if any, adjusts the client's config further.
func startBehind(t *testing.T, as []notificationstest.AgentSpec, px http.Handler, setRP func(*httputil.ReverseProxy), more func(*notifications.Config)) *harness {
	t.Helper()
	return startBehindWith(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond}, px, setRP, more)
}

// startBehindWith is startBehind with the emulator's config ecfg (the
// client watches ecfg.Agents unless more says otherwise).
func startBehindWith(t *testing.T, ecfg notificationstest.Config, px http.Handler, setRP func(*httputil.ReverseProxy), more func(*notifications.Config)) *harness {
	t.Helper()
	var srv *httptest.Server
	h := start(t, ecfg,
		func(c *notifications.Config) {
			u, err := url.Parse(c.APIURL)
			if err != nil {
				t.Fatal(err)
			}
			setRP(httputil.NewSingleHostReverseProxy(u))
			srv = httptest.NewServer(px)
			c.APIURL = srv.URL
			c.Agents = ids(ecfg.Agents)
			if more != nil {
				more(c)
			}
		}, 64)
	t.Cleanup(func() { srv.Close() })
	return h
}

// A socket that closes as soon as it opens is redialled with the backoff,
// not in a loop (each redial also starts a reconciliation).
func TestClient_ASocketClosedAtOnceIsRedialledWithBackoff(t *testing.T) {
	as := agents(1)
	h, px := startBehindProxy(t, as)
	col := collect(h.out)
	h.awaitReady(5 * time.Second)

	d0 := px.dials.Load()
	px.cut.Store(true)
	h.emu.DropConnections()
	time.Sleep(2 * time.Second)
	px.cut.Store(false)
	// BackoffMin 20 ms doubling to BackoffMax 300 ms: about ten dials in 2 s.
	if n := px.dials.Load() - d0; n > 20 {
		t.Errorf("%d dials in 2 s of sockets closed at once: no backoff", n)
	}
	h.awaitReady(5 * time.Second)
	c := h.emu.InboundCall(as[0].ID, "+13175550103", notificationstest.Options{}).Alert()
	col.await(t, 5*time.Second, "a call once sockets stay open", c, as[0].ID)
	h.stop()
	<-col.done
}

// A proxy that refuses every websocket upgrade with 403 makes each channel
// look refused: the client redials with its backoff and does not make a
// channel per attempt, and pops come back once the proxy lets sockets
// through.
func TestClient_EveryUpgradeRefusedMakesChannelsWithBackoff(t *testing.T) {
	as := agents(1)
	h, px := startBehindProxy(t, as)
	col := collect(h.out)
	h.awaitReady(5 * time.Second)
	const channels = "/api/v2/notifications/channels"
	creates, d0 := h.emu.CountRequests(http.MethodPost, channels), px.dials.Load()
	px.refuse.Store(http.StatusForbidden)
	h.emu.DropConnections()
	time.Sleep(3 * time.Second)
	px.refuse.Store(0)
	// One new channel (the current one's refusal reads as gone), then that
	// one again: its subscription shows it exists, so the path refuses.
	if n := h.emu.CountRequests(http.MethodPost, channels) - creates; n > 1 {
		t.Errorf("%d channels made in 3 s of refused upgrades, want at most 1: each would evict another", n)
	}
	// BackoffMin 20 ms doubling to BackoffMax 300 ms: about 13 attempts in
	// 3 s, each dialling the current channel and the pending one.
	if n := px.dials.Load() - d0; n > 50 {
		t.Errorf("%d dials in 3 s of refused upgrades: no backoff", n)
	}
	h.awaitReady(10 * time.Second)
	c := h.emu.InboundCall(as[0].ID, "+13175550104", notificationstest.Options{}).Alert()
	col.await(t, 10*time.Second, "a call once upgrades go through", c, as[0].ID)
	h.stop()
	<-col.done
}

// A handover whose channel creation is rate limited waits for the
// Retry-After before trying again, whichever trigger comes next.
func TestClient_HandoverHonoursRetryAfter(t *testing.T) {
	as := agents(1)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, SocketClosingGrace: 30 * time.Second},
		func(c *notifications.Config) { c.Agents = ids(as) }, 64)
	h.awaitReady(5 * time.Second)
	awaitSockets(t, h, 1)
	const channels = "/api/v2/notifications/channels"
	creates := h.emu.CountRequests(http.MethodPost, channels)
	old := h.emu.Channels()
	h.emu.FailNext(http.MethodPost, channels, http.StatusTooManyRequests, 2*time.Second, 1)
	begin := time.Now()
	h.emu.SocketClosing()
	waitFor(t, 8*time.Second, "the handover done", func() bool {
		for _, ch := range h.emu.Channels() {
			if ch.Connected && !containsID(old, ch.ID) && ch.Topics == 1 {
				return true
			}
		}
		return false
	})
	if el := time.Since(begin); el < 2*time.Second {
		t.Errorf("handed over %v after a 429 with Retry-After 2s", el)
	}
	if n := h.emu.CountRequests(http.MethodPost, channels) - creates; n != 2 {
		t.Errorf("channel creations = %d, want 2 (the 429 and one after its Retry-After)", n)
	}
}

// A reconciliation whose activity query is rate limited waits for the
// Retry-After, not its own shorter backoff.
func TestClient_ReconciliationHonoursRetryAfter(t *testing.T) {
	as := agents(1)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as) }, 64)
	h.awaitStartupReconciliation()
	before := h.emu.CountRequests(http.MethodPost, activityQuery)
	h.emu.FailNext(http.MethodPost, activityQuery, http.StatusTooManyRequests, 2*time.Second, 1)
	h.emu.DropConnections()
	waitFor(t, 5*time.Second, "the rate-limited query", func() bool { return h.emu.CountRequests(http.MethodPost, activityQuery) > before })
	first := time.Now()
	waitFor(t, 8*time.Second, "the query retried", func() bool { return h.emu.CountRequests(http.MethodPost, activityQuery) > before+1 })
	if el := time.Since(first); el < 1900*time.Millisecond {
		t.Errorf("retried %v after a 429 with Retry-After 2s", el)
	}
}

// A conversation the client may not read is skipped; the others of the
// same reconciliation are still handed on.
func TestClient_ReconciliationSkipsAForbiddenConversation(t *testing.T) {
	as := agents(2)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as) }, 64)
	col := collect(h.out)
	h.awaitStartupReconciliation()

	h.emu.SetBlackhole(true)
	c1 := h.emu.InboundCall(as[0].ID, "+13175550104", notificationstest.Options{}).Alert()
	c2 := h.emu.InboundCall(as[1].ID, "+13175550105", notificationstest.Options{}).Alert()
	// One of them the client may not read, however often it asks.
	h.emu.FailNext(http.MethodGet, "/api/v2/conversations/"+c1.ID(), http.StatusForbidden, 0, 1000)
	h.emu.SetBlackhole(false)
	h.emu.DropConnections()
	k1 := legKey{c1.ID(), c1.AgentParticipantID(), as[0].ID}
	k2 := legKey{c2.ID(), c2.AgentParticipantID(), as[1].ID}
	var logs strings.Builder
	logged := func(msg string) func() bool {
		return func() bool {
			for _, l := range h.logs.lines() {
				logs.WriteString(l)
			}
			return strings.Contains(logs.String(), msg)
		}
	}
	waitFor(t, 8*time.Second, "the forbidden conversation logged", logged("reconciliation cannot read a conversation"))
	waitFor(t, 8*time.Second, "the readable conversation reconciled", func() bool { return col.has(k2) })
	// The pass with the 403 completes (a failing pass would be retried
	// and never say done after it).
	i := strings.Index(logs.String(), "reconciliation cannot read a conversation")
	waitFor(t, 8*time.Second, "the reconciliation done after the 403", func() bool {
		logged("")()
		return strings.Contains(logs.String()[i:], "genesys reconciliation done")
	})
	if col.has(k1) {
		t.Fatal("the conversation answered 403 was handed on")
	}
	h.stop()
	<-col.done
}

// The channel id is the socket's only credential: it appears in no log
// line and not in /status.
func TestClient_NeverWritesAChannelID(t *testing.T) {
	as := agents(1)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, SocketClosingGrace: 300 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as) }, 64)
	h.awaitReady(5 * time.Second)
	seen := map[string]bool{}
	var logs strings.Builder
	handovers := func(n int) func() bool {
		return func() bool {
			for _, ch := range h.emu.Channels() {
				seen[ch.ID] = true
			}
			for _, l := range h.logs.lines() {
				logs.WriteString(l)
			}
			return strings.Count(logs.String(), "genesys channel handed over") >= n
		}
	}
	awaitSockets(t, h, 1)
	first := h.emu.Channels()
	h.emu.SocketClosing() // a handover: a second channel, more log lines
	waitFor(t, 5*time.Second, "the first handover", handovers(1))
	// Wait for the emulator to see the new socket, and the old one closed
	// after its grace, or the next system message reaches only the old one.
	waitFor(t, 5*time.Second, "the emulator to see only the new socket", func() bool {
		n := 0
		for _, ch := range h.emu.Channels() {
			if ch.Connected {
				if containsID(first, ch.ID) {
					return false
				}
				n++
			}
		}
		return n == 1
	})
	h.emu.NoLongerSubscribed() // a system topic that names the channel
	waitFor(t, 5*time.Second, "the second handover", handovers(2))
	st := h.client.Status().(notifications.Status)
	h.stop()
	handovers(0)()
	for id := range seen {
		if strings.Contains(logs.String(), id) {
			t.Errorf("channel id %s is in the logs", id)
		}
		for _, ch := range st.Channels {
			if ch.ID == id {
				t.Errorf("channel id %s is in /status", id)
			}
		}
	}
	if len(seen) < 3 {
		t.Errorf("%d channels seen, want 3: the test did not exercise the handovers' log lines", len(seen))
	}
	if len(st.Channels) == 0 || !strings.HasPrefix(st.Channels[0].ID, "streaming-") {
		t.Errorf("status names no channel at all: %+v", st.Channels)
	}
}

// Two programs on one OAuth client take each other's topics (the
// emulator's reading of no_longer_subscribed with reason
// another_channel_subscribed): each hands over again only after a growing
// backoff, and says why in an error line, instead of a new channel each
// time the other takes the topics.
func TestClient_TwoInstancesOnOneClientBackOff(t *testing.T) {
	as := agents(1)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, ExclusiveTopics: true},
		func(c *notifications.Config) { c.Agents = ids(as) }, 64)
	h.awaitReady(5 * time.Second)

	cfg := compressed(h.emu.URL())
	cfg.Agents = ids(as)
	cfg.Registerer = prometheus.NewRegistry()
	log, logs := newLog(t)
	out := make(chan bridge.Snapshot, 64)
	go func() {
		for range out {
		}
	}()
	other, err := notifications.New(cfg, log, out)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- other.Run(ctx) }()
	const channels = "/api/v2/notifications/channels"
	before := h.emu.CountRequests(http.MethodPost, channels)
	time.Sleep(4 * time.Second)
	n := h.emu.CountRequests(http.MethodPost, channels) - before
	cancel()
	if err := <-done; err != nil {
		t.Errorf("the second instance's Run: %v", err)
	}
	close(out)
	// Taking the topics back at once, they made about 30 channels in 4 s
	// between them; from the second loss within a minute each waits
	// 2.5-5 s, then longer.
	if n > 6 {
		t.Errorf("%d channels created in 4 s by two instances on one client: no backoff", n)
	}
	all := strings.Join(append(h.logs.lines(), logs.lines()...), "")
	losses := strings.Count(all, "genesys channel no longer subscribed, handing over") + strings.Count(all, "genesys keeps taking this channel's topics away")
	named := strings.Contains(all, `"level":"error"`) && strings.Contains(all, "another screenpopd or program using the same OAuth client")
	// The exchange may also stop by itself (a channel that loses its
	// topic before its socket is open hears nothing of it); if it went
	// on, an error line says why.
	if losses > 2 && !named {
		t.Errorf("%d losses of the topics and no error line names the shared OAuth client", losses)
	}
}

// Topics taken away a second time within a minute are not taken back at
// once; if the socket drops meanwhile, its reconnect (to the same, emptied
// channel) must put them back, not find its last topic list unchanged.
func TestClient_TopicsTakenThenSocketDroppedArePutBack(t *testing.T) {
	as := agents(1)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as) }, 64)
	col := collect(h.out)
	h.awaitReady(5 * time.Second)
	topic := "v2.users." + as[0].ID + ".conversations"
	var logs strings.Builder
	logged := func(msg string) func() bool {
		return func() bool {
			for _, l := range h.logs.lines() {
				logs.WriteString(l)
			}
			return strings.Contains(logs.String(), msg)
		}
	}
	awaitSockets(t, h, 1)
	h.emu.NoLongerSubscribed()
	waitFor(t, 5*time.Second, "the first handover", logged("genesys channel handed over"))
	awaitSockets(t, h, 1)
	h.emu.NoLongerSubscribed()
	waitFor(t, 5*time.Second, "the backoff", logged("genesys keeps taking this channel's topics away"))
	h.emu.DropConnections()
	waitFor(t, 2*time.Second, "the topic delivered again before the backoff ends", func() bool { return h.emu.IsDelivered(topic) })
	c := h.emu.InboundCall(as[0].ID, "+13175550106", notificationstest.Options{}).Alert()
	col.await(t, 2*time.Second, "a call after the reconnect", c, as[0].ID)
	h.stop()
	<-col.done
}

// A rate-limited subscription change waits for its Retry-After without
// holding up the shard: a socket lost meanwhile is reconnected at once.
func TestClient_ARateLimitedSubscriptionDoesNotHoldTheShard(t *testing.T) {
	as := agents(2)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, Queues: map[string][]string{"Q1": {as[0].ID}}},
		func(c *notifications.Config) { c.Queues = []string{"Q1"} }, 64)
	h.awaitReady(5 * time.Second)
	awaitSockets(t, h, 1)
	h.emu.FailNext(http.MethodPut, "/api/v2/notifications/channels/", http.StatusTooManyRequests, 3*time.Second, 1)
	puts := h.emu.CountRequests(http.MethodPut, "/api/v2/notifications/channels/")
	h.emu.SetQueueMembers("Q1", ids(as)) // a second agent: a subscription change
	waitFor(t, 5*time.Second, "the rate-limited PUT", func() bool {
		return h.emu.CountRequests(http.MethodPut, "/api/v2/notifications/channels/") > puts
	})
	h.emu.DropConnections()
	waitFor(t, time.Second, "the socket back within the Retry-After", func() bool {
		for _, ch := range h.emu.Channels() {
			if ch.Connected {
				return true
			}
		}
		return false
	})
	waitFor(t, 8*time.Second, "the second agent subscribed", func() bool { return h.emu.SubscribedConnected() == 2 })
}

// awaitSockets waits until the emulator has n subscribed topics on
// connected sockets. It registers a socket just after the client's dial
// returns, so a system message sent as soon as the client is ready can
// reach no socket at all.
func awaitSockets(t *testing.T, h *harness, n int) {
	t.Helper()
	waitFor(t, 5*time.Second, "the emulator to see the sockets", func() bool { return h.emu.SubscribedConnected() == n })
}

// The activity query truncates an agent's list past some length, keeping
// the oldest and the newest conversations: one that alerted during the
// gap between them must still be reconciled.
func TestClient_ReconciliationFindsAnAlertingConversationATruncatedListLeftOut(t *testing.T) {
	as := agents(1)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, ActivityEntityLimit: 2},
		func(c *notifications.Config) { c.Agents = ids(as) }, 64)
	col := collect(h.out)
	h.awaitStartupReconciliation()

	h.emu.SetBlackhole(true)
	oldest := h.emu.InboundCall(as[0].ID, "+13175550106", notificationstest.Options{}).Alert().Connect()
	ringing := h.emu.InboundCall(as[0].ID, "+13175550107", notificationstest.Options{}).Alert()
	newest := h.emu.InboundCall(as[0].ID, "+13175550108", notificationstest.Options{}).Alert().Connect()
	h.emu.SetBlackhole(false)
	h.emu.DropConnections()

	col.await(t, 8*time.Second, "the ringing conversation reconciled", ringing, as[0].ID)
	for _, c := range []*notificationstest.Conversation{oldest, newest} {
		col.await(t, 8*time.Second, "the listed conversations reconciled", c, as[0].ID)
	}
	h.stop()
	<-col.done
}

// The activity query's answer is paged by group, with no total, and its
// default page size is not documented (the emulator's is 25): forty agents
// whose calls rang during a gap are all reconciled, not the first page's.
func TestClient_ReconciliationReadsEveryPageOfActivity(t *testing.T) {
	as := agents(40)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as) }, 256)
	col := collect(h.out)
	h.awaitStartupReconciliation()

	h.emu.SetBlackhole(true)
	ringing := make([]*notificationstest.Conversation, len(as))
	for i, a := range as {
		ringing[i] = h.emu.InboundCall(a.ID, fmt.Sprintf("+1317555%04d", i), notificationstest.Options{}).Alert()
	}
	h.emu.SetBlackhole(false)
	h.emu.DropConnections()

	for i, c := range ringing {
		col.await(t, 10*time.Second, "every agent's ringing call reconciled", c, as[i].ID)
	}
	h.stop()
	<-col.done
}

const activityQuery = "/api/v2/analytics/conversations/activity/query"

// awaitStartupReconciliation waits until the client is ready and its
// start-up reconciliation is done: a conversation made after it is news
// to the client. It consumes the log lines so far.
func (h *harness) awaitStartupReconciliation() {
	h.t.Helper()
	h.awaitReady(5 * time.Second)
	// Every shard's: the shards connect one after another, and the first
	// pass may cover the first one only.
	watched := h.client.Status().(notifications.Status).Agents
	agentsField := regexp.MustCompile(`"agents":(\d+)`)
	done := 0 // lines() hands each line once
	waitFor(h.t, 10*time.Second, "the start-up reconciliation", func() bool {
		for _, l := range h.logs.lines() {
			// A pass that gave way to the next shard's gap has asked
			// about its agents too.
			if strings.Contains(l, "genesys reconciliation done") || strings.Contains(l, "genesys reconciliation giving way") {
				if m := agentsField.FindStringSubmatch(l); m != nil {
					n, _ := strconv.Atoi(m[1])
					done += n
				}
			}
		}
		return done >= watched
	})
}

// A channel kept after its upgrade was refused, and then really gone (it
// expired, or another channel of the client evicted it, while the proxy
// refused sockets), is not redialled for good once the proxy lets sockets
// through: its next attempt learns it is gone and makes a new one.
func TestClient_AKeptChannelThatIsGoneIsReplaced(t *testing.T) {
	as := agents(1)
	h, px := startBehindProxy(t, as)
	col := collect(h.out)
	h.awaitReady(5 * time.Second)
	old := h.emu.Channels()
	px.refuse.Store(http.StatusForbidden)
	h.emu.DropConnections()
	// The current channel's refusal reads as gone: a new one is made,
	// subscribed, refused too and kept.
	waitFor(t, 5*time.Second, "a new channel subscribed", func() bool {
		for _, ch := range h.emu.Channels() {
			if !containsID(old, ch.ID) && ch.Topics == 1 {
				return true
			}
		}
		return false
	})
	h.emu.ExpireChannels()
	px.refuse.Store(0)
	waitFor(t, 10*time.Second, "a channel connected once upgrades go through", func() bool {
		return h.emu.SubscribedConnected() == 1
	})
	c := h.emu.InboundCall(as[0].ID, "+13175550105", notificationstest.Options{}).Alert()
	col.await(t, 5*time.Second, "a call on the new channel", c, as[0].ID)
	h.stop()
	<-col.done
}
