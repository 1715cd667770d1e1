package notifications_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// After a restart (or a long outage) every live conversation of the
// watched agents is new to the client, and the reconciliation fetches
// them all at ReconcileRate: with 10,000 agents, thousands of calls at 5
// a second, many minutes. A socket lost meanwhile must not wait for all of
// that: the call that rang while it was down pops within seconds, before
// the rest of the long pass.
func TestClient_AGapDuringALongReconciliationPopsItsRingingCallFirst(t *testing.T) {
	as := agents(2000)
	const live = 400 // connected before the start: 10 s at 40 a second
	calls := make([]*notificationstest.Conversation, live)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as); c.ReconcileRate, c.ReconcileBurst = 40, 10 }, 4096,
		func(e *notificationstest.Emulator) {
			for i := 0; i < live; i++ {
				calls[i] = e.InboundCall(as[i].ID, "+13175550100", notificationstest.Options{}).Alert().Connect()
			}
		})
	col := collect(h.out)
	h.awaitReady(10 * time.Second)
	const conversations = "/api/v2/conversations/"
	waitFor(t, 5*time.Second, "the start-up reconciliation under way", func() bool {
		return h.emu.CountRequests(http.MethodGet, conversations) >= 40
	})

	h.emu.SetBlackhole(true)
	agent := as[len(as)-1].ID
	ringing := h.emu.InboundCall(agent, "+13175550199", notificationstest.Options{}).Alert()
	h.emu.SetBlackhole(false)
	h.emu.DropConnections()
	col.await(t, 3*time.Second, "the call that rang during the gap, before the long pass ends", ringing, agent)
	if n := h.emu.CountRequests(http.MethodGet, conversations); n >= live {
		t.Errorf("%d conversations fetched before the ringing one: it waited for the whole pass", n)
	}
	for i, c := range calls { // and the long pass still ends
		col.await(t, 20*time.Second, "every live call reconciled", c, as[i].ID)
	}
	h.stop()
	<-col.done
}

// A 429 on a queue's members means the client's token is throttled: the
// other queues would be refused too. The refresh waits for the
// Retry-After rather than asking for every other queue at once, and it
// goes on from the refused queue rather than reading again the ones it
// has.
func TestClient_QueueRefreshHonoursRetryAfter(t *testing.T) {
	as := agents(40)
	queues := map[string][]string{}
	var qids []string
	for i, a := range as {
		q := fmt.Sprintf("Q%02d", i)
		queues[q] = []string{a.ID}
		qids = append(qids, q)
	}
	const members = "/api/v2/routing/queues/"
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, Queues: queues},
		func(c *notifications.Config) { c.Queues = qids; c.QueueRefresh = time.Hour }, 64,
		func(e *notificationstest.Emulator) {
			// The fifth queue's page is refused, as every request would be
			// until the Retry-After.
			e.FailNext(http.MethodGet, members+"Q04/", http.StatusTooManyRequests, 2*time.Second, 1)
		})
	h.awaitReady(10 * time.Second)
	var refused time.Time
	early, total := 0, 0
	for _, r := range h.emu.Requests() {
		if r.Method != http.MethodGet || !strings.HasPrefix(r.Path, members) {
			continue
		}
		total++
		switch {
		case r.Status == http.StatusTooManyRequests:
			refused = r.Time
		case !refused.IsZero() && r.Time.Sub(refused) < 1900*time.Millisecond:
			early++
		}
	}
	if refused.IsZero() {
		t.Fatal("no 429 on the queue members")
	}
	if early > 0 {
		t.Errorf("%d queue member requests within the Retry-After of a 429", early)
	}
	if total != len(qids)+1 {
		t.Errorf("queue member requests = %d, want %d (each queue once, the refused one twice)", total, len(qids)+1)
	}
}

// A 429 on one conversation fetch makes the pass wait for the Retry-After
// and carry on with the conversations it has listed, not ask the activity
// query again for every watched agent (a hundred queries for 10,000
// agents, each one more request against the throttled token).
func TestClient_ARateLimitedFetchDoesNotRepeatTheActivityQueries(t *testing.T) {
	as := agents(2000)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond},
		func(c *notifications.Config) { c.Agents = ids(as) }, 256)
	col := collect(h.out)
	h.awaitStartupReconciliation()
	before := h.emu.CountRequests(http.MethodPost, activityQuery)
	reconnects := func() (n map[int]int, topics map[int]int) {
		n, topics = map[int]int{}, map[int]int{}
		for i, ch := range h.client.Status().(notifications.Status).Channels {
			n[i], topics[i] = ch.Reconnects, ch.Topics
		}
		return n, topics
	}
	r0, _ := reconnects()

	h.emu.SetBlackhole(true)
	ringing := make([]*notificationstest.Conversation, 5)
	for i := range ringing {
		ringing[i] = h.emu.InboundCall(as[i*400].ID, "+13175550100", notificationstest.Options{}).Alert()
	}
	h.emu.SetBlackhole(false)
	h.emu.FailNext(http.MethodGet, "/api/v2/conversations/", http.StatusTooManyRequests, time.Second, 1)
	h.emu.DropConnections()
	for i, c := range ringing {
		col.await(t, 8*time.Second, "every ringing call reconciled after the 429", c, as[i*400].ID)
	}
	// One query per hundred agents of a shard, for each of its gaps (a
	// busy machine may see a socket reconnect twice), and no more.
	r1, topics := reconnects()
	want := 0
	for i, n := range r1 {
		want += (n - r0[i]) * topics[i] / 100
	}
	if n := h.emu.CountRequests(http.MethodPost, activityQuery) - before; n != want || want < len(as)/100 {
		t.Errorf("activity queries after the gap = %d, want %d (one per hundred agents per reconnect): a 429 on a fetch repeated them", n, want)
	}
	h.stop()
	<-col.done
}

// Genesys allows a client-credentials token 300 requests a minute, and
// every request of the client counts: queue pages, channels, PUTs,
// activity queries, conversation fetches. A restart watching 10,000
// agents through 40 queues (each agent in four) with 1,000 live calls
// must not send more than that in its first seconds, or the token is
// throttled and every call of the next minute (the handover, the
// reconciliation of a lost socket) gets 429.
func TestClient_AStartStaysWithinTheTokensRateLimit(t *testing.T) {
	as := agents(10000)
	queues := map[string][]string{}
	var qids []string
	for q := 0; q < 40; q++ {
		id := fmt.Sprintf("Q%02d", q)
		qids = append(qids, id)
		g := q % 10
		queues[id] = ids(as[g*1000 : (g+1)*1000])
	}
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, Queues: queues},
		func(c *notifications.Config) {
			c.Queues = qids
			c.QueueRefresh = time.Hour
			// The defaults: the budget under test.
			c.ReconcileRate, c.ReconcileBurst, c.APIRate, c.APIBurst = 0, 0, 0, 0
		}, 4096,
		func(e *notificationstest.Emulator) {
			for i := 0; i < 1000; i++ {
				e.InboundCall(as[i*10].ID, "+13175550100", notificationstest.Options{}).Alert().Connect()
			}
		})
	api := func() int {
		n := 0
		for _, r := range h.emu.Requests() {
			if strings.HasPrefix(r.Path, "/api/") {
				n++
			}
		}
		return n
	}
	// Three seconds are a twentieth of the minute: more than the whole
	// minute's 300 in them is a throttled token whatever comes next.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); <-tick.C {
		if n := api(); n > 300 {
			t.Fatalf("%d API requests within 3 s of the start: the token allows 300 a minute", n)
		}
	}
	if n := api(); n < 50 {
		t.Errorf("%d API requests in the first 3 s: the budget's burst should allow a quick start", n)
	}
}
