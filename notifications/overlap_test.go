package notifications_test

import (
	"net/http"
	"net/http/httputil"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// partialOutageProxy forwards to the emulator; it can answer the socket
// upgrades (sockets) and the reconciliation's API (analytics and
// conversation reads) with 503 separately, as Genesys Cloud's services
// fail and come back one by one.
type partialOutageProxy struct {
	rp            *httputil.ReverseProxy
	socketsDown   atomic.Bool
	apiDown       atomic.Bool
	failedAPI     atomic.Int64 // activity queries answered 503
	createDown    atomic.Bool  // channel creations answer 503
	failedCreates atomic.Int64 // channel creations answered 503
	putDown       atomic.Bool  // subscription changes answer 503
	failedPuts    atomic.Int64 // subscription changes answered 503
}

func (p *partialOutageProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case p.putDown.Load() && r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/subscriptions"):
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		p.failedPuts.Add(1)
		return
	case p.createDown.Load() && r.Method == http.MethodPost && r.URL.Path == "/api/v2/notifications/channels":
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		p.failedCreates.Add(1)
		return
	case p.socketsDown.Load() && strings.HasPrefix(r.URL.Path, "/channels/"):
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		return
	case p.apiDown.Load() && (strings.HasPrefix(r.URL.Path, "/api/v2/analytics/") || strings.HasPrefix(r.URL.Path, "/api/v2/conversations/")):
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		if strings.HasPrefix(r.URL.Path, activityQuery) {
			p.failedAPI.Add(1)
		}
		return
	}
	p.rp.ServeHTTP(w, r)
}

// TestClient_ACallThatRangDuringAGapIsHeardAtOnceAfterTheAPIOutageThatFailedItsReconciliation:
// two failures at once. The agent's socket drops while Genesys Cloud's
// API is failing (5xx); a call rings during the gap. The socket comes
// back first, so its reconciliation runs while the API still answers
// 503, and is retried with backoff. Once the API is back the call that is
// still ringing must reach the bridge within the pop deadline, as a call
// after a full outage does (TestClient_ACallRightAfterAGenesysOutageIsHeardAtOnce):
// only the reconciliation can hear it (nothing is replayed on the socket).
// The reconciliation's backoff doubled from BackoffMin to BackoffMax
// (60 s) through the outage, so after an API outage of 15 to 30 s the
// call was heard only 10 to 30 s after Genesys was back (after 8 s,
// about 8 s): the agent answered it without a pop.
// outageFor is how long the API is down in these tests: long enough for
// the old doubling backoff (from 0.5 s) to reach 8 s, four times the pop
// deadline.
const outageFor = 8 * time.Second

// awaitFailureAfterOutage waits for a first failure counted by failed,
// then until outageFor has passed since began and one more failure: the
// API is then to come back just after a failed attempt, with the backoff
// grown as far as the outage took it.
func awaitFailureAfterOutage(t *testing.T, what string, began time.Time, failed *atomic.Int64) {
	t.Helper()
	waitFor(t, 20*time.Second, "a failed "+what, func() bool { return failed.Load() > 0 })
	for n := failed.Load(); time.Since(began) < outageFor || failed.Load() == n; {
		if failed.Load() != n {
			n = failed.Load()
		}
		if time.Since(began) > 85*time.Second {
			t.Fatalf("no %s for 70 s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestClient_ACallThatRangDuringAGapIsHeardAtOnceAfterTheAPIOutageThatFailedItsReconciliation(t *testing.T) {
	as := agents(1)
	h, px, col := startPartialOutage(t, as, nil)

	// The gap: the socket drops and cannot come back yet; the API fails.
	px.socketsDown.Store(true)
	px.apiDown.Store(true)
	h.emu.DropConnections()
	began := time.Now()
	c := h.emu.InboundCall(as[0].ID, "+13175550142", notificationstest.Options{}).Alert()
	time.Sleep(time.Second)
	// The socket comes back: its gap's reconciliation fails on the API.
	px.socketsDown.Store(false)
	// The API comes back outageFor into the outage, just after a failed
	// attempt of the reconciliation.
	awaitFailureAfterOutage(t, "reconciliation", began, &px.failedAPI)
	px.apiDown.Store(false)
	back := time.Now()
	awaitHeardAtOnce(t, h, col, c, as[0].ID, began, back, "the call that rang during the gap", "activity queries", &px.failedAPI, "the gap's reconciliation waited out the backoff grown during the API outage")
}

// TestClient_ACallAfterAChannelLossDuringAnAPIOutageIsHeardAtOnce: two
// failures at once. The agent's channel is gone (expired, or removed by
// Genesys: its socket closes and a redial gets 404) while the channels
// API is failing (503): the client cannot make a new channel. A call
// rings during the gap. Once the API is back the call must reach the
// bridge within the pop deadline, as after a full outage
// (TestClient_ACallRightAfterAGenesysOutageIsHeardAtOnce), where the
// redials of a socket are a second apart at most.
func TestClient_ACallAfterAChannelLossDuringAnAPIOutageIsHeardAtOnce(t *testing.T) {
	as := agents(1)
	h, px, col := startPartialOutage(t, as, nil)

	px.createDown.Store(true)
	h.emu.ExpireChannels()
	began := time.Now()
	c := h.emu.InboundCall(as[0].ID, "+13175550145", notificationstest.Options{}).Alert()
	awaitFailureAfterOutage(t, "channel creation", began, &px.failedCreates)
	px.createDown.Store(false)
	back := time.Now()
	awaitHeardAtOnce(t, h, col, c, as[0].ID, began, back, "the call that rang during the gap", "channel creations", &px.failedCreates, "the shard waited out the backoff grown during the outage before making a channel")
}

// TestClient_AnAgentAddedDuringAnAPIOutageIsHeardAtOnceAfterIt: two
// changes at once. The admin adds an agent (the agents file, or a queue's
// new member) while Genesys Cloud's notifications API is failing (503):
// the subscription change that adds the agent's topic fails. Once the
// API is back, a call to the new agent must reach the bridge within the
// pop deadline, as after any other outage. The failed change was retried
// after a fixed ~16 s (BackoffMax/4), also while Genesys was down, so the
// new agent's calls went unheard for up to 16 s after it was back.
func TestClient_AnAgentAddedDuringAnAPIOutageIsHeardAtOnceAfterIt(t *testing.T) {
	as := agents(2)
	h, px, col := startPartialOutage(t, as, func(c *notifications.Config) {
		c.Agents, c.AgentsChange = ids(as[:1]), true
	})

	px.putDown.Store(true)
	began := time.Now()
	if err := h.client.SetAgents(ids(as)); err != nil {
		t.Fatal(err)
	}
	awaitFailureAfterOutage(t, "subscription change", began, &px.failedPuts)
	px.putDown.Store(false)
	back := time.Now()
	c := h.emu.InboundCall(as[1].ID, "+13175550146", notificationstest.Options{}).Alert()
	awaitHeardAtOnce(t, h, col, c, as[1].ID, began, back, "the added agent's call", "subscription changes", &px.failedPuts, "the failed subscription change waited out a fixed backoff")
}

// TestClient_ACallAfterTopicsTakenDuringAnAPIOutageIsHeardAtOnce: two
// failures at once. Genesys takes the channel's topics away
// (v2.system.no_longer_subscribed: the socket stays open and delivers
// nothing) while its channels API is failing (503): the handover to a new
// channel cannot make one. A call rings meanwhile. Once the API is back
// the call must reach the bridge within the pop deadline, as after a
// channel lost in an outage
// (TestClient_ACallAfterAChannelLossDuringAnAPIOutageIsHeardAtOnce) or a
// subscription change failed in one
// (TestClient_AnAgentAddedDuringAnAPIOutageIsHeardAtOnceAfterIt): the
// failed handover was retried after a doubling backoff (2, 4, 8, 16 s...),
// also while Genesys was down, so the agent went unheard for up to that
// long after it was back.
func TestClient_ACallAfterTopicsTakenDuringAnAPIOutageIsHeardAtOnce(t *testing.T) {
	as := agents(1)
	h, px, col := startPartialOutage(t, as, nil)

	px.createDown.Store(true)
	h.emu.NoLongerSubscribed()
	began := time.Now()
	c := h.emu.InboundCall(as[0].ID, "+13175550147", notificationstest.Options{}).Alert()
	awaitFailureAfterOutage(t, "channel creation", began, &px.failedCreates)
	px.createDown.Store(false)
	back := time.Now()
	awaitHeardAtOnce(t, h, col, c, as[0].ID, began, back, "the call that rang while the channel held no topics", "channel creations", &px.failedCreates, "the failed handover waited out a backoff grown during the outage")
}

// startPartialOutage starts a client watching as behind a
// partialOutageProxy (startBehindOutage).
func startPartialOutage(t *testing.T, as []notificationstest.AgentSpec, more func(*notifications.Config)) (*harness, *partialOutageProxy, *collector) {
	t.Helper()
	px := &partialOutageProxy{}
	h, col := startBehindOutage(t, as, px, func(rp *httputil.ReverseProxy) { px.rp = rp }, more)
	return h, px, col
}

// startBehindOutage starts a client watching as behind px (setRP gives it
// the reverse proxy to the emulator), retrying as the daemon does (more
// may change its config further), and waits for its start-up
// reconciliation.
func startBehindOutage(t *testing.T, as []notificationstest.AgentSpec, px http.Handler, setRP func(*httputil.ReverseProxy), more func(*notifications.Config)) (*harness, *collector) {
	t.Helper()
	h := startBehindWith(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond}, px, setRP,
		func(c *notifications.Config) {
			c.BackoffMin, c.BackoffMax = 0, 0 // the defaults: how the daemon retries
			if more != nil {
				more(c)
			}
		})
	col := collect(h.out)
	h.awaitStartupReconciliation()
	return h, col
}

// awaitHeardAtOnce waits for what, conv's leg for agent, and fails the
// test if it reached the bridge more than twice the pop deadline after
// back, when Genesys came back; failed counts the attempts (named
// attempts) that failed in the outage begun at began, and late is what
// waited when the call came late. It stops the client.
func awaitHeardAtOnce(t *testing.T, h *harness, col *collector, conv *notificationstest.Conversation, agent string, began, back time.Time, what, attempts string, failed *atomic.Int64, late string) {
	t.Helper()
	col.await(t, 70*time.Second, what, conv, agent)
	took := time.Since(back)
	t.Logf("%d %s failed in an outage of %v; %s was heard %v after Genesys was back",
		failed.Load(), attempts, back.Sub(began).Round(time.Millisecond), what, took.Round(time.Millisecond))
	if took > 2*popDeadline { // twice: the retry is a second apart, and a busy machine
		t.Errorf("%s was heard %v after the Genesys API came back, more than twice its pop deadline (%v): %s", what, took.Round(10*time.Millisecond), popDeadline, late)
	}
	h.stop()
	<-col.done
}
