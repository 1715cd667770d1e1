package notifications_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications"
	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// putRefusingProxy forwards to the emulator, but answers 400 to every
// subscription PUT on a channel other than keep until until, noting
// whether one carried topic; it holds each socket upgrade for delay.
type putRefusingProxy struct {
	rp    *httputil.ReverseProxy
	mu    sync.Mutex
	keep  string
	until time.Time
	delay time.Duration
	topic string
	// refused are the times of the refused PUTs; carried: one of them
	// carried topic.
	refused []time.Time
	carried bool
}

func (p *putRefusingProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	delay := p.delay
	p.mu.Unlock()
	if strings.HasPrefix(r.URL.Path, "/channels/") && delay > 0 {
		time.Sleep(delay)
	}
	if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/subscriptions") {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		p.mu.Lock()
		refuse := p.keep != "" && !strings.Contains(r.URL.Path, "/"+p.keep+"/") && time.Now().Before(p.until)
		if refuse {
			p.refused = append(p.refused, time.Now())
			p.carried = p.carried || bytes.Contains(body, []byte(p.topic))
		}
		p.mu.Unlock()
		if refuse {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"message":"refused by the test","code":"bad.request","status":400}`)
			return
		}
	}
	p.rp.ServeHTTP(w, r)
}

// An agent added while a handover dials its new channel goes into that
// handover's PUT. When Genesys refuses that PUT (and, for a while, every
// PUT on a new channel), the handover keeps the old socket and is retried
// after a backoff that grows to a minute; the agent must not wait for it:
// the old channel's socket is live and takes the change at once.
func TestClient_AgentAddedDuringAFailedHandoverIsHeardOnTheOldChannel(t *testing.T) {
	as := agents(2)
	topicB := "v2.users." + as[1].ID + ".conversations"
	px := &putRefusingProxy{topic: topicB}
	h := startBehindWith(t, notificationstest.Config{Agents: as, HeartbeatInterval: 100 * time.Millisecond, SocketClosingGrace: 30 * time.Second},
		px, func(rp *httputil.ReverseProxy) { px.rp = rp }, func(c *notifications.Config) {
			c.Agents, c.AgentsChange = ids(as[:1]), true
			c.BackoffMin, c.BackoffMax = 500*time.Millisecond, 60*time.Second // the defaults
		})
	go func() {
		for range h.out {
		}
	}()
	h.awaitReady(5 * time.Second)
	awaitSockets(t, h, 1)
	old := h.emu.Channels()
	if len(old) != 1 {
		t.Fatalf("channels %+v, want one", old)
	}
	px.mu.Lock()
	px.keep, px.until, px.delay = old[0].ID, time.Now().Add(time.Hour), 800*time.Millisecond
	px.mu.Unlock()
	h.emu.SocketClosing()              // the handover starts; the old socket stays up 30 s
	time.Sleep(300 * time.Millisecond) // it is dialling the new channel (800 ms)
	if err := h.client.SetAgents(ids(as)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the handover's PUT refused", func() bool {
		px.mu.Lock()
		defer px.mu.Unlock()
		return len(px.refused) > 0
	})
	px.mu.Lock()
	refused, carried := px.refused[0], px.carried
	px.until, px.delay = refused.Add(5*time.Second), 0 // new channels refused for 5 s
	px.mu.Unlock()
	if !carried {
		t.Fatal("setup: the refused handover PUT did not carry the added agent's topic")
	}
	var heard time.Duration
	for deadline := refused.Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if h.emu.IsDelivered(topicB) {
			heard = time.Since(refused)
			break
		}
	}
	oldLive := false
	for _, ch := range h.emu.Channels() {
		oldLive = oldLive || ch.ID == old[0].ID && ch.Connected
	}
	if heard == 0 || heard > 3*time.Second {
		px.mu.Lock()
		n := len(px.refused)
		px.mu.Unlock()
		t.Fatalf("the added agent's topic was delivered %v after the handover's PUT was refused (0: not within 15 s; %d PUTs on new channels refused, old channel still connected: %v), want within 3 s, on the old channel", heard.Round(time.Millisecond), n, oldLive)
	}
	t.Logf("the added agent was heard %v after the handover's PUT was refused", heard.Round(time.Millisecond))
}
