package notifications_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/screenpop/screenpop/notifications/notificationstest"
)

// holdProxy forwards to the emulator; for the first GET of conversation
// `conv` it computes the emulator's answer, runs hook, then sends the
// (by then stale) answer: the GET was served before what the hook does.
type holdProxy struct {
	rp   *httputil.ReverseProxy
	mu   sync.Mutex
	conv string
	hook func()
	done atomic.Bool
}

func (p *holdProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	conv, hook := p.conv, p.hook
	p.mu.Unlock()
	if conv != "" && r.Method == http.MethodGet && r.URL.Path == "/api/v2/conversations/"+conv && !p.done.Swap(true) {
		rec := httptest.NewRecorder()
		p.rp.ServeHTTP(rec, r)
		hook()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		return
	}
	p.rp.ServeHTTP(w, r)
}

// A reconciliation fetch whose answer arrives after a newer gap's socket
// came back was marked seen at its arrival: the newer gap's pass then
// takes the conversation as seen since that gap and does not fetch it, so
// what happened to it during the newer gap (answered, ended) was never
// handed on. It is seen as of its request now (found by a review).
func TestClient_AFetchAnsweredAcrossANewerGapDoesNotHideIt(t *testing.T) {
	for _, tc := range []struct {
		name   string
		during func(*notificationstest.Conversation)
		want   string
	}{
		{"Answered", func(c *notificationstest.Conversation) { c.Connect() }, "connected"},
		{"Ended", func(c *notificationstest.Conversation) { c.Connect().Disconnect() }, "disconnected"},
	} {
		t.Run(tc.name, func(t *testing.T) { staleFetch(t, tc.during, tc.want) })
	}
}

func staleFetch(t *testing.T, during func(*notificationstest.Conversation), want string) {
	as := agents(1)
	px := &holdProxy{}
	h := startBehind(t, as, px, func(rp *httputil.ReverseProxy) { px.rp = rp }, nil)
	l := recordStates(h.out)
	h.awaitStartupReconciliation()

	// Gap 1: the call rings unseen.
	h.emu.SetBlackhole(true)
	call := h.emu.InboundCall(as[0].ID, "+13175550199", notificationstest.Options{}).Alert()
	h.emu.SetBlackhole(false)

	px.mu.Lock()
	px.conv = call.ID()
	px.hook = func() {
		// Gap 2, while the fetch's answer (alerting) is on its way: the
		// call is answered while the socket is down, and the socket comes
		// back before the answer arrives.
		h.emu.SetBlackhole(true)
		during(call)
		h.emu.SetBlackhole(false)
		h.emu.DropConnections()
		deadline := time.Now().Add(2 * time.Second)
		for h.emu.SubscribedConnected() != 1 && time.Now().Before(deadline) {
			time.Sleep(2 * time.Millisecond)
		}
		time.Sleep(30 * time.Millisecond) // the client's gap() after install
	}
	px.mu.Unlock()
	h.emu.DropConnections()

	l.await(t, 5*time.Second, "the ringing call reconciled", call.ID(), as[0].ID, "alerting", true)
	// The answer during gap 2 must reach the bridge (the pop with
	// SCREENPOP_POP_ON=connected, the connected event).
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end) && !l.has(call.ID(), as[0].ID, want, false); {
		time.Sleep(20 * time.Millisecond)
	}
	if !l.has(call.ID(), as[0].ID, want, false) {
		var ps []string
		for _, r := range h.emu.Requests() {
			if strings.Contains(r.Path, "conversations") {
				ps = append(ps, r.Method+" "+r.Path)
			}
		}
		t.Errorf("the call answered during the second gap was never handed on %s; requests: %v", want, ps)
	}
	h.stop()
	<-l.done
}
