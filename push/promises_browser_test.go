package push

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/screenpop/screenpop/bridge"
)

// Tests of behaviour docs/agents.md promises for the browser side that no
// other test held: each was found by changing screenpop.js or
// screenpop-dynamics.js (a mutation) and seeing every existing test pass.

// docs/agents.md §2: the page asks the agent to sign in "after three
// refusals in a row with no ready between". A tab whose token function
// renews its token at each expiry (jwt mode, an SSO library's refresh)
// stays connected however many times its tokens expire over a shift: each
// ready starts the count again. Counted over the shift instead, the third
// expiry asked a signed-in agent to sign in.
func TestBrowser_TokenRefusalsCountedSinceTheLastReady(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	const agent = "agent-refuse"
	oks := testutil.ToFloat64(e.srv.m.connects.WithLabelValues("ok"))
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__tok = %q; window.__startFn(%q)`, e.token(agent), e.wsURL)),
		poll(`document.getElementById('state').textContent === 'ready'`))
	waitFor(t, 10*time.Second, "the first socket counted", func() bool {
		return testutil.ToFloat64(e.srv.m.connects.WithLabelValues("ok")) == oks+1
	})
	for i := 1; i <= 3; i++ {
		// The SSO library has a new token by the time the old one expires.
		tok, err := MintToken(testSecret, agent, time.Duration(i+1)*time.Hour) // another exp: another token
		if err != nil {
			t.Fatal(err)
		}
		n := eval[int](t, ctx, `window.__states.length`)
		run(t, ctx, js(fmt.Sprintf(`window.__tok = %q`, tok)))
		e.srv.closeAll(CloseInvalidToken, msgInvalidToken)
		// Back (reconnecting, connecting, ready), or asking for a sign-in.
		run(t, ctx, poll(fmt.Sprintf(`window.__states.length > %d && ['ready', 'auth'].indexOf(window.__states[window.__states.length - 1]) >= 0`, n)))
		if st := eval[string](t, ctx, `document.getElementById('state').textContent`); st != "ready" {
			t.Fatalf("after expiry %d (each renewed, with a ready between) the tab is %q, want ready; states %s, notifications %s",
				i, st, eval[string](t, ctx, `JSON.stringify(window.__states)`), eval[string](t, ctx, `JSON.stringify(window.__notes)`))
		}
	}
	if n := eval[int](t, ctx, `window.__notes.length`); n != 0 {
		t.Fatalf("%d notifications, want none (no sign-in asked): %s", n, eval[string](t, ctx, `JSON.stringify(window.__notes)`))
	}
}

// docs/agents.md §5: screenpop.js drops "pops already seen". A pop still in
// onPop when its socket ends (here 4008: too slow) is replayed on the next
// socket, which resumes from the last pop processed: it must not be handed
// to onPop a second time (the demo page listed it twice; an integrator's
// page acted on it twice), and it is acked once processed.
func TestBrowser_PopInOnPopAtADropIsNotHandedOverTwice(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	const agent = "agent-twice"
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__seen = []; window.__client = ScreenPop.connect({url: %q, token: %q, popTimeoutMs: 30000,
			onState: function (s) { document.getElementById('state').textContent = s; },
			onPop: function (p) {
				window.__seen.push(p.seq);
				// The first pop takes a while (the app is busy with it).
				if (window.__seen.length === 1) { return new Promise(function (r) { window.__release = r; }); }
			}})`, e.wsURL, e.token(agent))),
		poll(`document.getElementById('state').textContent === 'ready'`),
		poll(`typeof window.__client.cursor.base === 'number'`))
	oks := testutil.ToFloat64(e.srv.m.connects.WithLabelValues("ok"))
	seq := e.publish(agent, "conv-twice")
	run(t, ctx, poll(fmt.Sprintf(`window.__seen.length === 1 && window.__seen[0] === %d`, seq)))
	e.srv.closeAll(CloseTooSlow, msgTooSlow)
	waitFor(t, 15*time.Second, "the page back", func() bool {
		return testutil.ToFloat64(e.srv.m.connects.WithLabelValues("ok")) > oks
	})
	// The replay (the pop again) has come before the heartbeat that counts
	// the socket; let the first onPop finish, and the queue run.
	run(t, ctx, js(`window.__release()`), sleepJS(300))
	seq2 := e.publish(agent, "conv-twice-2")
	run(t, ctx, poll(fmt.Sprintf(`window.__seen.indexOf(%d) >= 0`, seq2)))
	if got := eval[[]uint64](t, ctx, `window.__seen`); fmt.Sprint(got) != fmt.Sprint([]uint64{seq, seq2}) {
		t.Fatalf("onPop got %v, want %v (each pop once)", got, []uint64{seq, seq2})
	}
	// Each processed pop is acked (agents.md §5), the first on the socket
	// that replayed it: its own had closed while onPop ran, and the copy
	// the replay brought was dropped as seen. Unacked, it read as a pop
	// never processed in "agent disconnected" and delivery_seconds.
	waitFor(t, 10*time.Second, "both pops acked", func() bool { return e.srv.nAcked.Load() == 2 })
}

// docs/agents.md §5: reconnect "with capped exponential backoff and jitter
// (0.25–0.5 s first, doubling to 15–30 s), reset only by a socket's first
// heartbeat". A page whose sockets each work (ready, replay, heartbeat)
// and are then dropped (1001: an instance stopping in a rolling upgrade, a
// proxy recycling its connections) reconnects within the first backoff
// each time: the wait does not grow with every drop of a shift.
func TestBrowser_BackoffStartsAgainAfterEachWorkingSocket(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__client = ScreenPop.connect({url: %q, token: %q, storage: 'none',
			onState: function (s) { document.getElementById('state').textContent = s; }})`, e.wsURL, e.token("agent-drops"))),
		poll(`document.getElementById('state').textContent === 'ready'`))
	waitFor(t, 10*time.Second, "the first socket counted", func() bool { return testutil.ToFloat64(e.srv.m.connects.WithLabelValues("ok")) == 1 })
	oks := 1.0
	for i := 1; i <= 5; i++ {
		run(t, ctx, sleepJS(200)) // the heartbeat that counted the socket has reached the page
		start := time.Now()
		e.srv.closeAll(CloseGoingAway, "")
		// The first backoff is 0.25-0.5 s; a connect here takes a few ms.
		waitFor(t, 1500*time.Millisecond, fmt.Sprintf("reconnect %d within the first backoff", i), func() bool {
			return testutil.ToFloat64(e.srv.m.connects.WithLabelValues("ok")) == oks+1
		}, true)
		if got := testutil.ToFloat64(e.srv.m.connects.WithLabelValues("ok")); got != oks+1 {
			t.Fatalf("drop %d: not back %v after the close (each earlier socket worked: the backoff starts again at 0.25-0.5 s)", i, time.Since(start).Round(time.Millisecond))
		}
		oks++
	}
}

// The daemon comes back on a lost store (a new epoch, seqs from 1 again)
// while the page has processed no pop of the old stream, only resumed from
// its base there (the agent's newest pop when it connected, docs/agents.md
// §5). A ready of the new stream starts the cursor afresh: the old
// stream's base must go with it, or the page's next hello resumes the new
// stream after the old base, and every new pop up to that seq (here the
// call ringing while the page reconnected) is never sent.
func TestBrowser_NewStreamDropsTheOldStreamsBase(t *testing.T) {
	const agent = "agent-base"
	st := newMemStore()
	for i := range 40 { // other agents' pops: the stream is at seq 40
		st.add(testPop("agent-other", fmt.Sprintf("conv-base-other-%d", i)), time.Now(), false)
	}
	// The agent's last call, a while ago: not sent (older than the fresh
	// window), but the base of the page's cursor.
	last := st.add(shiftPop(agent, 1), time.Now().Add(-time.Minute), false)
	pages, e, cfg := shiftServer(t, Config{}, st, nil)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__start(%q, %q)`, e.wsURL, e.token(agent))),
		poll(fmt.Sprintf(`!!ScreenPop.Dynamics.current.client && ScreenPop.Dynamics.current.client.cursor.base === %d`, last.Seq)))

	// The daemon comes back on a fresh store; the page connects to it and
	// has its whole (empty) replay.
	e.stop()
	st2 := newMemStore()
	st2.epoch = "epoch-2"
	e2 := startEnvAt(t, cfg, st2, nil, e.ln.Addr().String())
	run(t, ctx, poll(`(function (c) { return c.state === 'ready' && c.cursor.epoch === 'epoch-2' && typeof c.cursor.pendingBase !== 'number'; })(ScreenPop.Dynamics.current.client)`))
	// A call rings for the agent while the page's socket drops.
	p := shiftPop(agent, 2)
	st2.add(p, time.Now(), false)
	e2.srv.closeAll(CloseTooSlow, msgTooSlow)
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, poll(`window.__calls.length >= 1`)); err != nil {
		t.Fatalf("the new stream's pop was never opened after the reconnect; cursor %s, replays %+v",
			eval[string](t, ctx, `JSON.stringify(ScreenPop.Dynamics.current.client.cursor)`), st2.replayCalls())
	}
	if got := eval[[]formCall](t, ctx, `window.__calls`); len(got) != 1 || got[0].Options.EntityID != p.Target.ID {
		t.Fatalf("openForm calls %+v, want the new pop's record once", got)
	}
}

// docs/agents.md §5: when onPop returns a Promise the next pop waits for
// it, "but for popTimeoutMs at most (default 5 s)". A page that does not
// set popTimeoutMs and whose handler never settles gets its next pop about
// 5 s after the last one: not at once (the handler is waited for), and not
// after a minute of missed calls.
func TestBrowser_ClientPopTimeoutDefault(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__at = []; ScreenPop.connect({url: %q, token: %q, storage: 'none',
			onState: function (s) { document.getElementById('state').textContent = s; },
			onPop: function (p) { window.__at.push(performance.now()); return new Promise(function () {}); }})`, e.wsURL, e.token("agent-tod"))),
		poll(`document.getElementById('state').textContent === 'ready'`))
	e.publish("agent-tod", "conv-tod-1")
	e.publish("agent-tod", "conv-tod-2")
	run(t, ctx, poll(`window.__at.length === 1`))
	tctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, poll(`window.__at.length === 2`)); err != nil {
		t.Fatalf("the second pop was not handed over within 15 s of the first, whose handler never settles (default popTimeoutMs: 5 s)")
	}
	gap := time.Duration(eval[float64](t, ctx, `window.__at[1] - window.__at[0]`)) * time.Millisecond
	t.Logf("second pop handed over %v after the first", gap)
	if gap < 4*time.Second {
		t.Fatalf("the second pop was handed over %v after the first, whose handler had not settled: want the default popTimeoutMs, 5 s", gap)
	}
}

// docs/agents.md §5: the 60 s watchdog "also covers the wait for a token
// function's answer (...); an answer after it is not used". Here the token
// function's answer comes after the watchdog ended its wait and the page
// connected with the next answer: it must not open a second socket (every
// pop then went to both, one of them heard by nobody).
func TestBrowser_TokenAnswerAfterTheWatchdogNotUsed(t *testing.T) {
	// Heartbeats every 300 ms: the page's watchdog (1.5 s) ends silence only.
	pages, e, _ := shiftServer(t, Config{HeartbeatInterval: 300 * time.Millisecond}, newMemStore(), nil)
	ctx := newBrowser(t)
	tok := e.token("agent-late-tok")
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__tokenCalls = 0;
			window.__client = ScreenPop.connect({url: %q, storage: 'none', watchdogMs: 1500, minBackoffMs: 50,
				token: function () {
					// The first answer is late (a refresh fetch on a network not back yet).
					if (++window.__tokenCalls === 1) { return new Promise(function (r) { window.__late = r; }); }
					return %q;
				},
				onState: function (s) { document.getElementById('state').textContent = s; }})`, e.wsURL, tok)),
		poll(`document.getElementById('state').textContent === 'ready' && window.__tokenCalls === 2`))
	waitFor(t, 10*time.Second, "one connection", func() bool { return e.srv.Status().(Status).Connections == 1 })
	run(t, ctx, js(fmt.Sprintf(`window.__late(%q)`, tok)), sleepJS(2000))
	if n := e.srv.Status().(Status).Connections; n != 1 {
		t.Fatalf("%d connections after the token function's late answer, want 1 (the answer after the watchdog is not used)", n)
	}
}

// The same with the late answer coming while the page waits out its
// backoff after the watchdog (a long backoff: a page that has failed a
// few times). The answer must not open a socket: the retry then opens
// another, and the first stays open with the server for the shift, sent
// every pop and never read (its handlers ignore a socket not the
// client's), one more of the agent's 16.
func TestBrowser_TokenAnswerDuringTheBackoffNotUsed(t *testing.T) {
	pages, e, _ := shiftServer(t, Config{HeartbeatInterval: 300 * time.Millisecond}, newMemStore(), nil)
	ctx := newBrowser(t)
	tok := e.token("agent-late-backoff")
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__tokenCalls = 0;
			window.__client = ScreenPop.connect({url: %q, storage: 'none', watchdogMs: 1500, minBackoffMs: 3000, maxBackoffMs: 3000,
				token: function () {
					if (++window.__tokenCalls === 1) { return new Promise(function (r) { window.__late = r; }); }
					return %q;
				},
				onState: function (s) { document.getElementById('state').textContent = s; }})`, e.wsURL, tok)),
		// The watchdog (1.5 s) ends the wait: the page waits out its backoff (3 s).
		poll(`window.__client.waiting === true`),
		js(fmt.Sprintf(`window.__late(%q)`, tok)),
		poll(`document.getElementById('state').textContent === 'ready' && window.__tokenCalls === 2`),
		sleepJS(1000))
	if n := e.srv.Status().(Status).Connections; n != 1 {
		t.Fatalf("%d connections once the page is ready, want 1: the token answer that came during the backoff opened a socket the retry then replaced", n)
	}
}

// The same after a 4401 (jwt mode at the token's exp): the page asks its
// token function again, the watchdog ends that wait and the page tries
// again. The refused token coming back late, after that, must not make the
// page ask the agent to sign in (nor end in "auth") while it reconnects.
func TestBrowser_RefusedTokenAnswerAfterTheWatchdogNotUsed(t *testing.T) {
	pages, e, _ := shiftServer(t, Config{HeartbeatInterval: 300 * time.Millisecond}, newMemStore(), nil)
	ctx := newBrowser(t)
	tok := e.token("agent-late-4401")
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__tokenCalls = 0; window.__auth = 0; window.__st = [];
			window.__client = ScreenPop.connect({url: %q, storage: 'none', watchdogMs: 1500, minBackoffMs: 3000, maxBackoffMs: 3000,
				token: function () {
					// The second call (the one after the 4401) answers late.
					if (++window.__tokenCalls === 2) { return new Promise(function (r) { window.__late = r; }); }
					return %q;
				},
				onAuthRequired: function () { window.__auth++; },
				onState: function (s) { window.__st.push(s); document.getElementById('state').textContent = s; }})`, e.wsURL, tok)),
		poll(`document.getElementById('state').textContent === 'ready'`))
	e.srv.closeAll(CloseInvalidToken, msgInvalidToken)
	// The watchdog (1.5 s) ends the wait: the page waits out its backoff (3 s).
	run(t, ctx, poll(`window.__tokenCalls === 2 && window.__client.waiting === true`),
		js(fmt.Sprintf(`window.__late(%q)`, tok)), sleepJS(300))
	if n := eval[int](t, ctx, `window.__auth`); n != 0 {
		t.Fatalf("the token function's late answer (after the watchdog) asked for a sign-in; states %s", eval[string](t, ctx, `JSON.stringify(window.__st)`))
	}
	run(t, ctx, poll(`document.getElementById('state').textContent === 'ready'`))
}

// docs/agents.md §5: the page reconnects when it hears nothing for the
// watchdog's time; the server's heartbeat (and every other frame) is
// something. A page that hears a heartbeat well within its watchdog keeps
// its socket: it does not drop and reconnect every watchdogMs.
func TestBrowser_HeartbeatsKeepTheSocket(t *testing.T) {
	pages, e, _ := shiftServer(t, Config{HeartbeatInterval: 300 * time.Millisecond}, newMemStore(), nil)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__st = []; ScreenPop.connect({url: %q, token: %q, storage: 'none', watchdogMs: 1500,
			onState: function (s) { window.__st.push(s); document.getElementById('state').textContent = s; }})`, e.wsURL, e.token("agent-hb"))),
		poll(`document.getElementById('state').textContent === 'ready'`),
		sleepJS(4000)) // the watchdog's time, more than twice over
	if st := eval[[]string](t, ctx, `window.__st`); fmt.Sprint(st) != "[connecting ready]" {
		t.Fatalf("states %v with a heartbeat every 300 ms and a 1.5 s watchdog, want [connecting ready] (no reconnect)", st)
	}
	if n := testutil.ToFloat64(e.srv.m.connects.WithLabelValues("ok")); n != 1 {
		t.Fatalf("%v sockets, want 1", n)
	}
}

// docs/agents.md §5: the cursor is kept "in sessionStorage, so each tab
// resumes its own after a reload". A new tab (the agent closed Dynamics
// and opens it again a minute later, or opens a second tab) has no cursor:
// it gets the fresh window only, not the replay window of another tab's
// cursor, which would pop a call of a minute ago that has long ended.
func TestBrowser_NewTabDoesNotResumeAnotherTabsCursor(t *testing.T) {
	const agent = "agent-newtab"
	st := newMemStore()
	pages, e, _ := shiftServer(t, Config{}, st, nil)
	tok := e.token(agent)
	start := fmt.Sprintf(`window.__seen = []; window.__client = ScreenPop.connect({url: %q, token: %q,
		onState: function (s) { document.getElementById('state').textContent = s; },
		onPop: function (p) { window.__seen.push(p.seq); }})`, e.wsURL, tok)
	first := newBrowser(t)
	run(t, first, chromedp.Navigate(pages.URL+"/webresource.html"), js(start),
		poll(`document.getElementById('state').textContent === 'ready'`))
	p1 := st.add(shiftPop(agent, 1), time.Now(), true)
	run(t, first, poll(fmt.Sprintf(`window.__client.cursor.lastSeq === %d`, p1.Seq)),
		chromedp.Navigate("about:blank")) // the tab is closed
	// A call of a minute ago: older than the fresh window (30 s), younger
	// than the replay window (2 m).
	old := st.add(shiftPop(agent, 2), time.Now().Add(-time.Minute), false)

	second, cancel := chromedp.NewContext(first) // a new tab of the same browser
	defer cancel()
	if err := chromedp.Do(second); err != nil {
		t.Fatal(err)
	}
	run(t, second, chromedp.Navigate(pages.URL+"/webresource.html"), js(start),
		poll(`document.getElementById('state').textContent === 'ready'`))
	p3 := st.add(shiftPop(agent, 3), time.Now(), true)
	run(t, second, poll(fmt.Sprintf(`window.__seen.indexOf(%d) >= 0`, p3.Seq)))
	// The fresh window has the first tab's pop too (seconds old).
	if got := eval[[]uint64](t, second, `window.__seen`); fmt.Sprint(got) != fmt.Sprint([]uint64{p1.Seq, p3.Seq}) {
		t.Fatalf("the new tab got pops %v, want %v, the fresh window's (not the minute-old %d: another tab's cursor)", got, []uint64{p1.Seq, p3.Seq}, old.Seq)
	}
}

// docs/agents.md §5: "When onPop returns a Promise, the next pop waits for
// it": until it settles. A handler whose Promise rejects (the app failed
// with that pop and said so) has settled: the next pop follows at once,
// not popTimeoutMs later, and the failed one counts as processed (acked).
func TestBrowser_ClientRejectedPopDoesNotHoldTheNext(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__seen = []; window.__client = ScreenPop.connect({url: %q, token: %q, storage: 'none', popTimeoutMs: 20000,
			onState: function (s) { document.getElementById('state').textContent = s; },
			onPop: function (p) { window.__seen.push(p.seq); return Promise.reject(new Error('app: could not show it')); }})`, e.wsURL, e.token("agent-rej"))),
		poll(`document.getElementById('state').textContent === 'ready'`))
	var seqs []uint64
	for i := range 3 {
		seqs = append(seqs, e.publish("agent-rej", fmt.Sprintf("conv-rej-%d", i)))
	}
	tctx, cancel := context.WithTimeout(ctx, 8*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, poll(`window.__seen.length === 3`)); err != nil {
		t.Fatalf("onPop got %v within 8 s, want all of %v: a rejected Promise held the next pop (popTimeoutMs 20 s)", eval[[]uint64](t, ctx, `window.__seen`), seqs)
	}
	waitFor(t, 10*time.Second, "three acks", func() bool { return e.srv.nAcked.Load() == 3 })
	if c := eval[uint64](t, ctx, `window.__client.cursor.lastSeq`); c != seqs[2] {
		t.Fatalf("cursor at %d, want %d", c, seqs[2])
	}
}

// docs/agents.md §4: "a tab out of sight, when another tab is connected,
// waits 300 ms before it claims a pop, so the tab the agent is looking at
// opens it (a lone tab in the background claims at once)". The agent's one
// Dynamics tab behind the Genesys window opens each record at once.
func TestBrowser_LoneHiddenTabClaimsAtOnce(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(`Object.defineProperty(document, 'visibilityState', { get: function () { return 'hidden'; } });
			// When each pop frame arrives, and when its record is opened.
			window.__got = {}; window.__opened = [];
			Object.defineProperty(WebSocket.prototype, 'onmessage', { set: function (f) {
				this.addEventListener('message', function (ev) {
					var m = JSON.parse(ev.data); if (m.type === 'pop') { window.__got[m.target.id] = performance.now(); }
					f(ev);
				});
			} });
			(function (open) { Xrm.Navigation.openForm = function (o, p) { window.__opened.push({ id: o.entityId, at: performance.now() }); return open(o, p); }; })(Xrm.Navigation.openForm);
			undefined`),
		js(fmt.Sprintf(`window.__start(%q, %q)`, e.wsURL, e.token("agent-lone"))),
		poll(`document.getElementById('state').textContent === 'ready'`))
	for i := range 3 {
		p := testPop("agent-lone", fmt.Sprintf("conv-lone-%d", i))
		p.Target.ID = fmt.Sprintf("eeeeeeee-0000-4000-8000-%012d", i)
		e.publishPop(p)
		run(t, ctx, poll(fmt.Sprintf(`window.__opened.length === %d`, i+1)))
	}
	// The quickest of three: a slow machine delays one, not all.
	least := eval[float64](t, ctx, `Math.min.apply(null, window.__opened.map(function (o) { return o.at - window.__got[o.id]; }))`)
	t.Logf("quickest pop opened %.0f ms after it arrived", least)
	if least >= 200 {
		t.Fatalf("the lone hidden tab opened each pop %.0f ms or more after it arrived, want at once (it waits 300 ms only when another tab is connected)", least)
	}
}

// The search notification of a pop stays when the next page of the tab is
// replayed that pop (the agent opened a record before the first page's
// ack reached the server, and the page that took the socket over gets the
// pop again, claimed by this tab already), as its list does
// (TestBrowser_ChooserStaysWhenTheNextPageIsReplayedItsPop): only a newer
// pop takes it down (docs/agents.md §4, search). Taken down, the agent lost
// the caller's number before copying it.
func TestBrowser_SearchNoteStaysWhenTheNextPageIsReplayedItsPop(t *testing.T) {
	const agent = "agent-note-takeover"
	e, pages := pageEnv(t)
	ctx := uciApp(t, e, pages, "", agent)
	search := testPop(agent, "conv-note-takeover")
	search.Target = bridge.Target{Action: bridge.ActionSearch, Query: "+13175550177"}
	e.publishPop(search)
	run(t, ctx, poll(`window.__notes.length === 1`))
	run(t, ctx, js(`window.Xrm.Navigation.openForm({ entityName: 'account', entityId: '00000000-0000-4000-8000-0000000000ab' })`),
		poll(`window.__frames === 2 && window.__clients()[1] === 'ready'`))
	// The replay, as the server sends it to the page that took over.
	run(t, ctx, js(fmt.Sprintf(`window.__page().Dynamics.current.handlePop({ id: %q, seq: 99, target: { action: 'search', query: '+13175550177' } })`, search.ID)),
		poll(fmt.Sprintf(`window.__page().Dynamics.current.handled.some(function (h) { return h.id === %q && h.done; })`, search.ID)),
		sleepJS(200))
	if cleared := eval[[]string](t, ctx, `window.__cleared || []`); len(cleared) != 0 {
		t.Fatalf("the caller's search notification was taken down (%v) when the next page of the tab was replayed its pop", cleared)
	}
}

// docs/agents.md §4: in a multisession app openForm opens the record only
// "should createTab fail or not answer within 10 s". An app profile
// manager that takes 2 s to open its tab (a busy workspace) opens the
// record once, in that tab: openForm does not open it over the agent's
// page as well, and no tab is closed again.
func TestBrowser_MultisessionSlowCreateTabWithinTheDefaultWait(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/uci.html?apm=late"), // createTab answers after 2 s
		js(fmt.Sprintf(`window.__open(%q, %q)`, e.wsURL, e.token("agent-ms-slow"))),
		poll(`window.__frames === 1 && window.__clients()[0] === 'ready'`))
	p := testPop("agent-ms-slow", "conv-ms-slow")
	p.Target = bridge.Target{Action: bridge.ActionOpen, Entity: "contact", ID: "eeeeeeee-0000-4000-8000-000000000040"}
	e.publishPop(p)
	run(t, ctx, poll(`window.__tabs.length === 1`), sleepJS(3500)) // the tab opened 2 s after the call, and a while more
	if n, closed := eval[int](t, ctx, `window.__calls.length`), eval[[]string](t, ctx, `window.__closed`); n != 0 || len(closed) != 0 {
		t.Fatalf("createTab answered in 2 s, within the 10 s wait: openForm called %d times (want 0), tabs closed %v (want none)", n, closed)
	}
}

// docs/agents.md §4: "A pop that arrives before Xrm is usable waits for it
// (the page waits once, up to 10 s ...)". A side pane whose app shell takes
// 3 s to give it Xrm (a slow network, a cold cache) still opens the pop
// that came first (TestBrowser_PopBeforeXrmIsReady: after 1 s).
func TestBrowser_PopBeforeXrmWaitsTheDefaultTime(t *testing.T) {
	st := newMemStore()
	e, pages := pageEnvStore(t, st)
	p := testPop("agent-xd", "conv-xd")
	st.add(p, time.Now(), false) // in the fresh window: sent right after ready
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(`window.__xrm = window.Xrm; delete window.Xrm; setTimeout(function () { window.Xrm = window.__xrm; }, 3000)`),
		js(fmt.Sprintf(`window.__start(%q, %q)`, e.wsURL, e.token("agent-xd"))),
		poll(`document.getElementById('state').textContent === 'ready'`))
	tctx, cancel := context.WithTimeout(ctx, 9*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, poll(`window.__calls.length === 1`)); err != nil {
		t.Fatalf("the pop's record was never opened once Xrm came (3 s, within the 10 s wait); handled %s, banner %q",
			eval[string](t, ctx, `JSON.stringify(ScreenPop.Dynamics.current.handled)`),
			eval[string](t, ctx, `(document.querySelector('.screenpop-note') || {}).textContent || ''`))
	}
}

// docs/agents.md §4, choose: "A newer pop closes it ...: its own chooser
// replaces it, and any other pop (the next caller's record opening)
// removes it". On a page that stays (a side pane, an HTML web resource:
// no navigation takes the list with it) the next caller's record opens
// and the earlier caller's list goes: a click there would open the wrong
// caller's record over it.
func TestBrowser_NextPopRemovesTheChooserOnTheSamePage(t *testing.T) {
	for _, next := range []bridge.Action{bridge.ActionOpen, bridge.ActionSearch, bridge.ActionCreate} {
		t.Run(string(next), func(t *testing.T) {
			agent := bridge.AgentID("agent-next-" + string(next))
			e, pages := pageEnv(t)
			ctx := newBrowser(t)
			run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
				js(fmt.Sprintf(`window.__start(%q, %q)`, e.wsURL, e.token(agent))),
				poll(`document.getElementById('state').textContent === 'ready'`))
			choose := testPop(agent, "conv-next-choose")
			choose.Target = bridge.Target{Action: bridge.ActionChoose}
			choose.Candidates = []bridge.Candidate{
				{Entity: "contact", ID: "aaaaaaaa-0000-4000-8000-0000000000c1", Name: "Ann One"},
				{Entity: "contact", ID: "aaaaaaaa-0000-4000-8000-0000000000c2", Name: "Ann Two"},
			}
			e.publishPop(choose)
			run(t, ctx, poll(`!!document.querySelector('.screenpop-chooser')`))
			p := testPop(agent, "conv-next-other")
			p.Target = bridge.Target{Action: next, Entity: "contact", ID: "aaaaaaaa-0000-4000-8000-0000000000c3", Query: "+13175550155"}
			e.publishPop(p)
			run(t, ctx, poll(`ScreenPop.Dynamics.current.handled.length === 2 && ScreenPop.Dynamics.current.handled[1].done`), sleepJS(200))
			if n := eval[int](t, ctx, `document.querySelectorAll('.screenpop-chooser').length`); n != 0 {
				t.Fatalf("the earlier caller's list is still shown after the next pop (%s)", next)
			}
		})
	}
}

// docs/agents.md §4: "A record Dataverse refuses (0x80040220, 0x80048306,
// or 0x80040217, deleted) is not listed; with one readable record left it
// opens". A match deleted since the daemon's lookup is not offered, and
// the one left opens. The refusal counts however the client API writes
// its code: a signed 32-bit number (-2147220969 for 0x80040217) or a
// string of it, as well as the positive number.
func TestBrowser_UCIChooserDropsARefusedRecordWhateverItsCodesForm(t *testing.T) {
	gone := bridge.Candidate{Entity: "contact", ID: "eeeeeeee-0000-4000-8000-0000000000d1", Name: "Dee Deleted"}
	live := bridge.Candidate{Entity: "contact", ID: "eeeeeeee-0000-4000-8000-0000000000d2", Name: "Lee Live"}
	for _, tc := range []struct{ name, code string }{
		{"Deleted", `0x80040217`},
		{"Signed", `-2147187962`},  // 0x80048306 as a signed 32-bit number
		{"String", `'2147746336'`}, // 0x80040220 as a string
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, pages := pageEnv(t)
			ctx := uciApp(t, e, pages, "", "agent-gone")
			run(t, ctx, js(fmt.Sprintf(`window.__denied[%q] = %s`, gone.ID, tc.code)))
			p := testPop("agent-gone", "conv-gone-"+tc.name)
			p.Target = bridge.Target{Action: bridge.ActionChoose}
			p.Candidates = []bridge.Candidate{gone, live}
			e.publishPop(p)
			settled(t, ctx)
			if eval[bool](t, ctx, `!!document.querySelector('.screenpop-chooser')`) {
				t.Fatalf("the chooser lists a record refused with %s: %q", tc.code, eval[string](t, ctx, `document.querySelector('.screenpop-chooser').textContent`))
			}
			if got := eval[string](t, ctx, `window.__calls.length ? window.__calls[0].options.entityId : ''`); got != live.ID {
				t.Fatalf("opened %q, want the one readable match %s opened as a single match", got, live.ID)
			}
		})
	}
}

// docs/agents.md §4, search: "The next pop takes it down, as it does a
// chooser" (which goes "in every tab of the agent"). The agent's search
// notification for a caller is in one tab; the next call pops in another
// tab (the one in front now): the first tab takes the earlier caller's
// number down too, so it is not copied for the next caller.
func TestBrowser_SearchNoteLeavesTheOtherTabOnTheNextPop(t *testing.T) {
	const agent = "agent-note-tabs"
	e, pages := pageEnv(t)
	a := newBrowser(t)
	b, cancel := chromedp.NewContext(a)
	defer cancel()
	if err := chromedp.Do(b); err != nil {
		t.Fatal(err)
	}
	tok := e.token(agent)
	for _, tc := range []struct {
		ctx context.Context
		vis string
	}{{a, "visible"}, {b, "hidden"}} {
		run(t, tc.ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
			js(fmt.Sprintf(`window.__vis = %q; Object.defineProperty(document, 'visibilityState', { get: function () { return window.__vis; } })`, tc.vis)),
			js(fmt.Sprintf(`window.__start(%q, %q, %d)`, e.wsURL, tok, hiddenWaitMs)),
			poll(`document.getElementById('state').textContent === 'ready'`))
	}
	search := testPop(agent, "conv-note-tabs-1")
	search.Target = bridge.Target{Action: bridge.ActionSearch, Query: "+13175550166"}
	e.publishPop(search)
	run(t, a, poll(`window.__notes.length === 1`))
	run(t, b, poll(`ScreenPop.Dynamics.current.handled.filter(function (h) { return h.done; }).length === 1`))
	// The agent goes to the other tab; the next call pops there.
	run(t, a, js(`window.__vis = 'hidden'`))
	run(t, b, js(`window.__vis = 'visible'`))
	e.publish(agent, "conv-note-tabs-2")
	run(t, b, poll(`window.__calls.length === 1`))
	run(t, a, poll(`ScreenPop.Dynamics.current.handled.filter(function (h) { return h.done; }).length === 2`), sleepJS(200))
	if n := eval[int](t, a, `window.__calls.length`); n != 0 {
		t.Fatalf("the tab behind opened the next pop too (%d)", n)
	}
	if cleared := eval[[]string](t, a, `window.__cleared || []`); len(cleared) != 1 || cleared[0] != "note-1" {
		t.Fatalf("the earlier caller's search notification (+13175550166) is still up in the first tab after the next pop opened in the other (cleared: %v)", cleared)
	}
}

// docs/agents.md §5: a tab that has not processed a pop yet resumes "after
// the first ready's seq" once that socket's first heartbeat has come. The
// agent's last call of a minute ago (older than the fresh window, so never
// sent) stays unsent when the socket drops and the tab resumes: it is not
// replayed from the start of the replay window and opened as if it rang
// now.
func TestBrowser_ResumeBeforeFirstPopSkipsWhatTheFreshHelloSkipped(t *testing.T) {
	const agent = "agent-resume-base"
	st := newMemStore()
	oldPop := shiftPop(agent, 1)
	old := st.add(oldPop, time.Now().Add(-time.Minute), false)
	pages, e, _ := shiftServer(t, Config{}, st, nil)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__start(%q, %q)`, e.wsURL, e.token(agent))),
		poll(fmt.Sprintf(`!!ScreenPop.Dynamics.current.client && ScreenPop.Dynamics.current.client.cursor.base === %d`, old.Seq)))
	oks := testutil.ToFloat64(e.srv.m.connects.WithLabelValues("ok"))
	e.srv.closeAll(CloseTooSlow, msgTooSlow)
	waitFor(t, 15*time.Second, "the page back", func() bool {
		return testutil.ToFloat64(e.srv.m.connects.WithLabelValues("ok")) > oks
	})
	p := shiftPop(agent, 2)
	st.add(p, time.Now(), true)
	run(t, ctx, poll(`window.__calls.length >= 1`), sleepJS(200))
	var opened []string
	for _, c := range eval[[]formCall](t, ctx, `window.__calls`) {
		opened = append(opened, c.Options.EntityID)
	}
	if fmt.Sprint(opened) != fmt.Sprint([]string{p.Target.ID}) {
		t.Fatalf("opened %v after the resume, want only the new call's %s (not the minute-old %s); replays %+v", opened, p.Target.ID, oldPop.Target.ID, st.replayCalls())
	}
}

// The "Sign in" notification goes once the agent has signed in: left up,
// it told a connected agent that they get no screen pops.
func TestBrowser_SignInNoteGoesAfterTheSignIn(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`ScreenPop.Dynamics.start({url: %q, lockMs: 1500, onState: onState, loginURL: 'https://login.example.test', clientId: 'browser-client'})`, e.wsURL)),
		poll(`document.getElementById('state').textContent === 'auth' && window.__notes.length === 1 && window.__notes[0].action === 'Sign in'`),
		js(fmt.Sprintf(`window.__signIn(%q)`, e.token("agent-signin"))),
		poll(`document.getElementById('state').textContent === 'ready'`), sleepJS(200))
	if cleared := eval[[]string](t, ctx, `window.__cleared || []`); len(cleared) != 1 || cleared[0] != "note-1" {
		t.Fatalf("signed in and connected, the \"Sign in\" notification is still up (cleared: %v)", cleared)
	}
}

// docs/agents.md §4: `"checkAccess":false` turns the candidates' access
// check off: every candidate is listed as the daemon found it, and none is
// read as the agent first.
func TestBrowser_UCICheckAccessOff(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/uci.html"),
		js(fmt.Sprintf(`window.__open(%q, %q, {checkAccess: false})`, e.wsURL, e.token("agent-noacc"))),
		poll(`window.__frames === 1 && window.__clients()[0] === 'ready'`))
	cands := []bridge.Candidate{
		{Entity: "contact", ID: "eeeeeeee-0000-4000-8000-0000000000f1", Name: "Ann Readable"},
		{Entity: "contact", ID: "eeeeeeee-0000-4000-8000-0000000000f2", Name: "Bob OtherUnit"},
	}
	run(t, ctx, js(fmt.Sprintf(`window.__denied[%q] = %d`, cands[1].ID, errNoReadAccess)))
	p := testPop("agent-noacc", "conv-noacc")
	p.Target = bridge.Target{Action: bridge.ActionChoose}
	p.Candidates = cands
	e.publishPop(p)
	settled(t, ctx)
	if n := eval[int](t, ctx, `document.querySelectorAll('button.screenpop-candidate').length`); n != 2 {
		t.Fatalf("%d candidates listed with checkAccess off, want both (calls %s)", n, eval[string](t, ctx, `JSON.stringify(window.__calls)`))
	}
	if n := eval[int](t, ctx, `window.__retrieves.length`); n != 0 {
		t.Fatalf("%d Xrm.WebApi reads with checkAccess off, want none", n)
	}
}

// The callback page hands the code to an origin in SCREENPOP_ALLOWED_ORIGINS
// only (docs/agents.md §3): with the Dynamics origin allowed, a page on
// another origin that opened the login still gets nothing.
func TestBrowser_OAuthCallbackWithAllowedOriginsSkipsAnotherOpener(t *testing.T) {
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><button id="go">go</button><script>
window.got = null;
addEventListener('message', function (ev) { window.got = ev.data; });
document.getElementById('go').onclick = function () { window.w = open(window.__callback, 'x', 'popup'); };
</script>`)
	}))
	defer evil.Close()
	e := newEnv(t, Config{AllowedOrigins: []string{"https://contoso.crm.dynamics.com"}}, newMemStore(), nil)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(evil.URL+"/"),
		js(fmt.Sprintf(`window.__callback = %q`, e.base+"/web/oauth-callback.html?code=STOLEN-CODE&state=attacker-state")))
	popups := chromedp.WaitNewTarget(ctx, func(i *target.Info) bool { return i.Type == "page" })
	run(t, ctx, chromedp.Click(chromedp.CSS(`#go`)))
	select {
	case <-popups:
	case <-time.After(10 * time.Second):
		t.Fatal("no popup opened")
	}
	// The callback page closes itself 300 ms after posting.
	run(t, ctx, poll(`window.got !== null || (window.w && window.w.closed)`), sleepJS(200))
	if got := eval[string](t, ctx, `JSON.stringify(window.got)`); got != "null" {
		t.Fatalf("a page on an origin not allowed received the OAuth callback message %s", got)
	}
}

// docs/agents.md §4, search: "a global notification showing the number or
// email, with a *Copy* action". Its action copies the caller's number.
func TestBrowser_SearchNoteCopiesTheNumber(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(`window.__copied = [];
			Object.defineProperty(navigator, 'clipboard', { value: { writeText: function (s) { window.__copied.push(s); return Promise.resolve(); } } });
			(function (add) { Xrm.App.addGlobalNotification = function (n) { window.__run = n.action && n.action.eventHandler; return add(n); }; })(Xrm.App.addGlobalNotification)`),
		js(fmt.Sprintf(`window.__start(%q, %q)`, e.wsURL, e.token("agent-copy"))),
		poll(`document.getElementById('state').textContent === 'ready'`))
	p := testPop("agent-copy", "conv-copy")
	p.Target = bridge.Target{Action: bridge.ActionSearch, Query: "+13175550144"}
	e.publishPop(p)
	run(t, ctx, poll(`window.__notes.length === 1`))
	if got := eval[string](t, ctx, `window.__notes[0].action`); got != "Copy" {
		t.Fatalf("search notification %s, want a Copy action", eval[string](t, ctx, `JSON.stringify(window.__notes)`))
	}
	run(t, ctx, js(`window.__run()`))
	if got := eval[[]string](t, ctx, `window.__copied`); len(got) != 1 || got[0] != "+13175550144" {
		t.Fatalf("Copy wrote %q to the clipboard, want the caller's number", got)
	}
}

// docs/agents.md §5: "capped exponential backoff": a page that cannot
// connect for a long while (here its token function fails: an SSO portal
// down, as a daemon that answers 503 or nothing) tries again at most every
// maxBackoffMs (default 30 s), not after a wait that doubles for ever. Here
// the cap is 100 ms: over 4 s the page tries more than 20 times (uncapped
// from 50 ms, it would try eight times at most).
func TestBrowser_BackoffIsCapped(t *testing.T) {
	e, pages := pageEnv(t)
	ctx := newBrowser(t)
	run(t, ctx, chromedp.Navigate(pages.URL+"/webresource.html"),
		js(fmt.Sprintf(`window.__tries = 0; window.__client = ScreenPop.connect({url: %q, storage: 'none', minBackoffMs: 50, maxBackoffMs: 100,
			token: function () { window.__tries++; return Promise.reject(new Error('SSO portal down')); }})`, e.wsURL)),
		sleepJS(4000))
	run(t, ctx, js(`window.__client.close()`))
	n := eval[int](t, ctx, `window.__tries`)
	t.Logf("tried %d times in 4 s", n)
	if n < 20 {
		t.Fatalf("the page tried %d times in 4 s with the backoff capped at 100 ms, want 20 or more", n)
	}
}
