package notifications_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

type legKey struct{ conv, participant, user string }

// collector reads snapshots and records every agent leg seen in alerting
// (or dialing) or a later state on its own agent's topic.
type collector struct {
	mu         sync.Mutex
	legs       map[legKey]bool
	reconciled map[legKey]bool
	n          int
	done       chan struct{}
}

func collect(out <-chan bridge.Snapshot) *collector {
	c := &collector{legs: map[legKey]bool{}, reconciled: map[legKey]bool{}, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for s := range out {
			conv := gjson.GetBytes(s.Body, "id").Str
			c.mu.Lock()
			c.n++
			gjson.GetBytes(s.Body, "participants").ForEach(func(_, p gjson.Result) bool {
				if p.Get("userId").Str != string(s.Agent) {
					return true
				}
				for _, media := range []string{"calls", "callbacks", "chats", "messages", "emails"} {
					st := p.Get(media + ".0.state").Str
					switch st {
					case "alerting", "dialing", "connected", "disconnected":
						k := legKey{conv, p.Get("id").Str, string(s.Agent)}
						c.legs[k] = true
						if s.Reconciled {
							c.reconciled[k] = true
						}
					}
				}
				return true
			})
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *collector) has(k legKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.legs[k]
}

// await waits up to d for agent's leg of conv to reach the collector.
func (c *collector) await(t *testing.T, d time.Duration, what string, conv *notificationstest.Conversation, agent string) {
	t.Helper()
	k := legKey{conv.ID(), conv.AgentParticipantID(), agent}
	waitFor(t, d, what, func() bool { return c.has(k) })
}

// TestClient_Load scripts conversations of every kind over many agents
// while sockets are dropped 20 times and 3 socket_closing handovers
// happen, and checks that every scripted agent leg reaches the consumer.
func TestClient_Load(t *testing.T) {
	scale := 1
	if *soak {
		scale = 20
	}
	as := agents(60)
	ecfg := notificationstest.Config{Agents: as, HeartbeatInterval: time.Duration(scale) * 100 * time.Millisecond,
		SocketClosingGrace: time.Duration(scale) * 300 * time.Millisecond}
	h := start(t, ecfg, func(c *notifications.Config) {
		c.Agents = ids(as)
		c.TopicsPerChannel = 25 // three channels, so drops hit several sockets
		c.HeartbeatTimeout = time.Duration(scale) * 600 * time.Millisecond
		c.PingInterval = time.Duration(scale) * 150 * time.Millisecond
	}, 16) // a small buffer: the consumer's backpressure is part of the test
	col := collect(h.out)
	h.awaitReady(5 * time.Second)

	const convs = 240
	dur := time.Duration(scale) * 4 * time.Second
	var (
		mu   sync.Mutex
		all  []*notificationstest.Conversation
		wg   sync.WaitGroup
		stop = make(chan struct{})
	)
	scriptRand := rand.New(rand.NewPCG(1, 2))
	var rmu sync.Mutex
	rnd := func(n int) int { rmu.Lock(); defer rmu.Unlock(); return scriptRand.IntN(n) }
	// pause paces the scripted conversations (load generation, not synchronisation).
	pause := func(min, spread time.Duration) { <-time.After(min + time.Duration(rnd(int(spread)+1))) }
	for i := 0; i < convs; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			pause(0, dur*3/4) // spread the starts over the run
			a, b := as[rnd(len(as))].ID, as[rnd(len(as))].ID
			o := notificationstest.Options{QueueID: "Q1", DNIS: "+18005551000", Attributes: map[string]string{"context.email": "jane@example.com"}}
			var c *notificationstest.Conversation
			switch i % 8 {
			case 0, 1:
				c = h.emu.InboundCall(a, fmt.Sprintf("+1317555%04d", i), o)
			case 2:
				c = h.emu.OutboundCall(a, fmt.Sprintf("+1317555%04d", i), o)
			case 3:
				c = h.emu.Chat(a, o)
			case 4:
				c = h.emu.Message(a, "Jane", o)
			case 5:
				c = h.emu.Email(a, "jane@example.com", o)
			case 6:
				c = h.emu.Callback(a, fmt.Sprintf("+1317555%04d", i), o)
			case 7:
				if a == b {
					b = as[(rnd(len(as)-1)+1+indexOf(as, a))%len(as)].ID
				}
				c = h.emu.InternalCall(b, a, o)
			}
			mu.Lock()
			all = append(all, c)
			mu.Unlock()
			c.Alert()
			pause(50*time.Millisecond, 200*time.Millisecond)
			c.Connect()
			switch i % 5 {
			case 0:
				pause(100*time.Millisecond, 200*time.Millisecond)
				c.BlindTransfer(b)
				pause(100*time.Millisecond, 200*time.Millisecond)
				c.Connect()
			case 1:
				pause(100*time.Millisecond, 200*time.Millisecond)
				c.ConsultTransfer(b)
				pause(100*time.Millisecond, 200*time.Millisecond)
				c.Connect()
			case 2:
				c.SetAttributes(map[string]string{"IvrIntent": "billing"})
			}
			// Conversations stay up long enough for a reconciliation
			// after any gap (as real ones do); then they end.
			hold := time.Duration(scale) * 1500 * time.Millisecond
			if raceEnabled {
				hold *= 3
			}
			pause(hold, 500*time.Millisecond)
			c.Disconnect()
		}(i)
	}
	// Faults: 20 random drops and 3 socket_closing handovers over the run.
	wg.Add(1)
	go func() {
		defer wg.Done()
		faults := make([]bool, 23)
		for i := 0; i < 3; i++ {
			faults[i*7+3] = true
		}
		for _, closing := range faults {
			select {
			case <-stop:
				return
			case <-time.After(dur / 25):
			}
			if closing {
				h.emu.SocketClosing()
			} else {
				h.emu.DropConnections()
			}
		}
	}()
	wg.Wait()
	close(stop)

	var want []legKey
	for _, c := range all {
		for _, l := range c.Legs() {
			want = append(want, legKey{l.ConversationID, l.ParticipantID, l.UserID})
		}
	}
	missing := func() []legKey {
		var m []legKey
		for _, k := range want {
			if !col.has(k) {
				m = append(m, k)
			}
		}
		return m
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(missing()) > 0 && time.Now().Before(deadline) {
		<-time.After(10 * time.Millisecond)
	}
	if m := missing(); len(m) > 0 {
		for _, k := range m {
			t.Errorf("leg never reached the consumer: %+v", k)
		}
		t.Fatalf("%d of %d scripted legs missing", len(m), len(want))
	}
	st := h.client.Status().(notifications.Status)
	reconnects := 0
	for _, ch := range st.Channels {
		reconnects += ch.Reconnects
	}
	col.mu.Lock()
	t.Logf("legs scripted=%d seen=%d (via reconciliation %d), snapshots=%d, reconnects=%d, reconciled conversations=%d",
		len(want), len(col.legs), len(col.reconciled), col.n, reconnects, st.Reconciled)
	col.mu.Unlock()
	if reconnects < 20 {
		t.Errorf("reconnects = %d, want >= 20 (the drops)", reconnects)
	}
	h.stop()
	<-col.done
}

func indexOf(as []notificationstest.AgentSpec, id string) int {
	for i, a := range as {
		if a.ID == id {
			return i
		}
	}
	return 0
}

// TestClient_ManyAgents spreads 1,500 agents over two channels with one
// full-list PUT each.
func TestClient_ManyAgents(t *testing.T) {
	as := agents(1500)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond}, func(c *notifications.Config) {
		c.Agents = ids(as)
		c.TopicsPerChannel = 0 // the service limit, 1,000
	}, 64)
	h.awaitReady(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.emu.AwaitSubscribed(ctx, 1500); err != nil {
		t.Fatal(err)
	}
	chans := h.emu.Channels()
	if len(chans) != 2 || chans[0].Topics+chans[1].Topics != 1500 || chans[0].Topics > 1000 || chans[1].Topics > 1000 {
		t.Fatalf("channels = %+v, want 1,500 topics over two channels of at most 1,000", chans)
	}
	if puts := h.emu.CountRequests(http.MethodPut, "/api/v2/notifications/channels/"); puts != 2 {
		t.Fatalf("subscription PUTs = %d, want 2 (one full list per channel)", puts)
	}
	if posts := h.emu.CountRequests(http.MethodPost, "/api/v2/notifications/channels/"); posts != 0 {
		t.Fatalf("subscription POSTs = %d, want 0", posts)
	}
	last := as[1499].ID
	h.emu.InboundCall(last, "+13175550100", notificationstest.Options{}).Alert()
	for {
		if s := h.next(3 * time.Second); string(s.Agent) == last && !s.Reconciled {
			break
		}
	}
}

// Every member of a queue is watched, joined to it or not. The SDK's
// GetRoutingQueueMembers always sends its joined parameter, a filter in the
// real API: joined=false listed only the members who are not joined, so
// the agents taking the queue's calls were never watched.
func TestClient_QueueMembersJoinedOrNotAreWatched(t *testing.T) {
	as := agents(2)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, Queues: map[string][]string{"Q1": ids(as)}},
		func(c *notifications.Config) { c.Queues = []string{"Q1"} }, 64,
		func(e *notificationstest.Emulator) { e.SetQueueMemberJoined("Q1", as[1].ID, false) })
	h.awaitReady(5 * time.Second)
	waitFor(t, 3*time.Second, "both members subscribed", func() bool {
		return h.emu.IsDelivered("v2.users."+as[0].ID+".conversations") && h.emu.IsDelivered("v2.users."+as[1].ID+".conversations")
	})
}

// TestClient_Queues discovers agents through paged queue members and
// follows membership changes incrementally.
func TestClient_Queues(t *testing.T) {
	as := agents(260)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, Queues: map[string][]string{"Q1": ids(as[:250])}},
		func(c *notifications.Config) { c.Queues = []string{"Q1"}; c.Agents = []string{as[255].ID} }, 64)
	h.awaitReady(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.emu.AwaitSubscribed(ctx, 251); err != nil {
		t.Fatal(err)
	}
	if n := h.emu.CountRequests(http.MethodGet, "/api/v2/routing/queues/Q1/members"); n < 3 {
		t.Fatalf("queue member GETs = %d, want at least 3 pages of 100", n)
	}
	putsBefore := h.emu.CountRequests(http.MethodPut, "/api/v2/notifications/channels/")
	// Ten members leave, ten join.
	h.emu.SetQueueMembers("Q1", append(ids(as[10:250]), ids(as[250:255])...))
	waitFor(t, 5*time.Second, "membership change applied", func() bool {
		return !h.emu.IsDelivered("v2.users."+as[0].ID+".conversations") && h.emu.IsDelivered("v2.users."+as[254].ID+".conversations") &&
			h.emu.CountRequests(http.MethodPut, "/api/v2/notifications/channels/") > putsBefore // requests are recorded after the answer
	})
	if got := h.emu.SubscribedConnected(); got != 246 {
		t.Fatalf("topics = %d, want 246", got)
	}
	// One PUT for the change; two when a refresh's page reads straddle it
	// (the pages then show half the change, the next refresh the rest).
	if puts := h.emu.CountRequests(http.MethodPut, "/api/v2/notifications/channels/") - putsBefore; puts < 1 || puts > 2 {
		t.Fatalf("PUTs for the change = %d, want 1 (or 2)", puts)
	}
	if n := h.emu.CountRequests(http.MethodPost, "/api/v2/notifications/channels"); n != 1 {
		t.Fatalf("channels created = %d, want 1: a membership change must not recreate channels", n)
	}
}

// TestClient_Token refreshes the token before it expires, and at once
// after a forced 401, with no gap in delivery.
func TestClient_Token(t *testing.T) {
	as := agents(2)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, TokenLifetime: 2 * time.Second},
		func(c *notifications.Config) { c.Agents = ids(as) }, 64)
	col := collect(h.out)
	h.awaitReady(5 * time.Second)

	t.Run("BeforeExpiry", func(t *testing.T) {
		waitFor(t, 10*time.Second, "two refreshes", func() bool { return h.emu.TokensIssued() >= 3 })
		for _, r := range h.emu.Requests() {
			if r.Status == http.StatusUnauthorized {
				t.Fatalf("a request got 401 (%s %s): the token was not refreshed in time", r.Method, r.Path)
			}
		}
		c := h.emu.InboundCall(as[0].ID, "+13175550101", notificationstest.Options{}).Alert()
		col.await(t, 5*time.Second, "the call after refreshes", c, as[0].ID)
	})

	t.Run("After401", func(t *testing.T) {
		before := h.emu.TokensIssued()
		h.emu.ExpireTokens()
		h.emu.DropConnections() // the reconnect's reconciliation calls the API with the dead token
		c := h.emu.InboundCall(as[1].ID, "+13175550102", notificationstest.Options{}).Alert()
		waitFor(t, 5*time.Second, "a 401 then a new token", func() bool {
			saw401 := false
			for _, r := range h.emu.Requests() {
				if r.Status == http.StatusUnauthorized && strings.HasPrefix(r.Path, "/api/v2/") {
					saw401 = true
				}
			}
			return saw401 && h.emu.TokensIssued() > before
		})
		col.await(t, 5*time.Second, "the call alerted around the 401", c, as[1].ID)
		h.awaitReady(5 * time.Second)
	})
	h.stop()
	<-col.done
}

// TestClient_LoginDown keeps retrying while the login host is down, shows
// it in Status, and recovers fully.
func TestClient_LoginDown(t *testing.T) {
	as := agents(2)
	emuCfg := notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond}
	h := start(t, emuCfg, func(c *notifications.Config) { c.Agents = ids(as) }, 64, func(e *notificationstest.Emulator) { e.SetLoginDown(true) })
	waitFor(t, 5*time.Second, "login failures", func() bool { return h.emu.CountRequests(http.MethodPost, "/oauth/token") >= 4 })
	st := h.client.Status().(notifications.Status)
	if st.LoggedIn || st.Ready || !strings.Contains(st.LoginError, "genesys login failed") || h.client.Ready() {
		t.Fatalf("status while login is down = %+v", st)
	}
	h.emu.SetLoginDown(false)
	h.awaitReady(5 * time.Second)
	// A frame published before the emulator has registered the socket on
	// its side would be dropped: wait for both topics on a connected socket.
	waitFor(t, 5*time.Second, "both topics on a connected socket", func() bool { return h.emu.SubscribedConnected() == len(as) })
	c := h.emu.InboundCall(as[0].ID, "+13175550103", notificationstest.Options{}).Alert()
	for {
		s := h.next(3 * time.Second)
		if gjson.GetBytes(s.Body, "id").Str == c.ID() {
			break
		}
	}
	if st := h.client.Status().(notifications.Status); !st.LoggedIn || st.LoginError != "" {
		t.Fatalf("status after recovery = %+v", st)
	}
}

// TestClient_LoginDownNamesStatus: a login host in an outage answers
// through its gateway (a 5xx with an HTML page, no OAuth error body); the
// status an on-call engineer reads names the HTTP status, not a JSON
// decoding error.
func TestClient_LoginDownNamesStatus(t *testing.T) {
	as := agents(1)
	h := start(t, notificationstest.Config{Agents: as}, func(c *notifications.Config) { c.Agents = ids(as) }, 4,
		func(e *notificationstest.Emulator) { e.SetLoginDown(true) })
	waitFor(t, 5*time.Second, "two login failures", func() bool { return h.emu.CountRequests(http.MethodPost, "/oauth/token") >= 2 })
	waitFor(t, 5*time.Second, "a login error in the status", func() bool {
		return h.client.Status().(notifications.Status).LoginError != ""
	})
	if e := h.client.Status().(notifications.Status).LoginError; !strings.Contains(e, "HTTP 503") || strings.Contains(e, "invalid character") {
		t.Fatalf("login error %q, want it to name HTTP 503", e)
	}
}

// A login the token endpoint rate limits waits for its Retry-After, not
// the client's own shorter backoff.
func TestClient_LoginHonoursRetryAfter(t *testing.T) {
	as := agents(1)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as) }, 64,
		func(e *notificationstest.Emulator) {
			e.FailNext(http.MethodPost, "/oauth/token", http.StatusTooManyRequests, 2*time.Second, 1)
		})
	h.awaitReady(8 * time.Second)
	var logins []time.Time
	for _, r := range h.emu.Requests() {
		if r.Method == http.MethodPost && r.Path == "/oauth/token" {
			logins = append(logins, r.Time)
		}
	}
	if len(logins) != 2 {
		t.Fatalf("%d logins, want 2 (the 429 and one after its Retry-After)", len(logins))
	}
	if d := logins[1].Sub(logins[0]); d < 1900*time.Millisecond {
		t.Errorf("logged in again %v after a 429 with Retry-After 2s", d)
	}
}

// TestClient_Errors checks the messages an admin sees for a bad secret and
// for a rejected topic.
func TestClient_Errors(t *testing.T) {
	t.Run("BadSecret", func(t *testing.T) {
		as := agents(1)
		h := start(t, notificationstest.Config{Agents: as}, func(c *notifications.Config) { c.Agents = ids(as); c.ClientSecret = "wrong" }, 4)
		waitFor(t, 5*time.Second, "several login attempts", func() bool { return h.emu.CountRequests(http.MethodPost, "/oauth/token") >= 4 })
		const want = "genesys login rejected the client credentials: check GENESYS_CLIENT_ID and GENESYS_CLIENT_SECRET"
		n := 0
		for _, l := range h.logs.lines() {
			if strings.Contains(l, want) {
				n++
				if !strings.Contains(l, `"level":"error"`) {
					t.Errorf("credential error not at level error: %s", l)
				}
			}
			if strings.Contains(l, "wrong") {
				t.Errorf("a log line holds the secret: %s", l)
			}
		}
		if n != 1 {
			t.Fatalf("credential error logged %d times, want once", n)
		}
		if st := h.client.Status().(notifications.Status); !strings.Contains(st.LoginError, "GENESYS_CLIENT_ID and GENESYS_CLIENT_SECRET") || st.Ready {
			t.Fatalf("status = %+v", st)
		}
	})
	// Refused again and again (the secret rotated on Genesys' side and
	// not here), it is still said as a refusal of the credentials, at
	// error, each time the log's limit allows (every 30 s; 1 s here):
	// never as the outage line, "genesys login failed, retrying", which
	// points on-call at the network.
	t.Run("BadSecretRepeated", func(t *testing.T) {
		t.Cleanup(notifications.SetLoginLogEvery(time.Second)) // runs after the client's stop
		as := agents(1)
		h := start(t, notificationstest.Config{Agents: as}, func(c *notifications.Config) {
			c.Agents, c.ClientSecret, c.BackoffMax = ids(as), "wrong", 300*time.Millisecond
		}, 4)
		var lines []string
		refused := func() int { return countLines(lines, "genesys login rejected the client credentials") }
		waitFor(t, 10*time.Second, "the refusal said a second time", func() bool {
			lines = append(lines, h.logs.lines()...)
			return refused() >= 2
		})
		h.stop()
		lines = append(lines, h.logs.lines()...)
		for _, l := range lines {
			if strings.Contains(l, "genesys login failed, retrying") {
				t.Errorf("a refusal of the credentials logged as the outage line: %s", l)
			}
		}
		if n := h.emu.CountRequests(http.MethodPost, "/oauth/token"); refused() >= n {
			t.Errorf("%d refusal lines for %d logins: not limited", refused(), n)
		}
	})
	t.Run("RejectedTopic", func(t *testing.T) {
		as := agents(3)
		h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond}, func(c *notifications.Config) { c.Agents = ids(as) }, 16,
			func(e *notificationstest.Emulator) { e.RejectTopicsFor(as[1].ID, "") })
		h.awaitReady(5 * time.Second)
		if got := h.client.Status().(notifications.Status).RejectedTopics; len(got) != 1 || got[0].Topic != "v2.users."+as[1].ID+".conversations" || got[0].UserID != as[1].ID {
			t.Fatalf("status rejectedTopics = %+v, want agent %s's topic", got, as[1].ID)
		}
		// The emulator registers a socket on its channel once its own side
		// of the handshake is done, which can come after the client is ready.
		waitFor(t, 5*time.Second, "the other 2 topics subscribed on a connected socket (ignoreErrors)", func() bool { return h.emu.SubscribedConnected() == 2 })
		if n := h.emu.SubscribedConnected(); n != 2 {
			t.Fatalf("subscribed = %d, want the other 2 (ignoreErrors)", n)
		}
		found := false
		for _, l := range h.logs.lines() {
			if strings.Contains(l, "genesys rejected the topic subscription") && strings.Contains(l, `"agent_id":"`+as[1].ID+`"`) && strings.Contains(l, "notification.unauthorized.topic") {
				found = true
			}
		}
		if !found {
			t.Fatal("no log line names the rejected user and reason")
		}
		if st := h.client.Status().(notifications.Status); len(st.RejectedTopics) != 1 || st.RejectedTopics[0].Reason != "notification.unauthorized.topic" {
			t.Fatalf("status = %+v", st)
		}
	})
}

// TestClient_Faults covers dead sockets, rate limits, frame faults and
// channel loss.
func TestClient_Faults(t *testing.T) {
	as := agents(4)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, SocketClosingGrace: 300 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as) }, 64)
	col := collect(h.out)
	h.awaitReady(5 * time.Second)
	reconnects := func() int {
		n := 0
		for _, ch := range h.client.Status().(notifications.Status).Channels {
			n += ch.Reconnects
		}
		return n
	}
	alert := func(agent string) legKey {
		c := h.emu.InboundCall(agent, "+13175550111", notificationstest.Options{QueueID: "Q1"}).Alert()
		return legKey{c.ID(), c.AgentParticipantID(), agent}
	}

	t.Run("DeadSocket", func(t *testing.T) {
		before := reconnects()
		h.emu.SetBlackhole(true)
		k := alert(as[0].ID) // lost on the silent socket
		waitFor(t, 5*time.Second, "dead socket detected", func() bool { return reconnects() > before })
		h.emu.SetBlackhole(false)
		waitFor(t, 5*time.Second, "the lost call reconciled", func() bool { return col.has(k) })
		col.mu.Lock()
		rec := col.reconciled[k]
		col.mu.Unlock()
		if !rec {
			t.Fatal("the call lost on the dead socket did not come from reconciliation")
		}
	})

	t.Run("RateLimitedChannelCreation", func(t *testing.T) {
		h.emu.FailNext(http.MethodPost, "/api/v2/notifications/channels", http.StatusTooManyRequests, time.Second, 2)
		creates := h.emu.CountRequests(http.MethodPost, "/api/v2/notifications/channels")
		begin := time.Now()
		h.emu.ExpireChannels()
		k := alert(as[1].ID)
		waitFor(t, 8*time.Second, "a new channel after the 429s", func() bool {
			return h.emu.IsDelivered("v2.users." + as[1].ID + ".conversations")
		})
		if el := time.Since(begin); el < 2*time.Second {
			t.Fatalf("recovered after %v: Retry-After (1s, twice) was not honoured", el)
		}
		if n := h.emu.CountRequests(http.MethodPost, "/api/v2/notifications/channels") - creates; n != 3 {
			t.Fatalf("channel creations = %d, want 3 (two 429s, one success)", n)
		}
		waitFor(t, 5*time.Second, "the call during the outage", func() bool { return col.has(k) })
	})

	t.Run("RateLimitedSubscription", func(t *testing.T) {
		h.emu.FailNext(http.MethodPut, "/api/v2/notifications/channels/", http.StatusTooManyRequests, time.Second, 1)
		h.emu.ExpireChannels()
		h.awaitReady(8 * time.Second)
		waitFor(t, 5*time.Second, "subscribed after the 429", func() bool { return h.emu.SubscribedConnected() == 4 })
	})

	t.Run("FrameFaults", func(t *testing.T) {
		h.emu.SetFrameFaults(notificationstest.FrameFaults{Duplicate: true, Junk: true})
		k1 := alert(as[2].ID)
		h.emu.SetFrameFaults(notificationstest.FrameFaults{Reorder: true})
		c := h.emu.InboundCall(as[3].ID, "+13175550112", notificationstest.Options{}).Alert()
		c.Connect()
		h.emu.SetFrameFaults(notificationstest.FrameFaults{Delay: 50 * time.Millisecond})
		k3 := alert(as[0].ID)
		h.emu.SetFrameFaults(notificationstest.FrameFaults{})
		h.emu.SendJunk()
		waitFor(t, 5*time.Second, "all faulty deliveries", func() bool {
			return col.has(k1) && col.has(legKey{c.ID(), c.AgentParticipantID(), as[3].ID}) && col.has(k3)
		})
		if !h.client.Ready() {
			t.Fatal("junk frames made the client unready")
		}
	})

	t.Run("NoLongerSubscribed", func(t *testing.T) {
		h.emu.NoLongerSubscribed()
		waitFor(t, 5*time.Second, "topics back on a new channel", func() bool { return h.emu.SubscribedConnected() == 4 })
		k := alert(as[1].ID)
		waitFor(t, 5*time.Second, "a call after the handover", func() bool { return col.has(k) })
	})

	t.Run("TokenRevoked", func(t *testing.T) {
		tokens := h.emu.TokensIssued()
		old := h.emu.Channels()
		h.emu.TokenRevoked()
		waitFor(t, 5*time.Second, "a new token and channel", func() bool {
			if h.emu.TokensIssued() <= tokens {
				return false
			}
			for _, ch := range h.emu.Channels() {
				if ch.Connected && !containsID(old, ch.ID) && ch.Topics == 4 {
					return true
				}
			}
			return false
		})
		k := alert(as[2].ID)
		waitFor(t, 5*time.Second, "a call after the revocation", func() bool { return col.has(k) })
	})

	t.Run("SocketClosingHandover", func(t *testing.T) {
		old := h.emu.Channels()
		h.emu.SocketClosing()
		waitFor(t, 5*time.Second, "a new channel connected", func() bool {
			for _, ch := range h.emu.Channels() {
				if ch.Connected && !containsID(old, ch.ID) && ch.Topics == 4 {
					return true
				}
			}
			return false
		})
		waitFor(t, 2*time.Second, "the old sockets dropped", func() bool {
			for _, ch := range h.emu.Channels() {
				if containsID(old, ch.ID) && ch.Connected {
					return false
				}
			}
			return true
		})
	})
	h.stop()
	<-col.done
}

func containsID(chs []notificationstest.ChannelInfo, id string) bool {
	for _, c := range chs {
		if c.ID == id {
			return true
		}
	}
	return false
}

func TestAuthenticator(t *testing.T) {
	emu := notificationstest.New(notificationstest.Config{Agents: agents(1)})
	url, err := emu.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	log, _ := newLog(t)
	a, err := notifications.NewAuthenticator(notifications.AuthConfig{APIURL: url, OrgID: "org-emulated"}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id, until, err := a.Authenticate(ctx, emu.AgentToken("00000000-0000-4000-8000-000000000001"))
	if err != nil || id != "00000000-0000-4000-8000-000000000001" || time.Until(until) < 4*time.Minute {
		t.Fatalf("Authenticate = %q, %v, %v", id, until, err)
	}
	for name, tok := range map[string]string{"Unknown": "nope", "Client": emu.ClientToken(), "Empty": "", "Spaces": "a b"} {
		if _, _, err := a.Authenticate(ctx, tok); !errors.Is(err, bridge.ErrInvalidToken) {
			t.Errorf("%s token: err = %v, want ErrInvalidToken", name, err)
		}
	}
	tok := emu.AgentToken("00000000-0000-4000-8000-000000000001")
	emu.ExpireTokens()
	if _, _, err := a.Authenticate(ctx, tok); !errors.Is(err, bridge.ErrInvalidToken) {
		t.Errorf("expired token: err = %v, want ErrInvalidToken", err)
	}
	other, _ := notifications.NewAuthenticator(notifications.AuthConfig{APIURL: url, OrgID: "another-org"}, log)
	if _, _, err := other.Authenticate(ctx, emu.AgentToken("u1")); !errors.Is(err, bridge.ErrInvalidToken) {
		t.Errorf("other org: err = %v, want ErrInvalidToken", err)
	}
	t.Run("PinnedToTheDaemonsOrg", func(t *testing.T) {
		org := ""
		pinned, _ := notifications.NewAuthenticator(notifications.AuthConfig{APIURL: url, Org: func() string { return org }}, log)
		if _, _, err := pinned.Authenticate(ctx, emu.AgentToken("u2")); err != nil {
			t.Errorf("org not known yet: err = %v, want the token accepted", err)
		}
		org = "another-org"
		if _, _, err := pinned.Authenticate(ctx, emu.AgentToken("u2")); !errors.Is(err, bridge.ErrInvalidToken) {
			t.Errorf("daemon of another org: err = %v, want ErrInvalidToken", err)
		}
		org = emu.Config().OrgID
		if _, _, err := pinned.Authenticate(ctx, emu.AgentToken("u2")); err != nil {
			t.Errorf("same org: err = %v", err)
		}
	})
}

func TestClient_LearnsItsOrg(t *testing.T) {
	as := agents(1)
	h := start(t, notificationstest.Config{Agents: as}, func(c *notifications.Config) { c.Agents = ids(as) }, 16)
	h.awaitReady(10 * time.Second)
	waitFor(t, 5*time.Second, "org learned", func() bool { return h.client.OrgID() == h.emu.Config().OrgID })
}

func TestRegionHosts(t *testing.T) {
	for _, r := range notifications.Regions() {
		h, err := notifications.RegionHosts(r, "")
		if err != nil || h.API != "https://api."+r || h.Login != "https://login."+r || h.Streaming != "wss://streaming."+r {
			t.Errorf("%s: %+v %v", r, h, err)
		}
	}
	if _, err := notifications.RegionHosts("mypurecloud.xx", ""); err == nil || !strings.Contains(err.Error(), "GENESYS_REGION") {
		t.Errorf("unknown region: %v", err)
	}
	h, err := notifications.RegionHosts("", "http://127.0.0.1:9")
	if err != nil || h.Login != "http://127.0.0.1:9" {
		t.Errorf("API URL override: %+v %v", h, err)
	}
	if h, _ := notifications.RegionHosts("", "https://api.example.test"); h.Login != "https://login.example.test" {
		t.Errorf("login host = %s", h.Login)
	}
}

// TestClient_FailedSetupReusesItsChannel: a channel whose subscription PUT
// fails is reused by the next attempt, not replaced by a new one each time:
// Genesys evicts a client's oldest channel past 20, so a create-per-retry
// loop would knock out live channels of other shards or integrations.
func TestClient_FailedSetupReusesItsChannel(t *testing.T) {
	as := agents(3)
	h := start(t, notificationstest.Config{Agents: as}, func(c *notifications.Config) { c.Agents = ids(as) }, 16,
		func(e *notificationstest.Emulator) {
			e.FailNext(http.MethodPut, "/api/v2/notifications/channels/", http.StatusInternalServerError, 0, 4)
		})
	h.awaitReady(10 * time.Second)
	if n := h.emu.CountRequests(http.MethodPost, "/api/v2/notifications/channels"); n != 1 {
		t.Fatalf("%d channels created for one shard after 4 failed PUTs, want 1", n)
	}
	if n := h.emu.CountRequests(http.MethodPut, "/api/v2/notifications/channels/"); n < 5 {
		t.Fatalf("%d PUTs, want the 4 failures and a success", n)
	}
}

// An agent whose topic Genesys rejected (another division) and who then
// leaves the watched queues must leave the rejected set too. Otherwise the
// set (and /status's rejectedTopics and the rejected-topics gauge) keeps
// every such agent the daemon ever watched: over weeks of queue churn it
// only grows, and the gauge alerts on agents nobody watches any more.
func TestClient_RejectionsOfRemovedAgentsAreForgotten(t *testing.T) {
	as := agents(3)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, Queues: map[string][]string{"Q1": ids(as)}},
		func(c *notifications.Config) { c.Queues = []string{"Q1"} }, 64,
		func(e *notificationstest.Emulator) { e.RejectTopicsFor(as[1].ID, "") })
	h.awaitReady(5 * time.Second)
	waitFor(t, 5*time.Second, "the rejection recorded", func() bool { return len(h.client.Status().(notifications.Status).RejectedTopics) == 1 })

	// as[1] leaves the queue (the next queue refresh applies it).
	h.emu.SetQueueMembers("Q1", []string{as[0].ID, as[2].ID})
	waitFor(t, 5*time.Second, "the removed agent's rejection forgotten", func() bool { return len(h.client.Status().(notifications.Status).RejectedTopics) == 0 })
	if st := h.client.Status().(notifications.Status); len(st.RejectedTopics) != 0 {
		t.Errorf("status rejectedTopics = %+v, want none", st.RejectedTopics)
	}
	mfs, _ := h.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "screenpop_notifications_topics_rejected" {
			if v := mf.GetMetric()[0].GetGauge().GetValue(); v != 0 {
				t.Errorf("screenpop_notifications_topics_rejected = %v, want 0", v)
			}
		}
	}
}
