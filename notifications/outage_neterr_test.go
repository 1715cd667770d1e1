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

// resetCreateProxy forwards to the emulator; while createDown is set it
// drops the connection of every channel creation without an answer, as a
// load balancer in front of a failing Genesys service does (the client
// reads EOF: a network error, no HTTP status).
type resetCreateProxy struct {
	rp            *httputil.ReverseProxy
	createDown    atomic.Bool
	failedCreates atomic.Int64
}

func (p *resetCreateProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.createDown.Load() && r.Method == http.MethodPost && r.URL.Path == "/api/v2/notifications/channels" {
		p.failedCreates.Add(1)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	p.rp.ServeHTTP(w, r)
}

// TestClient_ACallAfterAChannelLossDuringANetworkOutageIsHeardAtOnce: as
// TestClient_ACallAfterAChannelLossDuringAnAPIOutageIsHeardAtOnce, but the
// channels API fails with no answer at all (the connection is dropped: a
// network error, as a timeout or a refused connection is) rather than a
// 503. The reconciliation treats both as an outage (apiOutage) and so does
// the socket's redial; the shard's channel creation only a 5xx, so after
// an outage of a few seconds the agent stays unwatched for the backoff
// grown meanwhile.
func TestClient_ACallAfterAChannelLossDuringANetworkOutageIsHeardAtOnce(t *testing.T) {
	as := agents(1)
	px := &resetCreateProxy{}
	h, col := startBehindOutage(t, as, px, func(rp *httputil.ReverseProxy) { px.rp = rp }, nil)

	px.createDown.Store(true)
	h.emu.ExpireChannels()
	began := time.Now()
	c := h.emu.InboundCall(as[0].ID, "+13175550146", notificationstest.Options{}).Alert()
	awaitFailureAfterOutage(t, "channel creation", began, &px.failedCreates)
	px.createDown.Store(false)
	back := time.Now()
	awaitHeardAtOnce(t, h, col, c, as[0].ID, began, back, "the call that rang during the gap", "channel creations (connection dropped)", &px.failedCreates,
		"a network error creating the channel kept the backoff grown during the outage (shard.go: only errRedial and a 5xx APIError were capped at outageRetryMax)")
}

// membersOutageProxy forwards to the emulator; while down is set it
// answers queue member reads with 503.
type membersOutageProxy struct {
	rp     *httputil.ReverseProxy
	down   atomic.Bool
	failed atomic.Int64
}

func (p *membersOutageProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.down.Load() && r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/v2/routing/queues/") {
		p.failed.Add(1)
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		return
	}
	p.rp.ServeHTTP(w, r)
}

// TestClient_QueueMembersAreWatchedAtOnceAfterAnAPIOutageAtStart: the
// daemon starts (or restarts) while Genesys' routing API answers 503: no
// queue member can be read, so no agent is watched and nothing pops. Once
// the API is back the members must be watched within a second or two, as
// the login, the socket's redial, the channel's creation and the gap's
// reconciliation are (outageRetryMax): agentLoop retries the members read
// at the doubling backoff (up to BackoffMax, 60 s), so after an outage of
// 8 s every agent of the queues stays unwatched 8 s more.
func TestClient_QueueMembersAreWatchedAtOnceAfterAnAPIOutageAtStart(t *testing.T) {
	as := agents(2)
	px := &membersOutageProxy{}
	px.down.Store(true)
	h := startBehindWith(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond,
		Queues: map[string][]string{"Q1": ids(as)}}, px,
		func(rp *httputil.ReverseProxy) { px.rp = rp },
		func(c *notifications.Config) {
			c.Agents = nil
			c.Queues = []string{"Q1"}
			c.QueueRefresh = time.Hour
			c.BackoffMin, c.BackoffMax = 0, 0 // the defaults: how the daemon retries
		})
	began := time.Now()
	awaitFailureAfterOutage(t, "queue read", began, &px.failed)
	px.down.Store(false)
	back := time.Now()
	waitFor(t, 70*time.Second, "the queue's members watched", func() bool {
		return notifications.Watched(h.client, as[0].ID) && notifications.Watched(h.client, as[1].ID)
	})
	took := time.Since(back)
	t.Logf("%d queue reads failed in an outage of %v; the members were watched %v after the API was back",
		px.failed.Load(), back.Sub(began).Round(time.Millisecond), took.Round(time.Millisecond))
	if took > 2*popDeadline {
		t.Errorf("the queue's members were watched %v after the routing API answered again, more than twice the pop deadline (%v): agentLoop waited out the backoff grown during the outage (client.go agentLoop: retryWait(err, backoff) with no outage cap)", took.Round(10*time.Millisecond), popDeadline)
	}
}

// convOutageProxy forwards to the emulator; sockets and the conversations
// API (GET /api/v2/conversations/{id}) can be failed separately. The
// activity query (analytics) keeps answering.
type convOutageProxy struct {
	rp          *httputil.ReverseProxy
	socketsDown atomic.Bool
	convDown    atomic.Bool
	failed      atomic.Int64
}

func (p *convOutageProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case p.socketsDown.Load() && strings.HasPrefix(r.URL.Path, "/channels/"):
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		return
	case p.convDown.Load() && strings.HasPrefix(r.URL.Path, "/api/v2/conversations/"):
		p.failed.Add(1)
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		return
	}
	p.rp.ServeHTTP(w, r)
}

// TestClient_CallsThatRangDuringAGapAreHeardAtOnceAfterAConversationsAPIOutage:
// as TestClient_ACallThatRangDuringAGapIsHeardAtOnceAfterTheAPIOutageThatFailedItsReconciliation,
// but only the conversations API fails (its GETs answer 503; the activity
// query answers): the pass lists both calls that rang during the gap, their
// fetches fail two in a row, and the pass is retried within a second
// (apiOutage). Each call left unfetched keeps its own retry schedule
// though (retryAt, 2 s doubling to BackoffMax), which the retried passes
// wait for (held): once the API is back the calls are heard only when
// that schedule, grown during the outage, comes due.
func TestClient_CallsThatRangDuringAGapAreHeardAtOnceAfterAConversationsAPIOutage(t *testing.T) {
	as := agents(2)
	px := &convOutageProxy{}
	h, col := startBehindOutage(t, as, px, func(rp *httputil.ReverseProxy) { px.rp = rp }, nil)

	px.socketsDown.Store(true)
	px.convDown.Store(true)
	h.emu.DropConnections()
	began := time.Now()
	c0 := h.emu.InboundCall(as[0].ID, "+13175550147", notificationstest.Options{}).Alert()
	c1 := h.emu.InboundCall(as[1].ID, "+13175550148", notificationstest.Options{}).Alert()
	time.Sleep(time.Second)
	px.socketsDown.Store(false)
	awaitFailureAfterOutage(t, "conversation fetch", began, &px.failed)
	px.convDown.Store(false)
	back := time.Now()
	col.await(t, 70*time.Second, "the first call that rang during the gap", c0, as[0].ID)
	// Awaited after the first: the time is that of both.
	awaitHeardAtOnce(t, h, col, c1, as[1].ID, began, back, "the second call that rang during the gap", "conversation fetches", &px.failed,
		"their fetches waited out the per-conversation retry (reconcileItem.retryAt) grown during the outage")
}
