package push

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/screenpop/screenpop/bridge"
	"github.com/screenpop/screenpop/bridge/bus"
)

// Version skew, daemon ahead of the page: Dynamics caches web resources,
// so an agent's page can run an older screenpop-dynamics.js than the
// daemon (or the new instance of an HA pair in a rolling upgrade). A pop
// whose target.action this script does not know (one a later daemon adds)
// but which names a record must still reach the agent: opened, or at least
// said. Before the fix it was claimed (the localStorage marker keeps every
// other tab off it), acked, and nothing at all happened.
func TestBrowser_SkewUnknownActionReachesTheAgent(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__start(%q, %q)`, e.wsURL, e.token("agent-skew"))),
		poll(`document.getElementById('state').textContent === 'ready'`))

	p := testPop("agent-skew", "conv-future")
	p.Target = bridge.Target{Action: bridge.Action("openInSession"), Entity: "contact", ID: "6f1c2e2a-0000-4000-8000-00000000f00d", Name: "Test Caller"}
	e.publishPop(p)
	run(t, ctx, poll(`ScreenPop.Dynamics.current.handled.length === 1 && ScreenPop.Dynamics.current.handled[0].done`))
	waitFor(t, 10*time.Second, "ack", func() bool { return e.srv.nAcked.Load() == 1 })
	calls := eval[[]formCall](t, ctx, `window.__calls`)
	notes := eval[int](t, ctx, `window.__notes.length`)
	if len(calls) != 1 || calls[0].Options.EntityName != "contact" || calls[0].Options.EntityID != p.Target.ID {
		t.Fatalf("pop with a later action (entity and id given): openForm calls %+v, %d notifications; acked and marked, so the agent never sees it", calls, notes)
	}

	// One that names no record: the agent is told, not left with nothing.
	q := testPop("agent-skew", "conv-future-2")
	q.Target = bridge.Target{Action: bridge.Action("somethingNew")}
	e.publishPop(q)
	run(t, ctx, poll(`ScreenPop.Dynamics.current.handled.length === 2 && ScreenPop.Dynamics.current.handled[1].done`))
	if n := eval[int](t, ctx, `window.__notes.length`); n != 1 {
		t.Fatalf("pop with a later action and no record: %d notifications, want 1", n)
	}
}

// Version skew, page ahead of the daemon: a later screenpop.js that sends a
// frame type this daemon does not know (here right after its hello, as a
// capability or state frame would be) got 4400, reconnected, sent it again:
// a reconnect loop at the shortest backoff for as long as the page is open
// (the socket's heartbeat resets the backoff before the 4400 arrives), on
// the old instance of a rolling upgrade. Each turn costs a token check, a
// latest-pop read and a replay consumer on NATS, per tab.
func TestBrowser_SkewNewerFrameTypeNoReconnectLoop(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	// The "newer" page: today's script, whose every hello is followed by a
	// frame of a later protocol version.
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(`(function () {
			var send = WebSocket.prototype.send;
			WebSocket.prototype.send = function (d) {
				send.call(this, d);
				if (JSON.parse(d).type === 'hello') { send.call(this, JSON.stringify({ type: 'features', popOutcome: true })); }
			};
		})()`),
		js(fmt.Sprintf(`window.__start(%q, %q)`, e.wsURL, e.token("agent-newer"))),
		poll(`document.getElementById('state').textContent === 'ready'`))
	time.Sleep(4 * time.Second)
	oks := testutil.ToFloat64(e.srv.m.connects.WithLabelValues("ok"))
	if oks > 1 {
		t.Fatalf("%v connects in 4 s (states %s): a frame type of a later version closes the socket (4400) and the page loops",
			oks, eval[string](t, ctx, `JSON.stringify(window.__states.slice(-8))`))
	}
	seq := e.publish("agent-newer", "conv-newer")
	run(t, ctx, poll(fmt.Sprintf(`ScreenPop.Dynamics.current.handled.some(function (h) { return h.seq === %d && h.done; })`, seq)))
}

// An HA pair behind one load balancer: the page's socket on instance A
// ends (A stopped for its upgrade) and its reconnect lands on instance B,
// another daemon with its own NATS connection to the same stream. The
// epoch is the stream's, the same on both, so B replays from the page's
// cursor (the replay window), not just the fresh window: the pop stored
// while the page was away, older than B's fresh window, still opens, and
// each pop opens once.
func TestBrowser_SkewReconnectToOtherInstanceReplays(t *testing.T) {
	ctx0, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	busA, err := bus.Start(ctx0, bus.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir()}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(busA.Close)
	busB, err := bus.Start(ctx0, bus.Config{URL: busA.ClientURL()}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(busB.Close)
	if busA.Epoch() != busB.Epoch() {
		t.Fatalf("epochs %q and %q for one stream", busA.Epoch(), busB.Epoch())
	}
	pages, a, _ := shiftServer(t, Config{}, busA, nil)
	a.bus = busA
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__start(%q, %q)`, a.wsURL, a.token("agent-ha"))),
		poll(`document.getElementById('state').textContent === 'ready'`))
	p1 := testPop("agent-ha", "conv-ha-1")
	a.publishPop(p1)
	run(t, ctx, poll(`window.__calls.length === 1`))
	a.stop()
	run(t, ctx, poll(`document.getElementById('state').textContent !== 'ready'`))
	p2 := testPop("agent-ha", "conv-ha-22")
	a.publishPop(p2)
	time.Sleep(time.Second) // p2 is older than B's fresh window
	cfgB := Config{FreshWindow: 200 * time.Millisecond, AllowedOrigins: []string{pages.URL}}
	b := startEnvAt(t, cfgB, busB, nil, a.ln.Addr().String())
	b.bus = busB
	run(t, ctx, poll(`document.getElementById('state').textContent === 'ready'`))
	p3 := testPop("agent-ha", "conv-ha-333")
	b.publishPop(p3)
	run(t, ctx, poll(`window.__calls.length >= 3`))
	time.Sleep(500 * time.Millisecond)
	want := []string{p1.Target.ID, p2.Target.ID, p3.Target.ID}
	if got := openedIDs(t, ctx); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("opened %v, want %v", got, want)
	}
}

// A later daemon than the page's script (the new instance of a rolling
// upgrade, a web resource the browser cached): a frame type the script does
// not know, a pop with fields it does not know and a close code it does not
// know. The pop opens once, the unknown frame is ignored, and the page
// reconnects (with backoff) and resumes from the pop with the epoch it got.
func TestBrowser_SkewLaterDaemonFrames(t *testing.T) {
	e, pages := pageEnv(t) // serves the scripts
	hellos := make(chan map[string]any, 8)
	var n atomic.Int32
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	later := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		var h map[string]any
		if ws.ReadJSON(&h) != nil {
			return
		}
		hellos <- h
		_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"ready","agentId":"agent-later","epoch":"e1","seq":0,"features":["x"]}`))
		if n.Add(1) == 1 {
			_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"notice","text":"hi"}`))
			_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"pop","seq":7,"id":"pop:conv-l:p1","conversationId":"conv-l","agentId":"agent-later","media":"voice","state":"alerting","priority":"high","customer":{"phone":"+13175550123","vip":true},"target":{"action":"open","entity":"contact","id":"6f1c2e2a-0000-4000-8000-000000000777","template":"t2"},"issuedAt":"2026-01-01T00:00:00.000Z"}`))
		}
		_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"heartbeat"}`))
		if n.Load() == 1 {
			for {
				var a map[string]any
				if ws.ReadJSON(&a) != nil || a["type"] == "ack" {
					break
				}
			}
			_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4999, ""), time.Now().Add(time.Second))
			time.Sleep(200 * time.Millisecond)
			return
		}
		for ws.ReadJSON(new(map[string]any)) == nil {
		}
	}))
	t.Cleanup(later.Close)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__start(%q, %q)`, "ws"+strings.TrimPrefix(later.URL, "http"), e.token("agent-later"))),
		poll(`window.__calls.length === 1`))
	<-hellos
	select {
	case h := <-hellos:
		if h["lastSeq"] != float64(7) || h["epoch"] != "e1" {
			t.Fatalf("hello after the unknown close code %v, want lastSeq 7 and epoch e1", h)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no reconnect after a close code the script does not know")
	}
	run(t, ctx, poll(`document.getElementById('state').textContent === 'ready'`))
	if got := openedIDs(t, ctx); len(got) != 1 || got[0] != "6f1c2e2a-0000-4000-8000-000000000777" {
		t.Fatalf("opened %v", got)
	}
}
