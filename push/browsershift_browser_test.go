package push

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/screenpop/screenpop/bridge"
)

// The daemon is replaced on its address by one whose store was lost (a
// deploy without the data volume, a stream deleted and recreated): the new
// stream's sequences start again from 1, under a new epoch. A pop of the old
// stream that the page is still processing when the new ready comes must not
// move the new stream's cursor to its old seq: the page would then resume
// after a seq the new stream has not reached, and a reload would drop every
// new pop up to it as "seen already" (no pops until the stream catches up).
func TestBrowser_ShiftOldStreamPopAfterNewEpoch(t *testing.T) {
	const agent = "agent-ep"
	st := newMemStore()
	for i := range 40 { // other agents' pops: the stream is at seq 40
		st.add(testPop("agent-other", fmt.Sprintf("conv-other-%d", i)), time.Now(), false)
	}
	pages, e, cfg := shiftServer(t, Config{}, st, nil)
	tok := e.token(agent)
	start := fmt.Sprintf(`window.__seen = []; window.__epochs = [];
		window.__client = ScreenPop.connect({url: %q, token: %q, popTimeoutMs: 15000,
			onState: function (s, d) { document.getElementById('state').textContent = s; if (s === 'ready') { window.__epochs.push(d.epoch); } },
			onPop: function (p) {
				window.__seen.push(p.seq);
				// The first pop takes a while (the app is busy with it).
				if (window.__seen.length === 1) { return new Promise(function (r) { window.__release = r; }); }
			}})`, e.wsURL, tok)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"), js(start),
		poll(`document.getElementById('state').textContent === 'ready'`))
	old := st.add(shiftPop(agent, 1), time.Now(), true)
	run(t, ctx, poll(fmt.Sprintf(`window.__seen.length === 1 && window.__seen[0] === %d`, old.Seq)))

	// The daemon goes while that pop is processed, and comes back on a
	// fresh store.
	e.stop()
	st2 := newMemStore()
	st2.epoch = "epoch-2"
	startEnvAt(t, cfg, st2, nil, e.ln.Addr().String())
	run(t, ctx, poll(`window.__epochs[window.__epochs.length - 1] === 'epoch-2' && document.getElementById('state').textContent === 'ready'`),
		js(`window.__release()`))
	p1 := st2.add(shiftPop(agent, 2), time.Now(), true)
	run(t, ctx, poll(fmt.Sprintf(`window.__seen.indexOf(%d) >= 0`, p1.Seq)), sleepJS(200))
	cur := eval[map[string]any](t, ctx, `window.__client.cursor`)
	t.Logf("cursor after the new stream's pop %d: %v", p1.Seq, cur)

	// The agent reloads the page; the next call pops.
	run(t, ctx, chromedp.Reload(), js(start), poll(`document.getElementById('state').textContent === 'ready'`))
	p2 := st2.add(shiftPop(agent, 3), time.Now(), true)
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, poll(fmt.Sprintf(`window.__seen.indexOf(%d) >= 0`, p2.Seq))); err != nil {
		t.Fatalf("the new stream's pop %d never reached onPop after a reload (seen %v); cursor before the reload %v: the old stream's pop %d moved the new stream's cursor",
			p2.Seq, eval[[]int](t, ctx, `window.__seen`), cur, old.Seq)
	}
}

// After a drop, the page's token function (an integrator's SSO refresh: a
// fetch to its portal) is asked for a token and never answers: a laptop
// woken on a path that is not back yet swallows that request as it
// swallows a websocket's opening handshake (TestBrowser_ShiftReconnectIntoADeadPath).
// Two drops ask it: a socket that went away (the reconnect's token), and
// the server's 4401 (jwt mode at the token's exp, a token revoked: the
// page asks for a new one, tokenRefused). The page must try again, as it
// does for a socket that hears nothing (the watchdog covers the token
// wait, docs/agents.md), and not sit in "connecting" or "reconnecting"
// for the rest of the shift with no pops: no timer is left to wake it,
// and the browser's "online" event is ignored outside a backoff.
func TestBrowser_ShiftTokenFunctionNeverAnswers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		agent bridge.AgentID
		code  int
		msg   string
	}{
		{"AfterADrop", "agent-tk", CloseTooSlow, msgTooSlow},
		{"After4401", "agent-tk4401", CloseInvalidToken, msgInvalidToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, pages := pageEnv(t)
			ctx := newBrowser(t)
			run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
				js(fmt.Sprintf(`window.__seen = []; window.__tokenCalls = 0; window.__st = [];
					window.__client = ScreenPop.connect({url: %q, storage: 'none', watchdogMs: 2000,
						token: function () {
							// The second call (the one after the drop) hangs; the others answer.
							return ++window.__tokenCalls === 2 ? new Promise(function () {}) : %q;
						},
						onState: function (s) { window.__st.push(s); document.getElementById('state').textContent = s; },
						onPop: function (p) { window.__seen.push(p.seq); }})`, e.wsURL, e.token(tc.agent))),
				poll(`document.getElementById('state').textContent === 'ready'`))
			e.srv.closeAll(tc.code, tc.msg) // the socket drops
			run(t, ctx, poll(`window.__tokenCalls === 2`))
			// The network is back.
			run(t, ctx, js(`window.dispatchEvent(new Event('online'))`))
			seq := e.publish(tc.agent, "conv-"+string(tc.agent))
			tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := chromedp.Do(tctx, poll(fmt.Sprintf(`window.__seen.indexOf(%d) >= 0`, seq))); err != nil {
				t.Fatalf("no pop 10 s after a token request (closed %d) that never answered (watchdog 2 s): token asked %d times, states %s",
					tc.code, eval[int](t, ctx, `window.__tokenCalls`), eval[string](t, ctx, `JSON.stringify(window.__st)`))
			}
		})
	}
}

// shiftSocketsJS counts the page's WebSocket objects that are not closed
// (a socket left open behind a reconnect would be a second one per pop).
const shiftSocketsJS = `(function () {
  var W = window.WebSocket, all = [];
  window.WebSocket = function (url, p) { var ws = p === undefined ? new W(url) : new W(url, p); all.push(ws); return ws; };
  window.WebSocket.prototype = W.prototype;
  ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED'].forEach(function (k) { window.WebSocket[k] = W[k]; });
  window.__sockets = function () {
    for (var i = all.length - 1; i >= 0; i--) { if (all[i].readyState === 3) { all.splice(i, 1); } }
    return { live: all.length };
  };
})();`

// A shift of daemon restarts: the daemon is stopped and started again on
// its address 24 times (deploys, crashes), with pops while it is down and
// after it is back: 480 pops in all. Each pop opens once, the page holds
// one socket at the end (never a second one per restart), and what it keeps
// (timers, listeners, DOM nodes) does not grow from the 8th restart to the
// 24th.
func TestBrowser_ShiftManyDaemonRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("24 daemon restarts")
	}
	const agent = "agent-mr"
	st := newMemStore()
	pages, e, cfg := shiftServer(t, Config{}, st, nil)
	addr := e.ln.Addr().String()
	ctx := newBrowser(t)
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := chromedp.Do(tctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		for _, src := range []string{shiftProbeJS, shiftSocketsJS} {
			if _, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: src}); err != nil {
				return err
			}
		}
		return nil
	}))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	app := shiftApp{win: `window`, openNotes: `window.__notes.length - (window.__cleared || []).length`}
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__start(%q, %q)`, e.wsURL, e.token(agent))),
		poll(`document.getElementById('state').textContent === 'ready'`),
		js(`window.__processed = function (want) {
			var c = window.ScreenPop.Dynamics.current;
			return c.client.cursor.lastSeq >= want && c.handled.every(function (h) { return h.done; });
		}`))
	n, samples := 0, map[int]shiftSample{}
	var sockets = map[int]int{}
	const restarts = 24
	for r := 1; r <= restarts; r++ {
		// Two pops while the daemon is down, then it is back; 18 live.
		e.stop()
		for range 2 {
			n++
			st.add(shiftPop(agent, n), time.Now(), false)
		}
		// memStore's signals hold 16: drained, for the 24 daemons.
		for len(st.entered) > 0 {
			<-st.entered
		}
		for len(st.followed) > 0 {
			<-st.followed
		}
		e = startEnvAt(t, cfg, st, nil, addr)
		run(t, ctx, poll(`document.getElementById('state').textContent === 'ready'`))
		var last uint64
		for range 18 {
			n++
			last = st.add(shiftPop(agent, n), time.Now(), true).Seq
		}
		run(t, ctx, chromedp.PollFunction[chromedp.Void](`function (want) { return window.__processed(want); }`,
			chromedp.WithPollingArgs(last), chromedp.WithPollingTimeout(15*time.Second), chromedp.WithPollingInterval(20*time.Millisecond)))
		if c := eval[int](t, ctx, `window.__calls.length`); c != 20 {
			t.Errorf("restart %d: %d records opened for its 20 pops", r, c)
		}
		run(t, ctx, js(`window.__calls.length = 0; window.__states.length = 0`))
		if r == 8 || r == restarts {
			samples[r] = shiftMeasure(t, ctx, app)
			sockets[r] = eval[int](t, ctx, `window.__sockets().live`)
			t.Logf("after %2d restarts, %3d pops: sockets=%d %v", r, n, sockets[r], samples[r])
		}
	}
	opened := map[string]int{}
	for _, id := range eval[[]string](t, ctx, `window.ScreenPop.Dynamics.current.handled.map(function (h) { return h.id; })`) {
		opened[id]++
	}
	for id, k := range opened {
		if k != 1 {
			t.Errorf("pop %s handled %d times among the last 20", id, k)
		}
	}
	if s := sockets[restarts]; s != 1 {
		t.Errorf("%d WebSockets not closed in the page after %d restarts, want 1", s, restarts)
	}
	if c := testutil.ToFloat64(e.srv.m.connections); c != 1 {
		t.Errorf("the daemon holds %v sockets of the page, want 1", c)
	}
	a, z := samples[8], samples[restarts]
	if z.Timeouts-a.Timeouts > 1 || z.Intervals > a.Intervals || z.Listeners > a.Listeners || z.Nodes-a.Nodes > 100 || z.Storage < 0 {
		t.Errorf("grew from restart 8 to %d: %v -> %v", restarts, a, z)
	}
}

// Unified Interface loads a new page (a form library frame) for every
// record a pop opens, and that page takes the tab's connection over: a
// shift of 120 pops is 120 pages, each stealing the tab's lock, closing the
// last page's socket and resuming on its own. At the end the tab holds one
// socket, each pop opened once, and the app's window and document (which
// outlive every page) hold no more than after the 40th.
func TestBrowser_ShiftUCIPagePerPop(t *testing.T) {
	if testing.Short() {
		t.Skip("120 pages")
	}
	const agent = "agent-ppp"
	e, pages := pageEnv(t)
	ctx := uciApp(t, e, pages, "?drop", agent)
	type appState struct {
		Elements, Keys, Notes, Frames int
	}
	measure := func() appState {
		return eval[appState](t, ctx, `({ Elements: document.getElementsByTagName('*').length,
			Keys: JSON.stringify(window.ScreenPop, function (k, v) { return k === 'choice' ? undefined : v; }).length,
			Notes: (window.ScreenPop.popNotes || []).length, Frames: document.querySelectorAll('iframe').length })`)
	}
	var at40 appState
	const total = 120
	for i := 1; i <= total; i++ {
		p := shiftPop(bridge.AgentID(agent), i)
		e.publishPop(p)
		run(t, ctx, poll(fmt.Sprintf(`window.__frames === %d && window.__clients()[0] === 'ready'`, i+1)))
		if i == 40 {
			at40 = measure()
		}
	}
	waitFor(t, 10*time.Second, "the last pop acked", func() bool { return e.srv.nAcked.Load() >= total })
	end := measure()
	t.Logf("app after 40 pages %+v, after %d %+v; acked %d", at40, total, end, e.srv.nAcked.Load())
	if ids := openedIDs(t, ctx); len(ids) != total {
		t.Errorf("%d records opened for %d pops", len(ids), total)
	}
	if c := testutil.ToFloat64(e.srv.m.connections); c != 1 {
		t.Errorf("the daemon holds %v sockets of the tab, want 1", c)
	}
	if end.Elements > at40.Elements || end.Keys > at40.Keys+16 || end.Notes > at40.Notes || end.Frames != 1 {
		t.Errorf("the app grew from page 40 to page %d: %+v -> %+v", total, at40, end)
	}
}

// The laptop sleeps over lunch (here: the page frozen, as Chromium freezes
// a tab, for 3 s with the server's heartbeat at 500 ms and the page's
// watchdog at 2 s) while the agent's calls pop. On waking the page holds
// one socket (not a second one per wake: two would open each pop twice),
// and each pop of the meantime opens once.
func TestBrowser_ShiftFrozenPageWakes(t *testing.T) {
	const agent = "agent-fz"
	st := newMemStore()
	pages, e, _ := shiftServer(t, Config{PingInterval: 500 * time.Millisecond, HeartbeatInterval: 500 * time.Millisecond}, st, nil)
	ctx := newBrowser(t)
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := chromedp.Do(tctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: shiftSocketsJS})
		return err
	}))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(`var connect0 = ScreenPop.connect; ScreenPop.connect = function (o) { o.watchdogMs = 2000; return connect0(o); }`),
		js(fmt.Sprintf(`window.__start(%q, %q)`, e.wsURL, e.token(agent))),
		poll(`document.getElementById('state').textContent === 'ready'`))
	lifecycle := func(state page.SetWebLifecycleStateState) {
		t.Helper()
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := chromedp.Do(tctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, page.SetWebLifecycleState, page.SetWebLifecycleStateParams{State: state})
			return err
		})); err != nil {
			t.Fatalf("lifecycle %s: %v", state, err)
		}
	}
	n := 0
	for wake := 1; wake <= 2; wake++ {
		lifecycle(page.SetWebLifecycleStateStateFrozen)
		n++
		st.add(shiftPop(agent, n), time.Now(), true)
		time.Sleep(3 * time.Second)
		lifecycle(page.SetWebLifecycleStateStateActive)
		run(t, ctx, poll(fmt.Sprintf(`window.__calls.length >= %d`, n)), sleepJS(300))
		n++
		st.add(shiftPop(agent, n), time.Now(), true)
		run(t, ctx, poll(fmt.Sprintf(`window.__calls.length >= %d`, n)), sleepJS(1500))
	}
	var want []string
	for i := 1; i <= n; i++ {
		want = append(want, shiftPop("", i).Target.ID)
	}
	if got := openedIDs(t, ctx); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("opened %v, want %v", got, want)
	}
	if s := eval[int](t, ctx, `window.__sockets().live`); s != 1 {
		t.Errorf("%d sockets open in the page after 2 wakes, want 1 (states %s)", s, eval[string](t, ctx, `JSON.stringify(window.__states)`))
	}
	t.Logf("states over the shift: %s", eval[string](t, ctx, `JSON.stringify(window.__states)`))
}

// The daemon comes back on a store restored from a backup, or on one that a
// power cut set back (nats-server writes its blocks to disk every 2 minutes
// unless told to sync each write): the same stream, so the same epoch, but
// its sequences behind the page's cursor. The pops stored from then on take
// sequences the page has already passed; it must still get them, not drop
// them as "seen already" until the stream catches up with its cursor: one
// stored once the page is back, and one stored before (the start-up
// reconciliation publishes every live leg again, operations.md 7.10, while
// the page waits out its backoff), whose seq is then at most the ready's.
func TestBrowser_ShiftStoreSetBack(t *testing.T) {
	for _, tc := range []struct {
		name       string
		agent      bridge.AgentID
		beforePage bool // the pop is stored before the page is back
	}{
		{"PopAfterThePageIsBack", "agent-sb", false},
		{"PopBeforeThePageIsBack", "agent-sbr", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newMemStore()
			for i := range 40 { // other agents' pops: the stream is at seq 40
				st.add(testPop("agent-other", fmt.Sprintf("conv-other-%d", i)), time.Now(), false)
			}
			pages, e, cfg := shiftServer(t, Config{}, st, nil)
			ctx := newBrowser(t)
			run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
				js(fmt.Sprintf(`window.__seen = []; window.__ids = [];
			window.__client = ScreenPop.connect({url: %q, token: %q,
				onState: function (s) { document.getElementById('state').textContent = s; },
				onPop: function (p) { window.__seen.push(p.seq); window.__ids.push(p.id); }})`, e.wsURL, e.token(tc.agent))),
				poll(`document.getElementById('state').textContent === 'ready'`))
			backedUp := st.add(shiftPop(tc.agent, 1), time.Now(), true)
			var last bridge.StoredPop
			for n := 2; n <= 10; n++ {
				last = st.add(shiftPop(tc.agent, n), time.Now(), true)
			}
			run(t, ctx, poll(fmt.Sprintf(`window.__client.cursor.lastSeq === %d`, last.Seq)))

			// The daemon goes; its store is the backup's, up to the first pop.
			e.stop()
			run(t, ctx, poll(`document.getElementById('state').textContent !== 'ready'`))
			restored := newMemStore()
			restored.pops = append(restored.pops, st.pops[:backedUp.Seq]...)
			var p bridge.StoredPop
			if tc.beforePage {
				p = restored.add(shiftPop(tc.agent, 11), time.Now(), false)
			}
			startEnvAt(t, cfg, restored, nil, e.ln.Addr().String())
			run(t, ctx, poll(`document.getElementById('state').textContent === 'ready'`))
			if !tc.beforePage {
				p = restored.add(shiftPop(tc.agent, 11), time.Now(), true)
			}
			id := fmt.Sprintf("pop:conv-%s-11:part-1", tc.agent)
			tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := chromedp.Do(tctx, poll(fmt.Sprintf(`window.__ids.indexOf(%q) >= 0`, id))); err != nil {
				t.Fatalf("the pop %s (seq %d) stored after the store was set back to seq %d never reached onPop (seen seqs %v, cursor %v): dropped as older than the cursor %d",
					id, p.Seq, backedUp.Seq, eval[[]int](t, ctx, `window.__seen`), eval[map[string]any](t, ctx, `window.__client.cursor`), last.Seq)
			}
			// (The pop kept from before the set back, younger than the
			// replay window, may come again: a cursor from before a set
			// back cannot tell which of the pops up to the agent's newest
			// the page has seen.)
		})
	}
}
