package notifications_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// flapProxy forwards to the emulator. While flap is set it accepts each
// socket of the channels that hold a flapping agent's topic and closes
// it at once (a proxy or network that keeps cutting one channel's
// socket), and it answers the analytics activity query after
// activityDelay, as the real service takes its time.
type flapProxy struct {
	rp            *httputil.ReverseProxy
	agents        []string
	flap          atomic.Bool
	activityDelay time.Duration

	mu      sync.Mutex
	flapped map[string]bool // channel ids holding a flapping agent's topic
}

func (p *flapProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/api/v2/notifications/channels/") && strings.HasSuffix(r.URL.Path, "/subscriptions"):
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		for _, a := range p.agents {
			if bytes.Contains(body, []byte(a)) {
				id := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/api/v2/notifications/channels/"), "/subscriptions")
				p.mu.Lock()
				p.flapped[id] = true
				p.mu.Unlock()
			}
		}
	case strings.HasPrefix(r.URL.Path, "/channels/") && p.flap.Load():
		p.mu.Lock()
		cut := p.flapped[strings.TrimPrefix(r.URL.Path, "/channels/")]
		p.mu.Unlock()
		if cut {
			up := websocket.Upgrader{}
			if ws, err := up.Upgrade(w, r, nil); err == nil {
				_ = ws.Close()
			}
			return
		}
	case r.Method == http.MethodPost && r.URL.Path == activityQuery:
		time.Sleep(p.activityDelay)
	}
	p.rp.ServeHTTP(w, r)
}

// startFlapping starts a client for as, one agent a channel, behind a
// flapProxy that flaps the channels of every agent but the first stable.
func startFlapping(t *testing.T, as []notificationstest.AgentSpec, stable int) (*harness, *flapProxy) {
	t.Helper()
	px := &flapProxy{agents: ids(as[stable:]), flapped: map[string]bool{}, activityDelay: 500 * time.Millisecond}
	h := startBehind(t, as, px, func(rp *httputil.ReverseProxy) { px.rp = rp }, func(c *notifications.Config) {
		c.TopicsPerChannel = 1
		// The default debounce; a socket cut at once is redialled within
		// half a second, so with three channels flapping some channel's
		// gap lands during each pass's activity query.
		c.PutDebounce = 250 * time.Millisecond
		c.BackoffMax = 200 * time.Millisecond
		// One fetch at a time, so a 429 stops the pass at its first.
		c.ReconcileRate, c.ReconcileBurst = 20, 1
	})
	return h, px
}

// A fetch refused with 429 fails the pass, and the ringing calls it was
// fetching are left for the next pass. While other channels' sockets keep
// dropping, every later pass has a newer gap waiting by the time it
// reaches what the earlier pass left, and gives way before fetching it:
// the calls that rang during the gap never reach the bridge while the
// other sockets flap (and a real call stops ringing within seconds).
func TestClient_RingingCallsLeftByARateLimitedPassPopWhileOtherSocketsFlap(t *testing.T) {
	as := agents(9)
	const stable = 6
	h, px := startFlapping(t, as, stable)
	col := collect(h.out)
	h.awaitStartupReconciliation()

	h.emu.SetBlackhole(true)
	ringing := make([]*notificationstest.Conversation, stable)
	for i := range ringing {
		ringing[i] = h.emu.InboundCall(as[i].ID, "+13175550101", notificationstest.Options{}).Alert()
	}
	time.Sleep(200 * time.Millisecond) // the frames are dropped, not sent once the blackhole ends
	h.emu.SetBlackhole(false)
	// The token is throttled: the pass's first fetch is refused (the
	// limiter lets one through at a time, so it is the only one sent).
	h.emu.FailNext(http.MethodGet, "/api/v2/conversations/", http.StatusTooManyRequests, time.Second, 1)
	px.flap.Store(true)
	h.emu.DropConnections()
	// The 429's Retry-After is 1 s: the next pass fetches them all.
	deadline := time.Now().Add(4 * time.Second)
	for i, c := range ringing {
		col.await(t, time.Until(deadline), "every call that rang during the gap, after the 429's Retry-After, while other sockets flap", c, as[i].ID)
	}
	px.flap.Store(false)
	h.stop()
	<-col.done
}

// A call answered during a gap (it pops with SCREENPOP_POP_ON=connected)
// is fetched after the ringing ones; a pass gives way to a newer gap
// before it, and while other channels' sockets keep dropping every pass
// does: the call is not handed on until the flapping stops.
func TestClient_ACallAnsweredDuringAGapIsHandedOnWhileOtherSocketsFlap(t *testing.T) {
	as := agents(4)
	h, px := startFlapping(t, as, 1)
	col := collect(h.out)
	h.awaitStartupReconciliation()

	h.emu.SetBlackhole(true)
	answered := []*notificationstest.Conversation{ // a call and two chats
		h.emu.InboundCall(as[0].ID, "+13175550102", notificationstest.Options{}).Alert().Connect(),
		h.emu.Chat(as[0].ID, notificationstest.Options{}).Alert().Connect(),
		h.emu.Chat(as[0].ID, notificationstest.Options{}).Alert().Connect(),
	}
	time.Sleep(200 * time.Millisecond) // the frames are dropped, not sent once the blackhole ends
	h.emu.SetBlackhole(false)
	px.flap.Store(true)
	h.emu.DropConnections()
	for _, c := range answered {
		col.await(t, 5*time.Second, "every call answered during the gap, while other sockets flap", c, as[0].ID)
	}
	px.flap.Store(false)
	h.stop()
	<-col.done
}

// A consult transfer made during a gap rings for the second agent while
// the first, who answered the call during the gap, is still in it. The
// activity query lists the first agent's entity (interacting, never
// seen) before the second's (alerting): the conversation must still be
// fetched as a ringing one, not after the pass has given way to a newer
// gap, which while other channels' sockets flap is never.
func TestClient_AConsultRingingDuringAGapIsHandedOnWhileOtherSocketsFlap(t *testing.T) {
	as := agents(5)
	h, px := startFlapping(t, as, 2)
	col := collect(h.out)
	h.awaitStartupReconciliation()

	h.emu.SetBlackhole(true)
	for range 6 { // the first agent's chats, answered during the gap, listed first
		h.emu.Chat(as[0].ID, notificationstest.Options{}).Alert().Connect()
	}
	consult := h.emu.InboundCall(as[0].ID, "+13175550103", notificationstest.Options{}).Alert().Connect().ConsultTransfer(as[1].ID)
	time.Sleep(200 * time.Millisecond) // the frames are dropped, not sent once the blackhole ends
	h.emu.SetBlackhole(false)
	px.flap.Store(true)
	h.emu.DropConnections()
	col.await(t, 3*time.Second, "the consult that rang during the gap, while other sockets flap", consult, as[1].ID)
	px.flap.Store(false)
	h.stop()
	<-col.done
}
