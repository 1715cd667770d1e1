package notifications_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// budget20x is Genesys' limit of 300 requests a minute for a
// client-credentials client compressed 20 times (300 per 3 s, enforced by
// the emulator's RateLimit), and the client's default budget compressed
// alike: 4 a second with a burst of 60 becomes 80 a second with a burst
// of 60 (still at most 300 in any window), conversation fetches at 5 a
// second (burst 10) become 100 (burst 200).
const budgetWindow = 3 * time.Second

func budget20x(c *notifications.Config) {
	c.APIRate, c.APIBurst = 80, 60
	c.ReconcileRate, c.ReconcileBurst = 100, 200
}

func refused(e *notificationstest.Emulator) (n int, what map[string]int) {
	what = map[string]int{}
	for _, r := range e.Requests() {
		if r.Status == http.StatusTooManyRequests {
			n++
			p := r.Path
			if strings.HasPrefix(p, "/api/v2/conversations/") {
				p = "/api/v2/conversations/"
			}
			what[r.Method+" "+p]++
		}
	}
	return n, what
}

// 2,000 agents on live calls lose their sockets together (an outage of
// 30 s, compressed); 200 chats rang and 200 were answered meanwhile. The
// reconciliation fetches the 400, ringing ones first, and none of its
// requests is refused by Genesys' limit.
func TestClient_AGapOf2000LiveConversationsStaysWithinTheRateLimit(t *testing.T) {
	as := agents(2000)
	h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, RateLimit: 300, RateWindow: budgetWindow},
		func(c *notifications.Config) { c.Agents = ids(as); budget20x(c) }, 8192)
	col := collect(h.out)
	h.awaitStartupReconciliation()
	waitFor(t, 10*time.Second, "every topic on a connected socket", func() bool { return h.emu.SubscribedConnected() == len(as) })
	live := make([]*notificationstest.Conversation, len(as))
	for i := range as {
		live[i] = h.emu.InboundCall(as[i].ID, "+13175550100", notificationstest.Options{}).Alert().Connect()
	}
	for i, c := range live {
		col.await(t, 10*time.Second, "the live calls seen on the sockets", c, as[i].ID)
	}
	h.emu.SetBlackhole(true)
	var ringing, answered []*notificationstest.Conversation
	var ra, aa []string
	for i := 0; i < 200; i++ {
		ringing = append(ringing, h.emu.Chat(as[i*10].ID, notificationstest.Options{}).Alert())
		ra = append(ra, as[i*10].ID)
		answered = append(answered, h.emu.Chat(as[i*10+5].ID, notificationstest.Options{}).Alert().Connect())
		aa = append(aa, as[i*10+5].ID)
	}
	time.Sleep(budgetWindow / 2) // 30 s
	h.emu.SetBlackhole(false)
	h.emu.DropConnections()
	for i, c := range ringing {
		col.await(t, 10*time.Second, "the chats that rang during the outage", c, ra[i])
	}
	for i, c := range answered {
		col.await(t, 20*time.Second, "the chats answered during the outage", c, aa[i])
	}
	if n, what := refused(h.emu); n > 0 {
		t.Errorf("%d requests refused 429 by the rate limit: %v", n, what)
	}
	h.stop()
	<-col.done
}

// burn spends n requests of the OAuth client's budget, as Genesys
// counting requests the client did not send would.
func burn(t *testing.T, e *notificationstest.Emulator, n int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.URL()+"/oauth/token", strings.NewReader("grant_type=client_credentials"))
	req.SetBasicAuth("screenpop-client", "screenpop-secret")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	for i := 0; i < n; i++ {
		r, _ := http.NewRequest(http.MethodGet, e.URL()+"/api/v2/tokens/me", nil)
		r.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// The client's budget is spent when 2,000 agents lose their sockets (the
// activity queries and fetches get 429, with and without Retry-After):
// every chat that rang meanwhile is still handed on once the limit lets
// requests through again.
func TestClient_AThrottledGapLosesNoRingingConversation(t *testing.T) {
	for _, noRetryAfter := range []bool{false, true} {
		t.Run(fmt.Sprint("noRetryAfter=", noRetryAfter), func(t *testing.T) {
			as := agents(2000)
			h := start(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond,
				RateLimit: 300, RateWindow: budgetWindow, RateLimitNoRetryAfter: noRetryAfter},
				func(c *notifications.Config) { c.Agents = ids(as); budget20x(c) }, 8192)
			col := collect(h.out)
			h.awaitStartupReconciliation()
			waitFor(t, 10*time.Second, "every topic on a connected socket", func() bool { return h.emu.SubscribedConnected() == len(as) })
			h.emu.SetBlackhole(true)
			var ringing []*notificationstest.Conversation
			var ra []string
			for i := 0; i < 100; i++ {
				ringing = append(ringing, h.emu.Chat(as[i*20].ID, notificationstest.Options{}).Alert())
				ra = append(ra, as[i*20].ID)
			}
			time.Sleep(300 * time.Millisecond)
			burn(t, h.emu, 280)
			h.emu.SetBlackhole(false)
			h.emu.DropConnections()
			for i, c := range ringing {
				col.await(t, 20*time.Second, "the chats that rang during the gap", c, ra[i])
			}
			if n, _ := refused(h.emu); n == 0 {
				t.Error("no request refused 429: the scenario did not happen")
			}
			h.stop()
			<-col.done
		})
	}
}
