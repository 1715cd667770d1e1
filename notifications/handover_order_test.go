package notifications_test

import (
	"fmt"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// slowProxy forwards to the emulator and holds (or refuses) every channel
// socket's upgrade while set, as a streaming host that is slow to accept,
// or refuses, new sockets while the ones open keep working.
type slowProxy struct {
	rp     *httputil.ReverseProxy
	delay  atomic.Int64 // nanoseconds each upgrade is held
	refuse atomic.Int32 // refuse upgrades with this status
	dials  atomic.Int64
}

func (p *slowProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/channels/") {
		p.dials.Add(1)
		if st := p.refuse.Load(); st != 0 {
			http.Error(w, "refused", int(st))
			return
		}
		if d := p.delay.Load(); d > 0 {
			time.Sleep(time.Duration(d))
		}
	}
	p.rp.ServeHTTP(w, r)
}

// startExclusive starts a client for as behind a slowProxy, against an
// emulator where a topic subscribed on a second channel of the OAuth
// client is taken from the first (ExclusiveTopics: the reference's reading
// of reason another_channel_subscribed, genesys.md §3 "Other system
// topics", which it asks to test), and whose socket_closing leaves the old
// socket open long enough for the handover.
func startExclusive(t *testing.T, as []notificationstest.AgentSpec) (*harness, *slowProxy) {
	t.Helper()
	px := &slowProxy{}
	h := startBehindWith(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, ExclusiveTopics: true, SocketClosingGrace: 30 * time.Second},
		px, func(rp *httputil.ReverseProxy) { px.rp = rp }, nil)
	return h, px
}

// liveSeen records the conversations read from a socket (not reconciled).
type liveSeen struct {
	mu   sync.Mutex
	ids  map[string]bool
	done chan struct{}
}

func readLive(h *harness) *liveSeen {
	l := &liveSeen{ids: map[string]bool{}, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for s := range h.out {
			if !s.Reconciled {
				l.mu.Lock()
				l.ids[gjson.GetBytes(s.Body, "id").Str] = true
				l.mu.Unlock()
			}
		}
	}()
	return l
}

func (l *liveSeen) has(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ids[id]
}

// A handover (socket_closing, expiry, token refresh) must leave no moment
// in which the agents' topics reach no socket (docs/genesys.md: "so no
// moment is uncovered"). Where subscribing the topics on the new channel
// takes them from the old one, PUT before connect leaves them on a channel
// with no socket until the new socket is up: a call that rings then is
// heard only from the reconciliation (seconds, an activity query and a
// fetch), not from the socket.
func TestClient_AHandoverLeavesNoMomentUncoveredWhenTopicsMove(t *testing.T) {
	as := agents(1)
	h, px := startExclusive(t, as)
	h.awaitStartupReconciliation()
	awaitSockets(t, h, 1)
	live := readLive(h)
	topic := "v2.users." + as[0].ID + ".conversations"
	old := h.emu.Channels()

	stop := make(chan struct{})
	uncovered := coverage(h, topic, stop)
	px.delay.Store(int64(500 * time.Millisecond)) // the new socket takes half a second to open
	h.emu.SocketClosing()
	time.Sleep(200 * time.Millisecond)
	call := h.emu.InboundCall(as[0].ID, "+13175550120", notificationstest.Options{}).Alert()
	waitFor(t, 5*time.Second, "the handover done", func() bool {
		for _, ch := range h.emu.Channels() {
			if containsID(old, ch.ID) && ch.Connected {
				return false
			}
		}
		return h.emu.SubscribedConnected() == 1
	})
	close(stop)
	if <-uncovered {
		t.Errorf("during the handover the agent's topic was held by no connected socket")
	}
	// Give the socket a moment; a reconciled copy does not count.
	time.Sleep(300 * time.Millisecond)
	if !live.has(call.ID()) {
		t.Errorf("the call that rang during the handover did not come from a socket")
	}
	h.stop()
	<-live.done
}

// A handover whose new socket cannot be opened keeps the old socket
// ("A failed handover keeps the old socket", docs/genesys.md). Where the
// new channel's subscription takes the topics from the old channel, the old
// socket is kept but delivers nothing until a retry gets through, while
// the client reports itself ready and subscribed.
func TestClient_AFailedHandoverLeavesTheOldSocketItsTopics(t *testing.T) {
	as := agents(1)
	h, px := startExclusive(t, as)
	h.awaitStartupReconciliation()
	awaitSockets(t, h, 1)
	live := readLive(h)
	topic := "v2.users." + as[0].ID + ".conversations"

	d0 := px.dials.Load()
	px.refuse.Store(http.StatusServiceUnavailable) // new sockets refused, the open one works
	h.emu.SocketClosing()
	waitFor(t, 5*time.Second, "two handover attempts refused", func() bool { return px.dials.Load()-d0 >= 2 })
	if !h.emu.IsDelivered(topic) {
		t.Errorf("after the failed handover the old socket no longer holds the agent's topic (client ready: %v)", h.client.Ready())
	}
	call := h.emu.InboundCall(as[0].ID, "+13175550121", notificationstest.Options{}).Alert()
	deadline := time.Now().Add(2 * time.Second)
	for !live.has(call.ID()) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !live.has(call.ID()) {
		t.Errorf("a call ringing while the handover fails was not read from the old socket")
	}
	h.stop()
	<-live.done
}

// coverage samples, until stop is closed, whether topic is held by a
// channel with a connected socket, and reports whether it ever was not.
func coverage(h *harness, topic string, stop <-chan struct{}) <-chan bool {
	res := make(chan bool, 1)
	go func() {
		uncovered := false
		for {
			select {
			case <-stop:
				res <- uncovered
				return
			default:
			}
			if !h.emu.IsDelivered(topic) {
				uncovered = true
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return res
}

func (h *harness) reconnects() int {
	n := 0
	for _, ch := range h.client.Status().(notifications.Status).Channels {
		n += ch.Reconnects
	}
	return n
}

// A channel lives 24 h and the service ends it then (reference genesys.md
// §3 Limits): the client hands it over HandoverGrace before, so no expiry
// ever closes a socket and no moment is uncovered, also where the new
// channel's PUT takes the topics from the old one.
func TestClient_HandsOverBeforeItsChannelExpires(t *testing.T) {
	for _, exclusive := range []bool{false, true} {
		t.Run(map[bool]string{false: "Overlapping", true: "Exclusive"}[exclusive], func(t *testing.T) {
			as := agents(1)
			h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, ChannelLifetime: 2500 * time.Millisecond, ExclusiveTopics: exclusive},
				func(c *notifications.Config) { c.Agents = ids(as); c.HandoverGrace = time.Second }, 64)
			h.awaitReady(5 * time.Second)
			awaitSockets(t, h, 1)
			stop := make(chan struct{})
			uncovered := coverage(h, "v2.users."+as[0].ID+".conversations", stop)
			time.Sleep(5 * time.Second)
			close(stop)
			if <-uncovered {
				t.Errorf("the agent's topic was held by no connected socket at some moment")
			}
			if n := gauge(t, h.reg, "screenpop_notifications_handovers_total"); n < 2 {
				t.Errorf("handovers = %v in 5 s of channels living 2.5 s, want at least 2", n)
			}
			if n := h.reconnects(); n != 0 {
				t.Errorf("reconnects = %d: a channel expired under its socket", n)
			}
		})
	}
}

// A channel dies with the token that made it (C-HB; the emulator's
// CloseOnTokenExpiry, now at the token's own expiry): the client hands
// every channel over to one made with the refreshed token before the old
// token runs out, so the expiry closes no socket in use.
func TestClient_HandsOverBeforeItsTokenTakesTheChannel(t *testing.T) {
	as := agents(2)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, TokenLifetime: 4 * time.Second, CloseOnTokenExpiry: true},
		func(c *notifications.Config) { c.Agents = ids(as); c.TokenRefreshMargin = 1500 * time.Millisecond }, 64)
	col := collect(h.out)
	h.awaitReady(5 * time.Second)
	awaitSockets(t, h, 2)
	stop := make(chan struct{})
	uncovered := coverage(h, "v2.users."+as[0].ID+".conversations", stop)
	waitFor(t, 15*time.Second, "two token refreshes and the first token expired", func() bool {
		return h.emu.TokensIssued() >= 3
	})
	time.Sleep(2 * time.Second)
	close(stop)
	if <-uncovered {
		t.Errorf("the agent's topic was held by no connected socket at some moment")
	}
	if n := h.reconnects(); n != 0 {
		t.Errorf("reconnects = %d: a token expiry closed a socket in use", n)
	}
	c := h.emu.InboundCall(as[1].ID, "+13175550122", notificationstest.Options{}).Alert()
	col.await(t, 5*time.Second, "a call on the channel of the newest token", c, as[1].ID)
	h.stop()
	<-col.done
}

// A socket the service closes with a close frame (1000, 1001) while its
// channel lives is reconnected to the same channel ("JAVA just recreates
// the socket on the same connectUri, so the channel survives", reference
// genesys.md §3): no channel is made and no PUT sent, and calls are heard
// again.
func TestClient_ASocketClosedWithAFrameReconnectsToItsChannel(t *testing.T) {
	as := agents(1)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as) }, 64)
	col := collect(h.out)
	h.awaitReady(5 * time.Second)
	awaitSockets(t, h, 1)
	const channels = "/api/v2/notifications/channels"
	chs := h.emu.Channels()
	for i, code := range []int{1000, 1001} {
		creates, puts, before := h.emu.CountRequests(http.MethodPost, channels), h.emu.CountRequests(http.MethodPut, channels+"/"), h.reconnects()
		if n := h.emu.CloseSockets(code, "closed by the test"); n != 1 {
			t.Fatalf("closed %d sockets, want 1", n)
		}
		waitFor(t, 5*time.Second, "the socket back", func() bool { return h.reconnects() > before && h.emu.SubscribedConnected() == 1 })
		if n := h.emu.CountRequests(http.MethodPost, channels) - creates; n != 0 {
			t.Errorf("close %d: %d channels made, want the same channel redialled", code, n)
		}
		if n := h.emu.CountRequests(http.MethodPut, channels+"/") - puts; n != 0 {
			t.Errorf("close %d: %d PUTs, want none (the channel still holds the topics)", code, n)
		}
		if now := h.emu.Channels(); len(now) != 1 || now[0].ID != chs[0].ID || !now[0].Connected {
			t.Errorf("close %d: channels %+v, want %s connected", code, now, chs[0].ID)
		}
		c := h.emu.InboundCall(as[0].ID, fmt.Sprintf("+131755501%d", 30+i), notificationstest.Options{}).Alert()
		col.await(t, 5*time.Second, "a call after the reconnect", c, as[0].ID)
	}
	h.stop()
	<-col.done
}

// A handover that keeps its new channel after a refused socket (the
// channel is kept, so retries make no channel each) must not redial that
// channel for good once it is gone: Genesys evicts a client's unconnected
// channels first past 20 (reference genesys.md §1), and a channel kept
// with no socket is such a one.
func TestClient_AHandoverDoesNotRedialItsKeptChannelOnceGone(t *testing.T) {
	as := agents(1)
	px := &slowProxy{}
	h := startBehindWith(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, SocketClosingGrace: 30 * time.Second, MaxChannels: 2},
		px, func(rp *httputil.ReverseProxy) { px.rp = rp }, nil)
	h.awaitReady(5 * time.Second)
	awaitSockets(t, h, 1)
	first := h.emu.Channels()

	px.refuse.Store(http.StatusServiceUnavailable)
	h.emu.SocketClosing()
	waitFor(t, 5*time.Second, "the handover's channel made and kept", func() bool { return len(h.emu.Channels()) == 2 })
	// Another program on the OAuth client makes a channel: the kept one,
	// unconnected, is evicted.
	req, _ := http.NewRequest(http.MethodPost, h.emu.URL()+"/api/v2/notifications/channels", nil)
	req.Header.Set("Authorization", "Bearer "+h.emu.ClientToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	other := h.emu.Channels()
	px.refuse.Store(0)
	waitFor(t, 5*time.Second, "the handover done on a channel made anew", func() bool {
		for _, ch := range h.emu.Channels() {
			if ch.Connected && !containsID(first, ch.ID) && !containsID(other, ch.ID) && ch.Topics == 1 {
				return true
			}
		}
		return false
	})
}

// Liveness (reference genesys.md §3): the service's "WebSocket Heartbeat"
// (about every 30 s, no official interval) and the pong to the client's
// JSON ping each keep the read deadline; a socket with neither is dead.
func TestClient_HeartbeatsOrPongsKeepASocketAlive(t *testing.T) {
	t.Run("PongsWithoutHeartbeats", func(t *testing.T) {
		as := agents(1)
		h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: -1},
			func(c *notifications.Config) { c.Agents = ids(as) }, 64) // ping 150 ms, deadline 600 ms
		h.awaitReady(5 * time.Second)
		time.Sleep(2 * time.Second)
		if n := h.reconnects(); n != 0 {
			t.Errorf("reconnects = %d on a socket answering every ping", n)
		}
	})
	t.Run("HeartbeatsWithoutPings", func(t *testing.T) {
		as := agents(1)
		h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
			func(c *notifications.Config) { c.Agents = ids(as); c.PingInterval = time.Hour }, 64)
		h.awaitReady(5 * time.Second)
		time.Sleep(2 * time.Second)
		if n := h.reconnects(); n != 0 {
			t.Errorf("reconnects = %d on a socket sending heartbeats", n)
		}
		h.emu.SetHeartbeats(false) // and no pings: silent
		waitFor(t, 3*time.Second, "the silent socket declared dead", func() bool { return h.reconnects() > 0 })
	})
}

// An agent whose topic Genesys rejected is subscribed again at the shard's
// next PUT (docs/operations.md 7.2: "Subscriptions are retried at the next
// change"), here a handover: once the permission is given, the rejection
// is forgotten and the agent's calls are heard, including one ringing
// already.
func TestClient_ARejectedAgentIsWatchedOnceAllowedAtTheNextPut(t *testing.T) {
	as := agents(2)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, SocketClosingGrace: 30 * time.Second},
		func(c *notifications.Config) { c.Agents = ids(as) }, 64,
		func(e *notificationstest.Emulator) {
			e.RejectTopicsFor(as[1].ID, "notification.unauthorized.divisioned.topic")
		})
	col := collect(h.out)
	h.awaitReady(5 * time.Second)
	waitFor(t, 5*time.Second, "the rejection recorded", func() bool { return len(h.client.Status().(notifications.Status).RejectedTopics) == 1 })
	if h.emu.IsDelivered("v2.users." + as[1].ID + ".conversations") {
		t.Fatal("the rejected topic is delivered")
	}
	h.emu.AllowTopicsFor(as[1].ID)
	ringing := h.emu.InboundCall(as[1].ID, "+13175550140", notificationstest.Options{}).Alert()
	awaitSockets(t, h, 1)
	h.emu.SocketClosing() // a handover: a full PUT on a new channel
	waitFor(t, 5*time.Second, "the rejection forgotten", func() bool { return len(h.client.Status().(notifications.Status).RejectedTopics) == 0 })
	waitFor(t, 5*time.Second, "the allowed topic delivered", func() bool { return h.emu.IsDelivered("v2.users." + as[1].ID + ".conversations") })
	col.await(t, 5*time.Second, "the call ringing for the agent once allowed", ringing, as[1].ID)
	later := h.emu.InboundCall(as[1].ID, "+13175550141", notificationstest.Options{}).Alert()
	col.await(t, 5*time.Second, "a later call of the allowed agent", later, as[1].ID)
	if n := gauge(t, h.reg, "screenpop_notifications_topics_rejected"); n != 0 {
		t.Errorf("topics_rejected = %v, want 0", n)
	}
	h.stop()
	<-col.done
}
