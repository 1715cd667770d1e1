package notifications_test

import (
	"fmt"
	"net/http"
	"net/http/httputil"
	"sync"
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// maintenance starts 30 agents on 10 channels of 3 topics, with the real
// request budget (4 a second, burst 60) and Genesys' limit of 300 a
// minute enforced by the emulator.
func maintenance(t *testing.T, grace time.Duration) (*harness, *collector, []notificationstest.AgentSpec) {
	t.Helper()
	as := agents(30)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, SocketClosingGrace: grace, RateLimit: 300},
		func(c *notifications.Config) {
			c.Agents = ids(as)
			c.TopicsPerChannel = 3
			c.APIRate, c.APIBurst = 4, 60
			c.ReconcileRate, c.ReconcileBurst = 5, 10
		}, 4096)
	col := collect(h.out)
	h.awaitStartupReconciliation()
	waitFor(t, 10*time.Second, "every topic on a connected socket", func() bool { return h.emu.SubscribedConnected() == len(as) })
	return h, col, as
}

// ringer rings calls and checks each reaches the consumer within d; a
// call handed on ends then, so that only calls not yet handed on ring.
type ringer struct {
	t    *testing.T
	h    *harness
	col  *collector
	mu   sync.Mutex
	errs []string
	wg   sync.WaitGroup
}

func (r *ringer) ring(agent string, d time.Duration) {
	c := r.h.emu.InboundCall(agent, "+13175550177", notificationstest.Options{}).Alert()
	at := time.Now()
	k := legKey{c.ID(), c.AgentParticipantID(), agent}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for !r.col.has(k) {
			if time.Since(at) > d {
				r.mu.Lock()
				r.errs = append(r.errs, fmt.Sprintf("call for %s rung at %s not handed on within %v", agent[len(agent)-4:], at.Format("15:04:05.000"), d))
				r.mu.Unlock()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		c.Disconnect() // popped: the agent takes it, it rings no more
	}()
}

func (r *ringer) check() {
	r.wg.Wait()
	for _, e := range r.errs {
		r.t.Error(e)
	}
}

func awaitAllHandedOver(t *testing.T, h *harness, old []notificationstest.ChannelInfo, n, agents int, d time.Duration) {
	t.Helper()
	waitFor(t, d, "every shard on a new channel with its topics, no old socket left", func() bool {
		fresh := 0
		for _, ch := range h.emu.Channels() {
			if containsID(old, ch.ID) {
				if ch.Connected {
					return false
				}
				continue
			}
			if ch.Connected && ch.Topics > 0 {
				fresh++
			}
		}
		return fresh == n && h.emu.SubscribedConnected() == agents
	})
}

// Maintenance of the notification service: every channel gets
// socket_closing at once, then again while handing over; calls ring
// throughout and each must be handed on within the pop deadline (2 s).
func TestClient_MaintenanceOnEveryChannelLosesNoRingingCall(t *testing.T) {
	h, col, as := maintenance(t, 3*time.Second)
	r := &ringer{t: t, h: h, col: col}
	old := h.emu.Channels()
	if len(old) != 10 {
		t.Fatalf("channels = %d, want 10", len(old))
	}
	// Each handover takes a while (channel creation and PUT at 300 ms):
	// the second and third socket_closing land on sockets handing over,
	// or on new sockets just handed over to.
	h.emu.SetAPIDelay("/api/v2/notifications/channels", 300*time.Millisecond)
	h.emu.SocketClosing()
	for i, a := range as {
		r.ring(a.ID, 2*time.Second)
		if i == 10 || i == 20 {
			h.emu.SocketClosing() // again, while handing over
		}
		time.Sleep(30 * time.Millisecond)
	}
	awaitAllHandedOver(t, h, old, 10, len(as), 10*time.Second)
	for _, a := range as {
		r.ring(a.ID, 2*time.Second)
	}
	r.check()
	if n, what := refused(h.emu); n > 0 {
		t.Errorf("%d requests refused by the rate limit: %v", n, what)
	}
}

// Maintenance closes every socket while the streaming host refuses new
// ones for a moment. Every agent has a call ringing that the sockets
// showed before (it popped then); three calls ring while no socket is
// up. The reconciliation after the redial fetches ringing conversations
// first, at 5 a second: the three that nobody has seen must come before
// the 60 that already popped, or they are handed on 10 s late, when the
// agents have long answered them.
func TestClient_MaintenanceGapPopsUnseenRingingCallsBeforeSeenOnes(t *testing.T) {
	as := agents(60)
	px := &slowProxy{}
	h := startBehindWith(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, SocketClosingGrace: time.Second, RateLimit: 300},
		px, func(rp *httputil.ReverseProxy) { px.rp = rp }, func(c *notifications.Config) {
			c.TopicsPerChannel = 6
			c.PutDebounce = 250 * time.Millisecond // the default: gaps landing together are reconciled together
			c.APIRate, c.APIBurst = 4, 60
			c.ReconcileRate, c.ReconcileBurst = 5, 10
		})
	col := collect(h.out)
	h.awaitStartupReconciliation()
	waitFor(t, 10*time.Second, "every topic on a connected socket", func() bool { return h.emu.SubscribedConnected() == len(as) })
	for _, a := range as {
		c := h.emu.InboundCall(a.ID, "+13175550150", notificationstest.Options{}).Alert()
		col.await(t, 2*time.Second, "a call seen on the socket", c, a.ID)
	}
	old := h.emu.Channels()
	px.refuse.Store(http.StatusServiceUnavailable)
	h.emu.SocketClosing()
	waitFor(t, 5*time.Second, "the old sockets closed", func() bool { return h.emu.SubscribedConnected() == 0 })
	var unseen []*notificationstest.Conversation
	late := []notificationstest.AgentSpec{as[5], as[35], as[59]}
	for _, a := range late {
		unseen = append(unseen, h.emu.InboundCall(a.ID, "+13175550151", notificationstest.Options{}).Alert())
	}
	time.Sleep(500 * time.Millisecond)
	px.refuse.Store(0)
	back := time.Now()
	awaitAllHandedOver(t, h, old, 10, len(as), 30*time.Second)
	for i, c := range unseen {
		k := legKey{c.ID(), c.AgentParticipantID(), late[i].ID}
		waitFor(t, 30*time.Second, "the call that rang in the gap", func() bool { return col.has(k) })
		if d := time.Since(back); d > 3*time.Second {
			t.Errorf("the call that rang in the gap was handed on %v after the sockets were back", d.Round(100*time.Millisecond))
		}
	}
}
