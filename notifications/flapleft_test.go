package notifications_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// Sockets flapping while many calls ring that were heard before the first
// drop: each pass fetches those (seen ringing before the gap, popped
// then) after the ones that rang unseen, and gives way to a newer gap
// before them (docs/genesys.md, Reconciliation: "those seen ringing
// before the gap, which popped then, wait too"). What a pass that gave
// way left of them must not become, in the next pass, "ringing" calls
// that pass never gives way before: a call that rings unseen during the
// third gap then waits behind dozens of fetches of calls already popped,
// at the fetch rate of 5 a second, and a real call stops ringing within
// seconds.
func TestClient_ACallRingingDuringAThirdFlapIsNotHeldBehindSeenRingingCallsLeftByAPassThatGaveWay(t *testing.T) {
	as := agents(40)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: time.Second}, func(c *notifications.Config) {
		c.Agents = ids(as)
		c.TopicsPerChannel = 10 // four channels
		// The production durations and rates.
		c.HeartbeatTimeout, c.PingInterval, c.BackoffMin, c.BackoffMax, c.PutDebounce = 0, 0, 0, 0, 0
		c.ReconcileRate, c.ReconcileBurst, c.APIRate, c.APIBurst = 0, 0, 0, 0
		c.HandoverGrace, c.TokenRefreshMargin, c.QueueRefresh = 0, 0, 0
	}, 4096)
	col := collect(h.out)
	h.awaitStartupReconciliation()

	// 80 calls ring and are heard.
	var heard []*notificationstest.Conversation
	for i := range 80 {
		c := h.emu.InboundCall(as[i%len(as)].ID, fmt.Sprintf("+1317555%04d", i), notificationstest.Options{}).Alert()
		heard = append(heard, c)
	}
	for i, c := range heard {
		col.await(t, 5*time.Second, "a call ringing on a live socket", c, as[i%len(as)].ID)
	}
	fetches := func() int { return h.emu.CountRequests(http.MethodGet, "/api/v2/conversations/") }
	queries := func() int { return h.emu.CountRequests(http.MethodPost, activityQuery) }

	// Gap 1: its pass fetches the 80 (seen ringing before the gap).
	f0, q0 := fetches(), queries()
	h.emu.DropConnections()
	waitFor(t, 10*time.Second, "the first pass's first fetch", func() bool { return fetches() > f0 })
	// Gap 2 while it runs: it gives way, leaving most of them.
	h.emu.DropConnections()
	waitFor(t, 10*time.Second, "the second pass's activity query", func() bool { return queries() >= q0+2 })
	// Gap 3 while the second pass runs, and a call rings unseen in it.
	h.emu.SetBlackhole(true)
	dropped := time.Now()
	y := h.emu.InboundCall(as[0].ID, "+13175559999", notificationstest.Options{}).Alert()
	f3 := fetches()
	time.Sleep(200 * time.Millisecond) // the frames are dropped, not sent once the blackhole ends
	h.emu.SetBlackhole(false)
	h.emu.DropConnections()
	col.await(t, 20*time.Second, "the call that rang during the third gap", y, as[0].ID)
	took := time.Since(dropped)
	t.Logf("the call that rang unseen during the third gap was handed on %v after it alerted; %d conversations fetched before it since", took.Round(10*time.Millisecond), fetches()-f3-1)
	// Correct code: the socket back within about a second (the backoff
	// after sockets that lived under 10 s), the pass after the debounce
	// and one activity query, the call among the first fetches: about 2 s.
	if took > 6*time.Second {
		t.Errorf("a call that rang unseen during a gap was handed on %v after it alerted, behind %d fetches of calls seen ringing before an earlier gap (popped then) that a pass which gave way left: docs/genesys.md says a pass gives way before those", took.Round(10*time.Millisecond), fetches()-f3-1)
	}
	h.stop()
	<-col.done
}
